//! Scenario files (`segue-lab run FILE.toml`): nodes, links, media, players, bounds. See
//! docs/LAB.md for the format; `lab/scenarios/` holds the shipped ones.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::impair::LinkSpec;

/// A link between two nodes: `both` applies to each direction unless `up`/`down` are given.
/// `up` is towards the server side (edge → origin, player → edge).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConf {
    pub both: Option<LinkSpec>,
    pub up: Option<LinkSpec>,
    pub down: Option<LinkSpec>,
    /// Rate limit on the down direction as a multiple of the catalog's highest bitrate
    /// (e.g. 1.2); overrides `down.rate_kbps`.
    pub rate_x_bitrate: Option<f64>,
}

impl LinkConf {
    /// The two directions, with `rate_x_bitrate` resolved against `bitrate_kbps`.
    pub fn resolve(&self, bitrate_kbps: f64) -> (LinkSpec, LinkSpec) {
        let both = self.both.clone().unwrap_or_default();
        let up = self.up.clone().unwrap_or_else(|| both.clone());
        let mut down = self.down.clone().unwrap_or(both);
        if let Some(x) = self.rate_x_bitrate {
            down.rate_kbps = (x * bitrate_kbps).ceil().max(1.0) as u64;
        }
        (up, down)
    }

    /// True when neither direction is impaired.
    pub fn is_clean(&self) -> bool {
        let (up, down) = self.resolve(1.0);
        self.rate_x_bitrate.is_none() && up.is_clean() && down.is_clean()
    }

    fn validate(&self, what: &str) -> Result<(), String> {
        for (dir, s) in [("both", &self.both), ("up", &self.up), ("down", &self.down)] {
            if let Some(s) = s {
                s.validate().map_err(|e| format!("{what}.{dir}: {e}"))?;
            }
        }
        if self
            .rate_x_bitrate
            .is_some_and(|x| !(x > 0.0 && x.is_finite()))
        {
            return Err(format!("{what}.rate_x_bitrate must be positive"));
        }
        Ok(())
    }
}

/// Which media the origin serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConf {
    /// File stems from the samples directory (`--samples`, default media/samples), e.g. "long".
    #[serde(default)]
    pub samples: Vec<String>,
    /// Or a directory of media files (relative to the scenario file).
    pub dir: Option<PathBuf>,
    /// Serve the catalog this many times under distinct names (obj-000, obj-001, ...), to
    /// build a large catalog from few files. 1: the files' own names.
    #[serde(default = "one")]
    pub copies: usize,
    /// Target segment duration at the origin.
    #[serde(default = "two_thousand")]
    pub segment_ms: u64,
}

fn one() -> usize {
    1
}
fn two_thousand() -> u64 {
    2000
}

/// One edge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConf {
    pub name: String,
    /// Prefix kept per object, seconds of media.
    #[serde(default = "default_prefix")]
    pub prefix_s: u64,
    /// Parallel origin fetches (K).
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Disk cache bound, MiB.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// Objects whose prefix is placed before players arrive ("*": all).
    #[serde(default)]
    pub warm: Vec<String>,
    #[serde(default)]
    pub origin_link: LinkConf,
    #[serde(default)]
    pub player_link: LinkConf,
    /// Media the edge sends ahead of real time (the player's buffer), milliseconds.
    #[serde(default = "default_send_ahead_ms")]
    pub send_ahead_ms: u64,
    /// The send-ahead grows up to this while the path is clear, milliseconds (default:
    /// `send_ahead_ms`, no growth; the nodes' `--send-ahead-max-ms`).
    #[serde(default)]
    pub send_ahead_max_ms: Option<u64>,
    /// Helpers (with a `[helpers]` table): edges of one site are local peers, of one region
    /// regional, the rest national.
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

impl EdgeConf {
    /// The edge's `--send-ahead-max-ms`.
    pub fn send_ahead_max_ms(&self) -> u64 {
        self.send_ahead_max_ms.unwrap_or(self.send_ahead_ms)
    }
}

