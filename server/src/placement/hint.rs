//! Operator hints (anticipated demand): "object X, at time T, about N viewers, on these edges
//! (or this region)". A hint makes an edge pull the object's prefix before T, or the origin
//! push it to the listed edges; either way the viewers count as requests for placement, so
//! the prefix is not the first thing evicted. Pure: parsing, matching and timing.
//!
//! Schedule file (TOML), also the JSON body of the admin API's `POST /hints`:
//!
//! ```toml
//! [[hint]]
//! object = "films/premiere"
//! at = "2026-11-22T20:00:00Z"   # RFC 3339, or unix seconds; or `in_s = 600` from now
//! viewers = 5000                # optional, default 1
//! edges = ["edge-paris", "segue://edge-lyon.example:8555"]   # optional: names or URLs
//! region = "eu-west"            # optional
//! ```

use segue_wire::{Limits, ObjectName};
use serde::{Deserialize, Serialize};

/// At most this many hints in one file or request.
pub const MAX_HINTS: usize = 10_000;

/// A hint, resolved to absolute time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hint {
    pub object: String,
    /// When the viewers are expected, unix seconds.
    pub at_s: f64,
    pub viewers: u64,
    /// Edge names or `segue://` URLs; empty: every edge (of `region`, if given).
    pub edges: Vec<String>,
    pub region: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum At {
    Unix(u64),
    Text(String),
}

/// A hint as written by an operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HintSpec {
    object: String,
    at: Option<At>,
    in_s: Option<f64>,
    viewers: Option<u64>,
    #[serde(default)]
    edges: Vec<String>,
    region: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    #[serde(default)]
    hint: Vec<HintSpec>,
}

impl HintSpec {
    fn resolve(self, now_s: f64) -> Result<Hint, String> {
        ObjectName::new(&self.object, Limits::default().max_object_name)
            .map_err(|e| format!("hint for {:?}: {e}", self.object))?;
        let at_s = match (self.at, self.in_s) {
            (Some(At::Unix(s)), None) => s as f64,
            (Some(At::Text(t)), None) => {
                let when = humantime::parse_rfc3339_weak(&t)
                    .map_err(|e| format!("hint for {}: at = {t:?}: {e}", self.object))?;
                when.duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| format!("hint for {}: at is before 1970", self.object))?
                    .as_secs_f64()
            }
            (None, Some(d)) if d.is_finite() && d >= 0.0 => now_s + d,
            (None, Some(_)) => return Err(format!("hint for {}: in_s must be >= 0", self.object)),
            _ => {
                return Err(format!(
                    "hint for {}: give exactly one of `at` and `in_s`",
                    self.object
                ));
            }
        };
        Ok(Hint {
            object: self.object,
            at_s,
            viewers: self.viewers.unwrap_or(1).max(1),
            edges: self.edges,
            region: self.region,
        })
    }
}

fn resolve_all(specs: Vec<HintSpec>, now_s: f64) -> Result<Vec<Hint>, String> {
    if specs.len() > MAX_HINTS {
        return Err(format!("{} hints; at most {MAX_HINTS}", specs.len()));
    }
    specs.into_iter().map(|s| s.resolve(now_s)).collect()
}

/// Parses a schedule file (`[[hint]]` tables).
pub fn parse_schedule(text: &str, now_s: f64) -> Result<Vec<Hint>, String> {
    let f: ScheduleFile = toml::from_str(text).map_err(|e| e.to_string())?;
    resolve_all(f.hint, now_s)
}

/// Parses a JSON hint or array of hints (the admin API).
pub fn parse_json(body: &[u8], now_s: f64) -> Result<Vec<Hint>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(HintSpec),
        Many(Vec<HintSpec>),
    }
    let specs = match serde_json::from_slice(body).map_err(|e| e.to_string())? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    resolve_all(specs, now_s)
}

/// The host of a `segue://host[:port]` entry.
fn url_host(entry: &str) -> Option<&str> {
    let rest = entry.strip_prefix("segue://")?;
    let hostport = rest.split('/').next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next();
    }
    hostport.split(':').next()
}

impl Hint {
    /// Whether an edge called `name` in `region` should act on this hint: no edges listed
    /// and no region (everyone), or its name (or a URL with its name as host) listed, or
    /// no edges listed and its region named.
    pub fn applies_to(&self, name: &str, region: Option<&str>) -> bool {
        if self.edges.is_empty() {
            return match &self.region {
                None => true,
                Some(r) => region == Some(r.as_str()),
            };
        }
        self.edges
            .iter()
            .any(|e| e == name || url_host(e) == Some(name))
    }

