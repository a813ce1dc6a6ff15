//! Helpers: edges that cooperate (docs/HELPERS.md). A helper serves players and other
//! helpers with the segment protocol, advertises what it holds to its peers by scope,
//! fetches each segment from whichever source delivers it in time (helpers first, the origin
//! last), and shares the storage of objects with the helpers of its collective scope.
//!
//! - `scope`: how far a peer is (configured, or from RTT and advert staleness) and the
//!   advert period per scope.
//! - `view`: who holds what, as of when (adverts received), with expiry.
//! - `advertise`: the periodic sender, snapshots and deltas per peer.
//! - `choose`: the source of one segment (pure).
//! - `failover`: asking one source after another until one delivers.
//! - `collective`: rendezvous hashing of segments over the helpers of a scope.

pub mod advertise;
pub mod choose;
pub mod collective;
pub mod failover;
pub mod scope;
pub mod view;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use segue_wire::ObjectName;
use segue_wire::advert::Advert;
use segue_wire::segment::{Status, helper_id};
use tokio::time::Instant;

use crate::node::source::SourceError;
use crate::node::upstream::Upstream;
use choose::{Candidate, Estimate, Role, SourceId};
use scope::{Periods, RttLimits, Scope};
use view::{Applied, View};

/// One configured peer: `NAME=URL[,SCOPE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConf {
    pub name: String,
    pub url: segue_wire::SegueUrl,
    /// Configured scope; `None`: derived (`scope::Scope::derive`).
    pub scope: Option<Scope>,
}

impl std::str::FromStr for PeerConf {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("peer {s:?}: expected NAME=URL[,SCOPE]"))?;
        let (url, scope) = match rest.rsplit_once(',') {
            Some((u, sc)) => (u, Some(Scope::parse(sc.trim())?)),
            None => (rest, None),
        };
        check_name(name).map_err(|e| e.to_string())?;
        let url =
            segue_wire::SegueUrl::parse(url.trim()).map_err(|e| format!("peer {name}: {e}"))?;
        Ok(PeerConf {
            name: name.to_owned(),
            url,
            scope,
        })
    }
}

/// A helper name that is not one ([`check_name`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("helper name {0:?}: 1 to 64 letters, digits, '-', '_' or '.'")]
pub struct BadName(pub String);

/// A helper name: 1 to 64 bytes of letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<(), BadName> {
    if name.is_empty()
        || name.len() > segue_wire::advert::MAX_SENDER as usize
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(BadName(name.to_owned()));
    }
    Ok(())
}

/// How a helper cooperates.
#[derive(Debug, Clone)]
pub struct HelperOptions {
    /// This helper's name (what peers call it in their configuration).
    pub name: String,
    pub peers: Vec<PeerConf>,
    pub periods: Periods,
    /// Round trips that separate the scopes of peers whose scope is derived.
    pub rtt_limits: RttLimits,
    /// Segments are spread over the helpers of this scope and nearer (collective storage).
    pub collective: Scope,
    /// Requests (decayed) above which an object's prefix is kept at every helper that sees
    /// them; below, only its owners keep it.
    pub popular_requests: f64,
}

impl HelperOptions {
    pub fn new(name: &str, peers: Vec<PeerConf>) -> Self {
        Self {
            name: name.to_owned(),
            peers,
            periods: Periods::default(),
            rtt_limits: RttLimits::default(),
            collective: Scope::Local,
            popular_requests: 1.0,
        }
    }
}

/// Counters of one peer.
#[derive(Debug, Default)]
pub struct PeerStats {
    pub segments_from: AtomicU64,
    pub bytes_from: AtomicU64,
    pub failures: AtomicU64,
    pub adverts_sent: AtomicU64,
    pub advert_bytes: AtomicU64,
    pub snapshots_sent: AtomicU64,
}

/// A peer at run time.
pub struct Peer {
    pub conf: PeerConf,
    pub id: u64,
    pub link: Upstream,
    pub stats: PeerStats,
}

/// Counters of the helper network, per scope: advert bytes sent and received.
#[derive(Debug, Default)]
pub struct HelperStats {
    pub advert_bytes_sent: [AtomicU64; 4],
    pub adverts_received: AtomicU64,
    pub adverts_refused: AtomicU64,
    /// Segment requests from helpers answered BUSY because they would loop.
    pub loops_refused: AtomicU64,
}

/// A point-in-time copy of a helper's counters (the edge's `--stats` file, the lab).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HelperSnapshot {
    /// Advert bytes sent, per scope: local, regional, national, global.
    pub advert_bytes_sent: [u64; 4],
    pub adverts_received: u64,
    pub adverts_refused: u64,
    pub peers: Vec<PeerSnapshot>,
}

/// One peer's counters, as seen by this helper.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PeerSnapshot {
    pub name: String,
    pub segments_from: u64,
    pub bytes_from: u64,
    /// Fetches from this peer that failed (and went on to the next source).
    pub failures: u64,
}

