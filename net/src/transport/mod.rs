//! How a connection moves its bytes: the congestion controller and how loss is told apart
//! from reordering. One type for every endpoint (player, edge, origin, helpers), so a
//! `--congestion` given to any of them means the same thing.

pub mod model;

use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use serde::{Deserialize, Serialize};

/// The congestion controller of a connection (quinn's implementations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Congestion {
    /// RFC 9438 CUBIC: loss-based, cuts the window by 30 % on a loss; quinn's default.
    Cubic,
    /// RFC 9002's NewReno: loss-based, halves the window on a loss.
    #[value(name = "newreno")]
    #[serde(rename = "newreno")]
    NewReno,
    /// quinn's BBR (BBRv1-like, experimental): paces at the bottleneck rate it measures
    /// (over-measures it many times: docs/TRANSPORT.md) and does not read a random loss as
    /// congestion; floods a slow last mile's queue at start-up.
    Bbr,
    /// Segue's own model-based controller (`transport/model.rs`): BBR's delivery-rate model
    /// with a loss bound on the window, written for paced media; tells reordering from loss
    /// on the edge and covers a jittery path's spread. The default: best on the matrix and
    /// the reordering scenarios (docs/TRANSPORT.md).
    #[default]
    Model,
}

impl Congestion {
    /// Every controller, in one fixed order (counters indexed by it).
    pub const ALL: [Congestion; 4] = [
        Congestion::Cubic,
        Congestion::NewReno,
        Congestion::Bbr,
        Congestion::Model,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Congestion::Cubic => "cubic",
            Congestion::NewReno => "newreno",
            Congestion::Bbr => "bbr",
            Congestion::Model => "model",
        }
    }
}

impl std::fmt::Display for Congestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Congestion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Self as clap::ValueEnum>::from_str(s, true).map_err(|_| {
            format!("unknown congestion controller {s:?} (cubic, newreno, bbr, model)")
        })
    }
}

/// The transport settings of the connections an endpoint opens or accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransportSettings {
    pub congestion: Congestion,
    /// Packets a later packet must be acknowledged ahead of one before that one is declared
    /// lost (RFC 9002 §6.1.1's kPacketThreshold is 3). Segue's 1000 leaves loss to the time
    /// threshold, as RACK (RFC 8985) does once a path reorders: at 3, a last mile whose
    /// jitter reorders declares lost a quarter to a half of the packets, which only arrive
    /// late (measured: `reorder-wifi-hd` stalls at 3 whatever the controller does). The
    /// cost: a queue's delay stretches the time threshold (slower recovery on a slow,
    /// bloated last mile; docs/TRANSPORT.md).
    pub packet_threshold: u32,
    /// A packet is lost once this many RTTs (the larger of the smoothed and the latest)
    /// passed since it was sent and a later one was acknowledged (RFC 9002 §6.1.2's 9/8).
    /// Segue's 1.5 tolerates a jitter of a quarter of the RTT each way; a real loss is
    /// recovered 3/8 RTT later, which the player's buffer (4 RTTs at least) covers.
    pub time_threshold: f32,
    /// Initial congestion window, in datagrams of 1200 bytes: RFC 9002's 10 (quinn's own BBR
    /// would start at 200). 32 sends an HD keyframe in the first round trip but floods a slow
    /// last mile's queue (docs/TRANSPORT.md: stalls at 0.5 Mbit/s). Paced over the
    /// handshake's RTT.
    pub initial_window: u32,
    /// `model` tells reordering from loss (the edge: viewers' last miles reorder); off on
    /// the origin (`origin_default`), whose paths are server to server.
    pub tolerate_reordering: bool,
}

/// RFC 9002 §6.1.1's kPacketThreshold: the least packet threshold quinn (and we) accept.
pub const RFC9002_PACKET_THRESHOLD: u32 = 3;
/// RFC 9002 §6.1.2's kTimeThreshold (9/8 RTT): the least time threshold.
pub const RFC9002_TIME_THRESHOLD: f32 = 9.0 / 8.0;

/// The RTT a connection assumes before its first sample: what its handshake's probe timeout
/// counts from (3 × this, doubling per probe). RFC 9002 suggests 333 ms (a 1 s first probe,
/// as TCP's SYN); a lost handshake flight then cost 1 s, 3 s, 7 s … and behind a queue a
/// bulk flow keeps full (bulk-shared: 30-45 % of packets dropped, the 1200-byte handshake
/// packets more often than TCP's 60-byte SYN-ACK) 5 of 18 handshakes took 1.4-5.7 s or never
/// completed within the player's 10 s; 0 of 18 with 100 ms (docs/TRANSPORT.md, "Start-up").
/// 100 ms (Chromium's value) probes at 0.3 s, 0.9 s, 2.1 s, 4.5 s, 9.3 s; on a path longer
/// than 300 ms the cost is one spurious Initial (1200 bytes) and a server flight resent
/// once, within anti-amplification.
pub const INITIAL_RTT: Duration = Duration::from_millis(100);