/// The helper network: every edge is a peer of every other, over links by scope.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelpersConf {
    /// Advert periods, seconds: local,regional,national,global.
    #[serde(default = "default_periods")]
    pub periods: String,
    /// Links between two edges of one site, one region, or neither.
    #[serde(default)]
    pub local: LinkConf,
    #[serde(default)]
    pub regional: LinkConf,
    #[serde(default)]
    pub national: LinkConf,
    /// Stop one edge this long after the plays start (its own players' plays end there).
    pub kill: Option<KillConf>,
    /// Segments are spread over the helpers of this scope and nearer (default local).
    #[serde(default = "default_collective")]
    pub collective: String,
}

impl HelpersConf {
    /// The link between two helpers `scope` apart (global peers get the national link).
    pub fn link(&self, scope: segue_server::cooperation::scope::Scope) -> &LinkConf {
        use segue_server::cooperation::scope::Scope;
        match scope {
            Scope::Local => &self.local,
            Scope::Regional => &self.regional,
            Scope::National | Scope::Global => &self.national,
        }
    }
}

fn default_collective() -> String {
    "local".into()
}

fn default_periods() -> String {
    "1,5,30,120".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillConf {
    pub edge: String,
    pub at_s: f64,
}

impl Scenario {
    /// The helper this scenario kills mid-run: its edge's index and when.
    pub fn helper_kill(&self) -> Option<(usize, KillConf)> {
        let k = self.helpers.as_ref()?.kill.clone()?;
        let i = self.edges.iter().position(|e| e.name == k.edge)?;
        Some((i, k))
    }

    /// How far edges `a` and `b` are from each other.
    pub fn scope_between(&self, a: usize, b: usize) -> segue_server::cooperation::scope::Scope {
        use segue_server::cooperation::scope::Scope;
        let (x, y) = (&self.edges[a], &self.edges[b]);
        let same = |p: &Option<String>, q: &Option<String>| p.is_some() && p == q;
        if same(&x.site, &y.site) {
            Scope::Local
        } else if same(&x.region, &y.region) {
            Scope::Regional
        } else {
            Scope::National
        }
    }
}

fn default_send_ahead_ms() -> u64 {
    2000
}

fn default_prefix() -> u64 {
    4
}
fn default_parallel() -> usize {
    4
}
fn default_cache_mb() -> u64 {
    1024
}

/// How long viewers watch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConf {
    /// Fraction of plays that stop early.
    pub early_quit: f64,
    /// Early quitters stop uniformly within this fraction of the object (e.g. 0.2).
    pub within: f64,
}

/// The player population.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayersConf {
    pub count: usize,
    /// Poisson arrivals spread over this window (0: everyone at once).
    #[serde(default)]
    pub arrival_window_s: f64,
    /// The window opens this long after the plays start (default 0).
    #[serde(default)]
    pub start_s: f64,
    /// Zipf exponent over the catalog (0: uniform).
    #[serde(default)]
    pub zipf_alpha: f64,
    #[serde(default = "default_startup")]
    pub startup_buffer_ms: u64,
    /// Without it, everyone watches to the end.
    pub watch: Option<WatchConf>,
    /// Plays whose buffer level is recorded for the plot.
    #[serde(default = "default_sampled")]
    pub sampled: usize,
    /// A start within this time counts as immediate.
    #[serde(default = "default_immediate")]
    pub immediate_ms: f64,
    /// Give up on a play after this long without media.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout_s: u64,
    /// Segue players also get the next edge (in the scenario's order) as a fallback, played
    /// from when their own fails (`segue-play --fallback`).
    #[serde(default)]
    pub fallback: bool,
    /// Each viewer's own access link (the last mile), `up` towards the edge: one link per
    /// viewer, seeded per viewer, behind the edge's `player_link` (which all its viewers
    /// share). Packet-level network (`--netns`) only.
    #[serde(default)]
    pub last_mile: LinkConf,
    /// Fraction of plays (0 to 1) by a viewer who played before in the run, at least
    /// [`RETURN_AFTER_S`](crate::population::RETURN_AFTER_S) earlier: from the same
    /// address and last mile, to the same edge, with the TLS tickets that play left (Segue
    /// resumes and sends its start as 0-RTT data; nginx-HLS resumes TLS). 0 (the default):
    /// every play is a new viewer and resumes nothing.
    #[serde(default)]
    pub returning: f64,
}

fn default_startup() -> u64 {
    500
}
fn default_sampled() -> usize {
    6
}
fn default_immediate() -> f64 {
    250.0
}
fn default_stall_timeout() -> u64 {
    10
}