/// A helper's cooperation state. Shared by the edge (fetches, adverts received) and the
/// advertiser task.
pub struct Helpers {
    pub opts: HelperOptions,
    pub id: u64,
    /// Our versions start again when this changes (the process's start, unix ms).
    pub epoch: u64,
    pub peers: Vec<Peer>,
    pub view: Mutex<View>,
    pub stats: HelperStats,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Helpers {
    pub fn snapshot(&self) -> HelperSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HelperSnapshot {
            advert_bytes_sent: self.stats.advert_bytes_sent.each_ref().map(get),
            adverts_received: get(&self.stats.adverts_received),
            adverts_refused: get(&self.stats.adverts_refused),
            peers: self
                .peers
                .iter()
                .map(|p| PeerSnapshot {
                    name: p.conf.name.clone(),
                    segments_from: get(&p.stats.segments_from),
                    bytes_from: get(&p.stats.bytes_from),
                    failures: get(&p.stats.failures),
                })
                .collect(),
        }
    }

    pub fn new(opts: HelperOptions, endpoint: &segue_net::Dialer, timeout: Duration) -> Self {
        let peers = opts
            .peers
            .iter()
            .map(|c| Peer {
                id: helper_id(&c.name),
                link: Upstream::new(endpoint.clone(), c.url.clone(), timeout).labelled("helper"),
                conf: c.clone(),
                stats: PeerStats::default(),
            })
            .collect();
        Self {
            id: helper_id(&opts.name),
            epoch: (crate::clock::unix_now() * 1000.0) as u64,
            peers,
            view: Mutex::default(),
            stats: HelperStats::default(),
            opts,
        }
    }

    /// The scope of peer `p` now: configured, or derived from its measured round trip and
    /// how often it advertises.
    pub fn scope_of(&self, p: usize) -> Scope {
        self.scope_of_with(p, &lock(&self.view))
    }

    fn estimate(link: &Upstream, parallel: usize) -> Estimate {
        Estimate {
            rtt: link.rtt().unwrap_or(Duration::from_millis(50)),
            throughput: link.stats.throughput(parallel) as f64,
            queued: link.stats.queued.load(Ordering::Relaxed),
        }
    }

    /// Helpers of the collective (this one and the peers of the collective scope whose word
    /// has not expired): together they hold the whole object.
    fn members(&self, now: Instant) -> Vec<&str> {
        let view = lock(&self.view);
        let mut v: Vec<&str> = vec![self.opts.name.as_str()];
        for (p, peer) in self.peers.iter().enumerate() {
            if self.scope_of_with(p, &view) <= self.opts.collective
                && view.alive(&peer.conf.name, now)
            {
                v.push(peer.conf.name.as_str());
            }
        }
        v
    }

    fn scope_of_with(&self, p: usize, view: &View) -> Scope {
        let peer = &self.peers[p];
        peer.conf.scope.unwrap_or_else(|| {
            Scope::derive(
                peer.link.rtt(),
                view.lateness(&peer.conf.name),
                &self.opts.periods,
                &self.opts.rtt_limits,
            )
        })
    }

    /// The owner of segment `i` of `object` in our collective.
    pub fn owner(&self, object: &ObjectName, i: usize) -> String {
        let members = self.members(Instant::now());
        collective::owner(object.as_str(), i as u64, members.iter().copied())
            .unwrap_or(&self.opts.name)
            .to_owned()
    }

    /// Whether this helper keeps segment `i` of `object` on disk: it owns it, or it lies in
    /// the prefix (`in_prefix`) of an object requested here at least `popular_requests` times.
    pub fn keeps(&self, object: &ObjectName, i: usize, in_prefix: bool, requests: f64) -> bool {
        (in_prefix && requests >= self.opts.popular_requests)
            || self.owner(object, i) == self.opts.name
    }

    /// The source for segment `i` (of `size` bytes, due in `time_left`), skipping the peers
    /// in `tried` and those whose id is `exclude` (the helper whose request we serve);
    /// `origin`: the origin link, `None` once it failed. `forward`: whether peers that do
    /// not hold it may be asked (hops left).
    #[allow(clippy::too_many_arguments)]
    pub fn choose(
        &self,
        m: &segue_wire::segment::Manifest,
        i: usize,
        time_left: Duration,
        tried: &[usize],
        exclude: Option<u64>,
        origin: Option<&Upstream>,
        parallel: usize,
        forward: bool,
    ) -> Option<SourceId> {
        let now = Instant::now();
        let size = m.segments.get(i).map_or(0, |s| s.size);
        let holders: Vec<String> = lock(&self.view)
            .holders(&m.object, m.revision, i as u64, now)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let owner = self.owner(&m.object, i);
        let mut cands = Vec::new();
        for (p, peer) in self.peers.iter().enumerate() {
            if tried.contains(&p) || Some(peer.id) == exclude {
                continue;
            }
            let role = if holders.contains(&peer.conf.name) {
                Role::Holder
            } else if forward && owner == peer.conf.name {
                Role::Owner
            } else {
                continue;
            };
            cands.push(Candidate {
                peer: p,
                role,
                est: Self::estimate(&peer.link, parallel),
            });
        }
        let origin_est = origin.map(|o| Self::estimate(o, parallel));
        choose::choose(size, time_left, &cands, origin_est.as_ref())
    }