/// The origin's initial window, datagrams: a miss's first segment crosses the origin link
/// in start-up, and an HD keyframe (39-76 kB) takes 3 round trips from 10 datagrams, 2 from
/// 32 (docs/TRANSPORT.md, "Start-up"). An edge waits for a sufficient portion and holds
/// loss recoveries of media before a miss starts (its own buffer), where a viewer's slow
/// last mile had only the player's.
pub const ORIGIN_INITIAL_WINDOW: u32 = 32;

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            congestion: Congestion::default(),
            packet_threshold: 1000,
            time_threshold: 1.5,
            initial_window: 10,
            tolerate_reordering: true,
        }
    }
}

/// A transport setting out of its range ([`TransportSettings::check`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    #[error("the loss packet threshold must be {RFC9002_PACKET_THRESHOLD} to 10000, not {0}")]
    PacketThreshold(u32),
    #[error("the initial window must be 2 to 1000 datagrams, not {0}")]
    InitialWindow(u32),
    #[error("the loss time threshold must be {RFC9002_TIME_THRESHOLD} to 100 RTTs, not {0}")]
    TimeThreshold(f32),
}

impl TransportSettings {
    /// The origin's defaults: RFC 9002's loss thresholds (3 packets, 9/8 RTT) and an
    /// initial window of [`ORIGIN_INITIAL_WINDOW`]. Its connections carry segments to edges
    /// over server-to-server paths, where reordering is rare and fast recovery after a loss
    /// burst matters: with the last mile's 1000 / 1.5 the matrix's lossy 8 Mbit/s
    /// origin-link cells stalled (78.8 stalls per play at 80 ms, 3 % bursty; 0 with these).
    /// The edge, which sends over viewers' last miles, keeps [`Default`]'s.
    pub fn origin_default() -> Self {
        Self {
            packet_threshold: RFC9002_PACKET_THRESHOLD,
            time_threshold: RFC9002_TIME_THRESHOLD,
            tolerate_reordering: false,
            initial_window: ORIGIN_INITIAL_WINDOW,
            ..Self::default()
        }
    }

    /// With `congestion`, the rest default.
    pub fn with(congestion: Congestion) -> Self {
        Self {
            congestion,
            ..Self::default()
        }
    }

    /// Checks the thresholds' ranges (RFC 9002's values are the least).
    pub fn check(&self) -> Result<(), SettingError> {
        if !(RFC9002_PACKET_THRESHOLD..=10_000).contains(&self.packet_threshold) {
            return Err(SettingError::PacketThreshold(self.packet_threshold));
        }
        if !(2..=1000).contains(&self.initial_window) {
            return Err(SettingError::InitialWindow(self.initial_window));
        }
        if !(RFC9002_TIME_THRESHOLD..=100.0).contains(&self.time_threshold) {
            return Err(SettingError::TimeThreshold(self.time_threshold));
        }
        Ok(())
    }

    /// Writes these settings into `t` (thresholds below RFC 9002's are raised to them).
    pub fn apply(&self, t: &mut quinn::TransportConfig) {
        let iw = u64::from(self.initial_window.clamp(2, 1000)) * 1200;
        let factory: Arc<dyn quinn::congestion::ControllerFactory + Send + Sync> = match self
            .congestion
        {
            Congestion::Cubic => Arc::new(CubicConfig::default().initial_window(iw).clone()),
            Congestion::NewReno => Arc::new(NewRenoConfig::default().initial_window(iw).clone()),
            Congestion::Bbr => Arc::new(BbrConfig::default().initial_window(iw).clone()),
            Congestion::Model => Arc::new(model::ModelConfig {
                initial_window: iw,
                tolerate_reordering: self.tolerate_reordering,
            }),
        };
        t.congestion_controller_factory(factory)
            .packet_threshold(self.packet_threshold.max(RFC9002_PACKET_THRESHOLD))
            .time_threshold(self.time_threshold.max(RFC9002_TIME_THRESHOLD))
            .initial_rtt(INITIAL_RTT);
    }

    /// A transport configuration with these settings, the rest quinn's defaults.
    pub fn config(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        self.apply(&mut t);
        t
    }
}

/// The media-rate handle of a connection's controller ([`model::Demand`]), if it runs
/// `model` (the other controllers take no such hint).
pub fn media_demand(conn: &quinn::Connection) -> Option<model::Demand> {
    conn.congestion_state()
        .into_any()
        .downcast::<model::Model>()
        .ok()
        .map(|m| m.demand())
}

/// The controller a connection actually runs, read back from quinn (None: another one).
pub fn controller_of(conn: &quinn::Connection) -> Option<Congestion> {
    let any = conn.congestion_state().into_any();
    if any.is::<quinn::congestion::Bbr>() {
        Some(Congestion::Bbr)
    } else if any.is::<quinn::congestion::Cubic>() {
        Some(Congestion::Cubic)
    } else if any.is::<quinn::congestion::NewReno>() {
        Some(Congestion::NewReno)
    } else if any.is::<model::Model>() {
        Some(Congestion::Model)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_both_ways() {
        for c in Congestion::ALL {
            assert_eq!(c.as_str().parse::<Congestion>(), Ok(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{c}\""));
        }
        assert!("vegas".parse::<Congestion>().unwrap_err().contains("cubic"));
    }
}
