//! How long a prefix must be for playback to start at once and never wait for the suffix.
//!
//! For an object of bitrate r and length L over a link of throughput B, time to first suffix
//! byte T_fb and jitter J, the prefix must cover (seconds of media)
//!
//! - P ≥ T_fb + J when B ≥ r (the suffix arrives faster than it plays: only its start is late);
//! - P ≥ (B/r)(T_fb + J) + L(1 − B/r) when B < r (the suffix falls behind by 1 − B/r of every
//!   second played, and its first byte is T_fb + J late),
//!
//! plus a safety margin, and never more than L.

/// A measured origin link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkEstimate {
    /// Throughput B, bytes per second (0: unknown).
    pub throughput: f64,
    /// Time to the first byte of a suffix fetch T_fb, seconds.
    pub first_byte_s: f64,
    /// Jitter J of that time, seconds.
    pub jitter_s: f64,
}

/// Seconds of media the prefix must hold. An unknown link (`throughput` 0) needs the whole
/// object.
pub fn required_prefix_s(bitrate: f64, length_s: f64, link: LinkEstimate, margin_s: f64) -> f64 {
    let late = (link.first_byte_s + link.jitter_s).max(0.0);
    let p = if link.throughput <= 0.0 || bitrate <= 0.0 {
        length_s
    } else if link.throughput >= bitrate {
        late
    } else {
        let f = link.throughput / bitrate;
        f * late + length_s * (1.0 - f)
    };
    (p + margin_s.max(0.0)).min(length_s).max(0.0)
}

/// The link as one object's fetch sees it when `concurrent` objects' suffixes share it
/// (measured: the mean number of objects being fetched when a session starts); at least 1.
pub fn share(link: LinkEstimate, concurrent: f64) -> LinkEstimate {
    let c = if concurrent.is_finite() {
        concurrent.max(1.0)
    } else {
        1.0
    };
    LinkEstimate {
        throughput: link.throughput / c,
        ..link
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_link_needs_longer_prefixes() {
        // B = 1.2 r shared by 2 objects: each sees 0.6 r; L = 60 s, T_fb + J = 0.5 s:
        // 0.6 * 0.5 + 60 * 0.4 = 24.3 s (+ 1 s margin).
        let l = share(link(1.2, 0.4, 0.1), 2.0);
        assert!((l.throughput - 0.6).abs() < 1e-12);
        assert!((required_prefix_s(1.0, 60.0, l, 1.0) - 25.3).abs() < 1e-9);
        // Alone (or below 1, or garbage): the whole link.
        assert_eq!(share(link(1.2, 0.4, 0.1), 0.3).throughput, 1.2);
        assert_eq!(share(link(1.2, 0.4, 0.1), f64::NAN).throughput, 1.2);
    }

    fn link(b: f64, tfb: f64, j: f64) -> LinkEstimate {
        LinkEstimate {
            throughput: b,
            first_byte_s: tfb,
            jitter_s: j,
        }
    }

    #[test]
    fn fast_link_needs_only_the_first_byte_delay() {
        // r = 250 kB/s, B = 1 MB/s, T_fb = 0.2 s, J = 0.05 s, margin 1 s: 1.25 s.
        let p = required_prefix_s(250e3, 600.0, link(1e6, 0.2, 0.05), 1.0);
        assert!((p - 1.25).abs() < 1e-9, "{p}");
        // Exactly B = r is the same case.
        let p = required_prefix_s(250e3, 600.0, link(250e3, 0.2, 0.05), 0.0);
        assert!((p - 0.25).abs() < 1e-9, "{p}");
    }

    #[test]
    fn slow_link_needs_the_deficit() {
        // B = r/2, L = 100 s, T_fb + J = 1 s: (1/2)(1) + 100 (1/2) = 50.5 s, + 2 s margin.
        let p = required_prefix_s(200e3, 100.0, link(100e3, 0.8, 0.2), 2.0);
        assert!((p - 52.5).abs() < 1e-9, "{p}");
        // B = 0.8 r, L = 3600 s, T_fb + J = 0.5 s: 0.4 + 720 = 720.4 s.
        let p = required_prefix_s(1e6, 3600.0, link(0.8e6, 0.4, 0.1), 0.0);
        assert!((p - 720.4).abs() < 1e-6, "{p}");
    }

    #[test]
    fn bounds() {
        // Unknown link: the whole object; never more than the object; never negative.
        assert_eq!(required_prefix_s(1e5, 30.0, link(0.0, 0.1, 0.0), 1.0), 30.0);
        assert_eq!(
            required_prefix_s(1e5, 30.0, link(1e3, 5.0, 1.0), 10.0),
            30.0
        );
        assert_eq!(required_prefix_s(1e5, 30.0, link(1e6, -1.0, 0.0), 0.0), 0.0);
    }
}