    /// The listed entries that are `segue://` URLs (where an origin pushes).
    pub fn edge_urls(&self) -> impl Iterator<Item = &str> {
        self.edges
            .iter()
            .map(String::as_str)
            .filter(|e| e.starts_with("segue://"))
    }
}

/// When pre-positioning for a hint at `at_s` starts: `lead_s` before (never in the past
/// of `now_s`, which simply means at once).
pub fn start_s(at_s: f64, lead_s: f64, now_s: f64) -> f64 {
    (at_s - lead_s.max(0.0)).max(now_s.min(at_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_file_forms() {
        let text = r#"
            [[hint]]
            object = "films/premiere"
            at = "2026-11-22T20:00:00Z"
            viewers = 5000
            edges = ["edge-paris", "segue://edge-lyon.example:8555"]

            [[hint]]
            object = "news"
            at = 1800000000

            [[hint]]
            object = "trailer"
            in_s = 90
            region = "eu-west"
        "#;
        let h = parse_schedule(text, 1000.0).unwrap();
        assert_eq!(h.len(), 3);
        // 2026-11-22T20:00:00Z: 20 779 days since 1970-01-01 (Python: date difference) + 20 h.
        assert_eq!(h[0].at_s, (20_779 * 86_400 + 20 * 3600) as f64);
        assert_eq!(h[0].viewers, 5000);
        assert_eq!(h[1].at_s, 1_800_000_000.0);
        assert_eq!(h[1].viewers, 1);
        assert_eq!(h[2].at_s, 1090.0);
        assert_eq!(
            h[0].edge_urls().collect::<Vec<_>>(),
            ["segue://edge-lyon.example:8555"]
        );
    }

    #[test]
    fn bad_hints_are_refused_with_the_reason() {
        let e = parse_schedule("[[hint]]\nobject = \"../x\"\nin_s = 1\n", 0.0).unwrap_err();
        assert!(e.contains("../x"), "{e}");
        let e = parse_schedule("[[hint]]\nobject = \"a\"\n", 0.0).unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = parse_schedule("[[hint]]\nobject = \"a\"\nat = 5\nin_s = 1\n", 0.0).unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = parse_schedule("[[hint]]\nobject = \"a\"\nat = \"tomorrow\"\n", 0.0).unwrap_err();
        assert!(e.contains("tomorrow"), "{e}");
        assert!(parse_schedule("[[hint]]\nobject = \"a\"\nin_s = 1\nviewer = 3\n", 0.0).is_err());
        assert!(parse_json(b"{\"object\": \"a\", \"in_s\": -1}", 0.0).is_err());
    }

    #[test]
    fn json_one_or_many() {
        let one = parse_json(br#"{"object": "a", "in_s": 5, "viewers": 7}"#, 10.0).unwrap();
        assert_eq!(one[0].at_s, 15.0);
        assert_eq!(one[0].viewers, 7);
        let many = parse_json(
            br#"[{"object": "a", "at": 20}, {"object": "b", "in_s": 0}]"#,
            10.0,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[1].at_s, 10.0);
    }

    #[test]
    fn who_a_hint_is_for() {
        let mut h = parse_json(br#"{"object": "a", "in_s": 5}"#, 0.0)
            .unwrap()
            .remove(0);
        assert!(h.applies_to("edge-1", None));
        h.region = Some("eu".into());
        assert!(h.applies_to("edge-1", Some("eu")));
        assert!(!h.applies_to("edge-1", Some("us")));
        assert!(!h.applies_to("edge-1", None));
        h.edges = vec![
            "edge-2".into(),
            "segue://edge-3:8555".into(),
            "segue://[::1]:9".into(),
        ];
        assert!(!h.applies_to("edge-1", Some("eu")));
        assert!(h.applies_to("edge-2", None));
        assert!(h.applies_to("edge-3", None));
        assert!(h.applies_to("::1", None));
    }

    #[test]
    fn positioning_starts_lead_before_and_never_in_the_past() {
        assert_eq!(start_s(1000.0, 120.0, 0.0), 880.0);
        // Too late for the whole lead: at once.
        assert_eq!(start_s(1000.0, 120.0, 950.0), 950.0);
        // A hint for the past: at once too (the object may still be wanted).
        assert_eq!(start_s(1000.0, 120.0, 2000.0), 1000.0);
    }
}