/// A scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice (arrivals, popularity, watch times, link fates).
    #[serde(default)]
    pub seed: u64,
    /// Hard bound on the whole run, seconds; plays still running then are cut and reported.
    #[serde(default = "default_max")]
    pub max_duration_s: u64,
    pub media: MediaConf,
    #[serde(rename = "edge")]
    pub edges: Vec<EdgeConf>,
    pub players: PlayersConf,
    /// Edges cooperate as helpers (docs/HELPERS.md).
    #[serde(default)]
    pub helpers: Option<HelpersConf>,
    /// Congestion control of both systems.
    #[serde(default)]
    pub transport: TransportConf,
    /// A competing bulk TCP flow (packet-level network only).
    #[serde(default)]
    pub bulk: Option<BulkConf>,
    /// Where relative paths in the file are resolved (the file's directory).
    #[serde(skip)]
    pub base: PathBuf,
}

fn default_max() -> u64 {
    300
}

/// Congestion control of each system under test.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConf {
    /// Segue's nodes (`--congestion`) and players: bbr (default), model, cubic, newreno.
    pub congestion: segue_net::Congestion,
    /// Kernel TCP in the nodes' namespaces (nginx, the bulk flow's source), packet-level
    /// network only: a name the kernel offers (cubic, reno, bbr); default: the host's.
    pub tcp_congestion: Option<String>,
    /// Segue's loss detection (`--loss-packet-threshold`, `--loss-time-threshold`); default:
    /// the nodes' defaults.
    pub packet_threshold: Option<u32>,
    pub time_threshold: Option<f32>,
    /// Segue's initial congestion window, datagrams (`--initial-window`); default: the
    /// nodes' default.
    pub initial_window: Option<u32>,
}

impl TransportConf {
    /// The flags of `segue origin` / `segue edge` that give a node these settings (both
    /// nodes take the same; a threshold not given is the node role's default).
    pub fn node_flags(&self) -> Vec<String> {
        let mut f = vec!["--congestion".to_string(), self.congestion.to_string()];
        if let Some(n) = self.packet_threshold {
            f.extend(["--loss-packet-threshold".into(), n.to_string()]);
        }
        if let Some(x) = self.time_threshold {
            f.extend(["--loss-time-threshold".into(), x.to_string()]);
        }
        if let Some(n) = self.initial_window {
            f.extend(["--initial-window".into(), n.to_string()]);
        }
        f
    }

    /// "bbr", with the loss-detection thresholds and initial window when not the defaults.
    pub fn describe(&self) -> String {
        let s = self.settings();
        let d = segue_net::TransportSettings::default();
        let mut out = s.congestion.to_string();
        if (s.packet_threshold, s.time_threshold) != (d.packet_threshold, d.time_threshold) {
            out += &format!(
                " (loss after {} packets or {} RTT)",
                s.packet_threshold, s.time_threshold
            );
        }
        if s.initial_window != d.initial_window {
            out += &format!(", initial window {} datagrams", s.initial_window);
        }
        out
    }

    /// Segue's transport settings for this run's players (the nodes get the same flags).
    pub fn settings(&self) -> segue_net::TransportSettings {
        let d = segue_net::TransportSettings::default();
        segue_net::TransportSettings {
            congestion: self.congestion,
            packet_threshold: self.packet_threshold.unwrap_or(d.packet_threshold),
            time_threshold: self.time_threshold.unwrap_or(d.time_threshold),
            initial_window: self.initial_window.unwrap_or(d.initial_window),
            tolerate_reordering: d.tolerate_reordering,
        }
    }
}

/// A bulk TCP download competing with the plays: from a source in an edge's namespace to a
/// viewer-side address, through that edge's `player_link` (the shared bottleneck).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkConf {
    /// The edge whose player link it shares.
    pub edge: String,
    /// Starts this long after the plays start, lasts `duration_s`.
    #[serde(default)]
    pub start_s: f64,
    pub duration_s: f64,
}

/// Upper bounds a scenario may not exceed (the lab runs on one box).
pub const MAX_PLAYERS: usize = 2000;
pub const MAX_EDGES: usize = 16;
pub const MAX_DURATION_S: u64 = 3600;
pub const MAX_COPIES: usize = 1000;