    /// An advert arrived: applied to the view if it comes from a configured peer.
    pub fn received(&self, a: &Advert) -> Result<Status, SourceError> {
        if !self.peers.iter().any(|p| p.conf.name == a.sender) {
            self.stats.adverts_refused.fetch_add(1, Ordering::Relaxed);
            return Err(SourceError::Refused(format!(
                "{:?} is not a configured peer",
                a.sender
            )));
        }
        self.stats.adverts_received.fetch_add(1, Ordering::Relaxed);
        Ok(match lock(&self.view).apply(a, Instant::now()) {
            Applied::Applied | Applied::Old => Status::Ok,
            Applied::NeedSnapshot => Status::StaleRevision,
        })
    }

    /// A peer failed; `gone` (unreachable): what it said no longer counts.
    pub fn failed(&self, p: usize, gone: bool) {
        let peer = &self.peers[p];
        peer.stats.failures.fetch_add(1, Ordering::Relaxed);
        if gone {
            lock(&self.view).forget(&peer.conf.name);
        }
    }

    /// Drops what peers said that has expired.
    pub fn expire(&self) {
        let n = lock(&self.view).expire(Instant::now());
        if n > 0 {
            tracing::info!(peers = n, "peer adverts expired");
        }
    }

    /// Per-peer state for the admin API.
    pub fn report(&self) -> Vec<PeerReport> {
        let now = Instant::now();
        let held = lock(&self.view).report(now);
        self.peers
            .iter()
            .enumerate()
            .map(|(p, peer)| PeerReport {
                name: peer.conf.name.clone(),
                url: peer.conf.url.to_string(),
                scope: self.scope_of(p),
                scope_configured: peer.conf.scope.is_some(),
                rtt_ms: peer.link.rtt().map(|d| d.as_secs_f64() * 1000.0),
                segments_from: peer.stats.segments_from.load(Ordering::Relaxed),
                bytes_from: peer.stats.bytes_from.load(Ordering::Relaxed),
                failures: peer.stats.failures.load(Ordering::Relaxed),
                adverts_sent: peer.stats.adverts_sent.load(Ordering::Relaxed),
                advert_bytes_sent: peer.stats.advert_bytes.load(Ordering::Relaxed),
                holds: held.iter().find(|h| h.peer == peer.conf.name).cloned(),
            })
            .collect()
    }
}

/// One peer as `GET /peers` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerReport {
    pub name: String,
    pub url: String,
    pub scope: Scope,
    pub scope_configured: bool,
    pub rtt_ms: Option<f64>,
    pub segments_from: u64,
    pub bytes_from: u64,
    pub failures: u64,
    pub adverts_sent: u64,
    pub advert_bytes_sent: u64,
    /// What it holds, as of when (its last advert).
    pub holds: Option<view::PeerHoldings>,
}

/// The advertiser's view of a live helper: its peers' links, and what its store holds.
pub struct LiveSink<F> {
    pub helpers: Arc<Helpers>,
    pub holdings: F,
}

impl<F> advertise::AdvertSink for LiveSink<F>
where
    F: Fn() -> advertise::Holdings + Send + Sync + 'static,
{
    fn identity(&self) -> (String, u64) {
        (self.helpers.opts.name.clone(), self.helpers.epoch)
    }

    fn peers(&self) -> usize {
        self.helpers.peers.len()
    }

    fn period(&self, p: usize) -> Duration {
        self.helpers.opts.periods.of(self.helpers.scope_of(p))
    }

    fn holdings(&self) -> advertise::Holdings {
        (self.holdings)()
    }

    async fn send(&self, p: usize, a: Advert) -> Result<(Status, usize), SourceError> {
        let h = &self.helpers;
        let peer = &h.peers[p];
        let scope = h.scope_of(p);
        let (status, n) = peer.link.advert(&a).await?;
        peer.stats.adverts_sent.fetch_add(1, Ordering::Relaxed);
        peer.stats
            .advert_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        if a.is_snapshot() {
            peer.stats.snapshots_sent.fetch_add(1, Ordering::Relaxed);
        }
        h.stats.advert_bytes_sent[scope as usize].fetch_add(n as u64, Ordering::Relaxed);
        Ok((status, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse() {
        let p: PeerConf = "h-2=segue://10.0.0.2:4433/,local".parse().unwrap();
        assert_eq!(p.name, "h-2");
        assert_eq!(p.scope, Some(Scope::Local));
        assert_eq!(p.url.port, 4433);
        let q: PeerConf = "h3=segue://example.net/".parse().unwrap();
        assert_eq!(q.scope, None);
        assert!("nourl".parse::<PeerConf>().is_err());
        assert!("h=segue://x/,far".parse::<PeerConf>().is_err());
        assert!("bad name=segue://x/".parse::<PeerConf>().is_err());
    }
}
