//! The continuity report a play produces.

use serde::Serialize;

/// Per-track outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrackReport {
    pub track: u32,
    pub codec: String,
    pub frames_received: u64,
    pub frames_expected: u64,
    pub late_frames: u64,
    pub lost_frames: u64,
    pub hash_ok: bool,
}

/// The player left a node that failed it for the next one (`--fallback`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Failover {
    /// Seconds since the request.
    pub at_s: f64,
    /// The node's object URL played from then on.
    pub to: String,
    /// What the node left did.
    pub why: String,
}

/// What `segue-play` measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub url: String,
    /// Connect start → the pipelined start sent: the QUIC + TLS handshake, about nothing on a
    /// resumed connection (the requests go as 0-RTT data), milliseconds.
    pub connect_ms: Option<f64>,
    /// QUIC's smoothed round-trip time at the end, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Request sent (after the handshake, or as 0-RTT data) → first complete frame received,
    /// milliseconds.
    pub ttff_ms: Option<f64>,
    /// Click to first frame: the play asked for (before the connection) → first complete
    /// frame received, milliseconds: handshake, request and TTFF, what a viewer waits.
    #[serde(default)]
    pub click_ms: Option<f64>,
    /// The first node's connection resumed a TLS session and the node accepted its 0-RTT data.
    #[serde(default)]
    pub resumed: Option<bool>,
    /// Request sent → playback start (startup buffer filled), milliseconds.
    pub startup_ms: Option<f64>,
    /// The start-up buffer playback waited for (the larger of the configured one and the
    /// RTT-based one), milliseconds of media.
    #[serde(default)]
    pub startup_buffer_ms: Option<f64>,
    pub paced: bool,
    pub stalls: u32,
    pub stall_ms: f64,
    pub late_frames: u64,
    pub lost_frames: u64,
    pub frames_received: u64,
    pub frames_expected: u64,
    /// Every track's content hash and frame count match the manifest.
    pub hash_ok: bool,
    pub bytes: u64,
    pub wall_s: f64,
    pub bitrate_kbps: f64,
    pub tracks: Vec<TrackReport>,
    /// Tracks of the source the node does not carry, and why (the SDP's
    /// `a=x-segue-left-out`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    /// Why playback ended early, if it did.
    pub error: Option<String>,
    /// It ended early because the caller's time bound came (`PlayOptions::give_up_at`): a
    /// lab or soak run cut it, with what it measured until then.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gave_up: bool,
    /// Set when the viewer stopped on purpose (`--watch`): media seconds played.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watched_until_s: Option<f64>,
    /// Buffer level samples: [seconds since the request, buffered media in ms].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buffer: Vec<[f64; 2]>,
    /// Nodes left mid-play for a fallback, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failovers: Vec<Failover>,
}

impl Report {
    /// Closes a play begun at `started`: its error if it failed, wall time and mean bitrate.
    pub fn finish<E: std::fmt::Display>(
        &mut self,
        started: std::time::Instant,
        result: Result<(), E>,
    ) {
        if let Err(e) = result {
            self.error = Some(format!("{e:#}"));
        }
        self.wall_s = started.elapsed().as_secs_f64();
        if self.wall_s > 0.0 {
            self.bitrate_kbps = self.bytes as f64 * 8.0 / self.wall_s / 1000.0;
        }
    }

    /// Complete and byte-exact, or stopped on purpose by the viewer without an error.
    pub fn ok(&self) -> bool {
        if self.watched_until_s.is_some() {
            return self.error.is_none() && self.lost_frames == 0;
        }
        self.error.is_none()
            && self.hash_ok
            && self.lost_frames == 0
            && self.frames_received == self.frames_expected
    }

    /// The human-readable summary.
    pub fn render(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
        let mut s = String::new();
        s.push_str(&format!("{}\n", self.url));
        s.push_str(&format!("  handshake            {}\n", ms(self.connect_ms)));
        s.push_str(&format!("  time to first frame  {}\n", ms(self.ttff_ms)));
        let resumed = match self.resumed {
            Some(true) => " (resumed session)",
            Some(false) => " (full handshake)",
            None => "",
        };
        s.push_str(&format!(
            "  click to first frame {}{resumed}\n",
            ms(self.click_ms)
        ));
        s.push_str(&format!("  playback start       {}", ms(self.startup_ms)));
        if let Some(b) = self.startup_buffer_ms {
            s.push_str(&format!(" (after {b:.0} ms of media buffered)"));
        }
        s.push('\n');
        if self.paced {
            s.push_str(&format!(
                "  stalls               {} ({:.1} ms)\n",
                self.stalls, self.stall_ms
            ));
        } else {
            s.push_str("  stalls               n/a (unpaced)\n");
        }
        s.push_str(&format!(
            "  frames               {}/{}  late {}  lost {}\n",
            self.frames_received, self.frames_expected, self.late_frames, self.lost_frames
        ));
        if let Some(w) = self.watched_until_s {
            s.push_str(&format!(
                "  content hash         not checked (viewer stopped at {w:.1} s)\n"
            ));
        } else {
            s.push_str(&format!(
                "  content hash         {}\n",
                if self.hash_ok { "match" } else { "MISMATCH" }
            ));
        }
        s.push_str(&format!(
            "  received             {} bytes in {:.2} s ({:.0} kbit/s)\n",
            self.bytes, self.wall_s, self.bitrate_kbps
        ));
        for t in &self.tracks {
            s.push_str(&format!(
                "  track {} {:<5}        {}/{} frames, late {}, lost {}, hash {}\n",
                t.track,
                t.codec,
                t.frames_received,
                t.frames_expected,
                t.late_frames,
                t.lost_frames,
                if t.hash_ok { "ok" } else { "MISMATCH" }
            ));
        }
        for l in &self.left_out {
            s.push_str(&format!("  left out             {l}\n"));
        }
        for f in &self.failovers {
            s.push_str(&format!(
                "  failover             at {:.1} s to {} ({})\n",
                f.at_s, f.to, f.why
            ));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("  error                {e}\n"));
        }
        s.push_str(&format!(
            "  result               {}\n",
            if self.ok() { "OK" } else { "FAILED" }
        ));
        s
    }
}