impl Scenario {
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.base = base.to_path_buf();
        s.validate()?;
        Ok(s)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.edges.is_empty() || self.edges.len() > MAX_EDGES {
            return Err(format!("1 to {MAX_EDGES} [[edge]] tables are needed"));
        }
        let p = &self.players;
        if p.count == 0 || p.count > MAX_PLAYERS {
            return Err(format!("players.count must be 1..={MAX_PLAYERS}"));
        }
        if self.max_duration_s == 0 || self.max_duration_s > MAX_DURATION_S {
            return Err(format!("max_duration_s must be 1..={MAX_DURATION_S}"));
        }
        let finite = |v: f64| v >= 0.0 && v.is_finite();
        if !finite(p.arrival_window_s) || !finite(p.zipf_alpha) {
            return Err("players.arrival_window_s and zipf_alpha must be non-negative".into());
        }
        if !(0.0..=1.0).contains(&p.returning) {
            return Err("players.returning must be within 0..1".into());
        }
        if let Some(w) = &p.watch
            && !((0.0..=1.0).contains(&w.early_quit) && w.within > 0.0 && w.within <= 1.0)
        {
            return Err("players.watch: early_quit within 0..1, within in (0, 1]".into());
        }
        let m = &self.media;
        if m.samples.is_empty() == m.dir.is_none() {
            return Err("media: give either samples or dir".into());
        }
        if m.copies == 0 || m.copies > MAX_COPIES {
            return Err(format!("media.copies must be 1..={MAX_COPIES}"));
        }
        for s in &m.samples {
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!("media.samples: {s:?} is not a sample name"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for e in &self.edges {
            if !names.insert(&e.name) {
                return Err(format!("edge {:?} is defined twice", e.name));
            }
            if e.parallel == 0 || e.parallel > 64 {
                return Err(format!("edge {}: parallel must be 1..=64", e.name));
            }
            e.origin_link
                .validate(&format!("edge {}.origin_link", e.name))?;
            e.player_link
                .validate(&format!("edge {}.player_link", e.name))?;
            segue_server::cooperation::check_name(&e.name).map_err(|x| format!("edge: {x}"))?;
        }
        p.last_mile.validate("players.last_mile")?;
        if let Some(t) = &self.transport.tcp_congestion
            && (t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!(
                "transport.tcp_congestion: {t:?} is not a controller name"
            ));
        }
        let ts = self.transport.settings();
        if let Err(e) = ts.check() {
            return Err(format!("transport: {e}"));
        }
        if let Some(b) = &self.bulk {
            if !self.edges.iter().any(|e| e.name == b.edge) {
                return Err(format!("bulk.edge: no edge {:?}", b.edge));
            }
            if !(b.start_s >= 0.0
                && b.duration_s > 0.0
                && b.start_s.is_finite()
                && b.duration_s.is_finite())
            {
                return Err("bulk: start_s >= 0 and duration_s > 0".into());
            }
        }
        if let Some(h) = &self.helpers {
            segue_server::cooperation::scope::Periods::parse(&h.periods)
                .map_err(|e| format!("helpers.periods: {e}"))?;
            segue_server::cooperation::scope::Scope::parse(&h.collective)
                .map_err(|e| format!("helpers.collective: {e}"))?;
            for (what, l) in [
                ("local", &h.local),
                ("regional", &h.regional),
                ("national", &h.national),
            ] {
                l.validate(&format!("helpers.{what}"))?;
            }
            if let Some(k) = &h.kill {
                if !self.edges.iter().any(|e| e.name == k.edge) {
                    return Err(format!("helpers.kill: no edge {:?}", k.edge));
                }
                if !(k.at_s >= 0.0 && k.at_s.is_finite()) {
                    return Err("helpers.kill.at_s must be non-negative".into());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_flags_give_a_node_the_scenario_settings() {
        let t = TransportConf {
            congestion: segue_net::Congestion::Cubic,
            packet_threshold: Some(7),
            time_threshold: Some(1.75),
            initial_window: Some(20),
            ..TransportConf::default()
        };
        let url = segue_wire::SegueUrl::parse("segue://localhost:9/").unwrap();
        let e = segue_server::config::EdgeConfig::with_flags(&url, t.node_flags()).unwrap();
        let o = segue_server::config::OriginConfig::with_flags("m", t.node_flags()).unwrap();
        for l in [&e.limits, &o.limits] {
            assert_eq!(l.congestion, segue_net::Congestion::Cubic);
            assert_eq!(l.loss_packet_threshold, Some(7));
            assert_eq!(l.loss_time_threshold, Some(1.75));
            assert_eq!(l.initial_window, Some(20));
        }
        // Unset thresholds stay the node role's default.
        let d = segue_server::config::EdgeConfig::with_flags(
            &url,
            TransportConf::default().node_flags(),
        )
        .unwrap();
        assert_eq!(d.limits.loss_packet_threshold, None);
        assert_eq!(d.limits.initial_window, None);
        // ... which for the initial window is 10 on the edge, 32 on the origin.
        let od = segue_server::config::OriginConfig::with_flags(
            "m",
            TransportConf::default().node_flags(),
        )
        .unwrap();
        let iw = |l: &segue_server::config::node::LimitArgs, role| {
            l.transport(role).unwrap().transport.initial_window
        };
        use segue_net::TransportSettings as T;
        assert_eq!(iw(&d.limits, T::default()), 10);
        assert_eq!(iw(&od.limits, T::origin_default()), 32);
        assert_eq!(iw(&o.limits, T::origin_default()), 20);
    }

    const GOOD: &str = r#"
name = "t"
seed = 3
[media]
samples = ["long"]
copies = 4
[[edge]]
name = "e1"
origin_link = { both = { delay_ms = 50, jitter_ms = 10, loss = 0.01 }, rate_x_bitrate = 1.2 }
[players]
count = 10
arrival_window_s = 5
zipf_alpha = 0.8
watch = { early_quit = 0.6, within = 0.2 }
"#;

    #[test]
    fn parses_and_resolves_links() {
        let s = Scenario::parse(GOOD, Path::new("/x")).unwrap();
        assert_eq!(s.edges[0].prefix_s, 4);
        let (up, down) = s.edges[0].origin_link.resolve(250.0);
        assert_eq!(up.delay_ms, 50.0);
        assert_eq!(up.rate_kbps, 0);
        assert_eq!(down.loss, 0.01);
        assert_eq!(down.rate_kbps, 300);
        assert!(s.edges[0].player_link.resolve(1.0).0.is_clean());
    }

    #[test]
    fn helper_scopes_follow_sites_and_regions() {
        use segue_server::cooperation::scope::Scope;
        let s = Scenario::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab/scenarios/helpers6.toml"),
        )
        .unwrap();
        assert_eq!(s.edges.len(), 6);
        assert_eq!(s.scope_between(0, 1), Scope::Local);
        assert_eq!(s.scope_between(0, 2), Scope::Regional);
        assert_eq!(s.scope_between(3, 4), Scope::National);
        let h = s.helpers.as_ref().unwrap();
        assert_eq!(h.kill.as_ref().unwrap().edge, "h-b2");
        let bad = GOOD.to_string() + "[helpers]\nkill = { edge = \"nope\", at_s = 1 }\n";
        assert!(
            Scenario::parse(&bad, Path::new("/x"))
                .unwrap_err()
                .contains("no edge")
        );
        let bad = GOOD.to_string() + "[helpers]\nperiods = \"5,1,1,1\"\n";
        assert!(
            Scenario::parse(&bad, Path::new("/x"))
                .unwrap_err()
                .contains("periods")
        );
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        for (bad, why) in [
            (GOOD.replace("count = 10", "count = 0"), "count"),
            (GOOD.replace("count = 10", "count = 100000"), "count"),
            (GOOD.replace("loss = 0.01", "loss = 3"), "loss"),
            (
                GOOD.replace("samples = [\"long\"]", "samples = [\"../x\"]"),
                "sample",
            ),
            (
                GOOD.replace("seed = 3", "seed = 3\nbogus = 1"),
                "unknown field",
            ),
            (
                GOOD.replace("early_quit = 0.6", "early_quit = 1.6"),
                "watch",
            ),
            (
                GOOD.replace("name = \"e1\"", "name = \"e1\"\nparallel = 0"),
                "parallel",
            ),
            (
                GOOD.replace("count = 10", "count = 10\nreturning = 1.5"),
                "returning",
            ),
        ] {
            let e = Scenario::parse(&bad, Path::new("/x")).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
