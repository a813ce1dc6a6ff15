//! One connection's RTSP session state, sans IO: which sessions exist, which flow ids their
//! tracks are bound to, which `Pipelined-Requests` id stands for which session (or for the
//! failure later requests inherit), and which sessions have timed out. The control handler
//! ([`super::Sessions`]) does the IO around it: manifests, senders, responses.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use segue_wire::control::{Request, status};
use segue_wire::{ObjectName, Resource};

/// Why a request is refused: its status and the reason given in `Segue-Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

/// Failed `Pipelined-Requests` ids a connection's table remembers (PROTOCOL.md §5.4): a
/// pipeline's later requests follow its SETUP within a flight, so the oldest failures are
/// forgotten first, and a stranger's stream of failing SETUPs with fresh ids holds no more.
pub const MAX_PIPELINED_FAILURES: usize = 64;

/// A session of the table, with what the handler keeps for it (`data`).
#[derive(Debug)]
pub struct Entry<T> {
    pub object: ObjectName,
    /// The flow id each track is bound to, by track index.
    pub flows: Vec<Option<u64>>,
    /// Last request that named this session.
    pub last_request: Instant,
    pub data: T,
}

/// The sessions of one connection.
#[derive(Debug)]
pub struct SessionTable<T> {
    sessions: HashMap<String, Entry<T>>,
    /// Pipelined-Requests id → session id, or the failure later requests inherit.
    pipelined: HashMap<u32, Result<String, Refusal>>,
    /// The failed ids in `pipelined`, oldest first: at most [`MAX_PIPELINED_FAILURES`] are
    /// remembered (ids that name a session go with it).
    failures: VecDeque<u32>,
    flows_in_use: HashSet<u64>,
    max_sessions: usize,
}

impl<T> SessionTable<T> {
    /// A table holding at most `max_sessions` sessions.
    pub fn new(max_sessions: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            pipelined: HashMap::new(),
            failures: VecDeque::new(),
            flows_in_use: HashSet::new(),
            max_sessions,
        }
    }

    /// The session a request refers to, through `Session` or `Pipelined-Requests` (None: it
    /// names none).
    pub fn resolve(&self, req: &Request) -> Result<Option<String>, Refusal> {
        if let Some(s) = &req.headers.session {
            return if self.sessions.contains_key(&s.id) {
                Ok(Some(s.id.clone()))
            } else {
                Err(Refusal::new(
                    status::SESSION_NOT_FOUND,
                    format!("no session {}", s.id),
                ))
            };
        }
        match req
            .headers
            .pipelined_requests
            .and_then(|p| self.pipelined.get(&p))
        {
            Some(Ok(id)) => Ok(Some(id.clone())),
            Some(Err(r)) => Err(Refusal::new(
                r.status,
                format!("pipelined request failed: {}", r.reason),
            )),
            None => Ok(None),
        }
    }

    /// Any request naming a session keeps it alive.
    pub fn touch(&mut self, req: &Request, now: Instant) {
        if let Some(s) = req
            .headers
            .session
            .as_ref()
            .and_then(|s| self.sessions.get_mut(&s.id))
        {
            s.last_request = now;
        }
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether another session may be created.
    pub fn has_room(&self) -> Result<(), Refusal> {
        if self.sessions.len() >= self.max_sessions {
            return Err(Refusal::new(
                status::SERVICE_UNAVAILABLE,
                "session limit of this connection reached",
            ));
        }
        Ok(())
    }

    /// A new session `id` of `object`, with `tracks` tracks bound to no flow yet.
    pub fn insert(&mut self, id: String, object: ObjectName, tracks: usize, data: T, now: Instant) {
        let entry = Entry {
            object,
            flows: vec![None; tracks],
            last_request: now,
            data,
        };
        self.sessions.insert(id, entry);
    }

    /// Binds the tracks `resource` names (one track, or all of the object's) of session `id`
    /// to flow ids from `base` on. A flow id in use by any session of the connection is
    /// refused; a track bound before gives its old flow id back.
    pub fn bind(
        &mut self,
        id: &str,
        object: &ObjectName,
        resource: &Resource,
        base: u64,
    ) -> Result<(), Refusal> {
        let s = self
            .sessions
            .get_mut(id)
            .ok_or_else(|| Refusal::new(status::SESSION_NOT_FOUND, "session vanished"))?;
        if s.object != *object {
            return Err(Refusal::new(
                status::BAD_REQUEST,
                "session belongs to another object",
            ));
        }
        let tracks: Vec<usize> = match *resource {
            Resource::Track(_, n) if (n as usize) < s.flows.len() => vec![n as usize],
            Resource::Track(_, n) => {
                return Err(Refusal::new(status::NOT_FOUND, format!("no track {n}")));
            }
            _ => (0..s.flows.len()).collect(),
        };
        let wanted: Vec<u64> = (0..tracks.len() as u64)
            .map(|i| base.saturating_add(i))
            .collect();
        if let Some(f) = wanted.iter().find(|f| **f > segue_wire::varint::MAX) {
            return Err(Refusal::new(
                status::UNSUPPORTED_TRANSPORT,
                format!(
                    "flow id {f} out of range (at most {})",
                    segue_wire::varint::MAX
                ),
            ));
        }
        if let Some(f) = wanted.iter().find(|f| self.flows_in_use.contains(f)) {
            return Err(Refusal::new(
                status::UNSUPPORTED_TRANSPORT,
                format!("flow id {f} already in use"),
            ));
        }
        for (t, f) in tracks.into_iter().zip(wanted) {
            if let Some(old) = s.flows[t].replace(f) {
                self.flows_in_use.remove(&old);
            }
            self.flows_in_use.insert(f);
        }
        Ok(())
    }

    /// Records what a SETUP with `Pipelined-Requests: p` did: the session it set up, or the
    /// failure every later request of that id inherits (the first outcome stays).
    pub fn pipelined_setup(&mut self, p: u32, outcome: Result<&str, &Refusal>) {
        match outcome {
            Ok(id) => {
                self.pipelined.insert(p, Ok(id.to_string()));
            }
            Err(r) => {
                if self.pipelined.contains_key(&p) {
                    return;
                }
                if self.failures.len() >= MAX_PIPELINED_FAILURES
                    && let Some(old) = self.failures.pop_front()
                    && self.pipelined.get(&old).is_some_and(Result::is_err)
                {
                    self.pipelined.remove(&old);
                }
                self.pipelined.insert(p, Err(r.clone()));
                self.failures.push_back(p);
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&Entry<T>> {
        self.sessions.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Entry<T>> {
        self.sessions.get_mut(id)
    }

    /// Removes session `id`: its flow ids and pipelined ids are free again.
    pub fn remove(&mut self, id: &str) -> Option<Entry<T>> {
        let s = self.sessions.remove(id)?;
        for f in s.flows.iter().flatten() {
            self.flows_in_use.remove(f);
        }
        self.pipelined
            .retain(|_, v| v.as_ref().map_or(true, |s| s != id));
        Some(s)
    }

    /// Sessions that saw no request for `timeout` and are not `busy` (playing).
    pub fn stale(&self, now: Instant, timeout: Duration, busy: impl Fn(&T) -> bool) -> Vec<String> {
        self.sessions
            .iter()
            .filter(|(_, s)| {
                !busy(&s.data) && now.saturating_duration_since(s.last_request) > timeout
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every session's data (connection closing).
    pub fn data_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.sessions.values_mut().map(|s| &mut s.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segue_wire::control::{Method, SessionHeader};
    use segue_wire::{Limits, SegueUrl};

    fn name(s: &str) -> ObjectName {
        ObjectName::new(s, Limits::default().max_object_name).unwrap()
    }

    fn req(session: Option<&str>, pipelined: Option<u32>) -> Request {
        let url = SegueUrl::parse("segue://edge.test/clip").unwrap();
        let mut r = Request::new(Method::Play, Some(url), 1);
        r.headers.session = session.map(|id| SessionHeader {
            id: id.into(),
            timeout: None,
        });
        r.headers.pipelined_requests = pipelined;
        r
    }

    #[test]
    fn requests_find_their_session_by_id_or_pipelined_id() {
        let mut t = SessionTable::new(4);
        let now = Instant::now();
        t.insert("s1".into(), name("clip"), 2, (), now);
        t.pipelined_setup(7, Ok("s1"));
        assert_eq!(t.resolve(&req(Some("s1"), None)), Ok(Some("s1".into())));
        assert_eq!(t.resolve(&req(None, Some(7))), Ok(Some("s1".into())));
        assert_eq!(t.resolve(&req(None, Some(8))), Ok(None));
        assert_eq!(t.resolve(&req(None, None)), Ok(None));
        let e = t.resolve(&req(Some("nope"), Some(7))).unwrap_err();
        assert_eq!(e.status, status::SESSION_NOT_FOUND);
        // Gone with its session.
        assert!(t.remove("s1").is_some());
        assert_eq!(t.resolve(&req(None, Some(7))), Ok(None));
    }

    #[test]
    fn a_failed_pipelined_setup_fails_the_requests_after_it() {
        let mut t = SessionTable::<()>::new(4);
        let first = Refusal::new(status::NOT_FOUND, "no such object");
        t.pipelined_setup(3, Err(&first));
        // A second failure of the same id does not replace the first.
        t.pipelined_setup(3, Err(&Refusal::new(status::BAD_REQUEST, "later")));
        let e = t.resolve(&req(None, Some(3))).unwrap_err();
        assert_eq!(
            e,
            Refusal::new(
                status::NOT_FOUND,
                "pipelined request failed: no such object"
            )
        );
    }

    #[test]
    fn flow_ids_are_unique_per_connection_and_given_back() {
        let mut t = SessionTable::new(4);
        let now = Instant::now();
        let clip = name("clip");
        let object = Resource::Object(clip.clone());
        t.insert("a".into(), clip.clone(), 2, (), now);
        t.insert("b".into(), clip.clone(), 2, (), now);
        t.bind("a", &clip, &object, 0).unwrap();
        assert_eq!(t.get("a").unwrap().flows, [Some(0), Some(1)]);
        // b may not take flow 1.
        let e = t.bind("b", &clip, &object, 1).unwrap_err();
        assert_eq!(e.status, status::UNSUPPORTED_TRANSPORT);
        // Track 1 of a rebinds to 5: flow 1 is free for b.
        t.bind("a", &clip, &Resource::Track(clip.clone(), 1), 5)
            .unwrap();
        assert_eq!(t.get("a").unwrap().flows, [Some(0), Some(5)]);
        t.bind("b", &clip, &object, 1).unwrap();
        // Tearing a down frees 0 and 5.
        t.remove("a");
        t.bind("b", &clip, &Resource::Track(clip.clone(), 0), 5)
            .unwrap();
        // Wrong track, wrong object, a flow id beyond a varint.
        let e = t
            .bind("b", &clip, &Resource::Track(clip.clone(), 2), 9)
            .unwrap_err();
        assert_eq!(e.status, status::NOT_FOUND);
        let other = name("other");
        let e = t.bind("b", &other, &object, 9).unwrap_err();
        assert_eq!(e.status, status::BAD_REQUEST);
        let e = t
            .bind("b", &clip, &object, segue_wire::varint::MAX)
            .unwrap_err();
        assert_eq!(e.status, status::UNSUPPORTED_TRANSPORT);
        assert!(e.reason.contains("out of range"), "{}", e.reason);
        let e = t.bind("b", &clip, &object, 5).unwrap_err();
        assert_eq!(e.reason, "flow id 5 already in use");
    }

    #[test]
    fn failed_pipelined_ids_are_bounded() {
        let mut t = SessionTable::new(4);
        let now = Instant::now();
        t.insert("s1".into(), name("clip"), 1, (), now);
        t.pipelined_setup(0, Ok("s1"));
        let no = Refusal::new(status::NOT_FOUND, "no such object");
        // A million failing SETUPs with fresh ids: the table keeps the latest failures only.
        for p in 1..=1_000_000 {
            t.pipelined_setup(p, Err(&no));
        }
        assert_eq!(t.pipelined.len(), 1 + MAX_PIPELINED_FAILURES);
        assert_eq!(t.failures.len(), MAX_PIPELINED_FAILURES);
        // The session's id stays; the latest failure is still inherited, the oldest is not.
        assert_eq!(t.resolve(&req(None, Some(0))), Ok(Some("s1".into())));
        assert!(t.resolve(&req(None, Some(1_000_000))).is_err());
        assert_eq!(t.resolve(&req(None, Some(1))), Ok(None));
    }

    #[test]
    fn the_session_limit_and_timeouts() {
        let mut t = SessionTable::new(2);
        let t0 = Instant::now();
        t.insert("a".into(), name("clip"), 1, false, t0);
        assert!(t.has_room().is_ok());
        t.insert("b".into(), name("clip"), 1, true, t0);
        assert_eq!(
            t.has_room().unwrap_err().status,
            status::SERVICE_UNAVAILABLE
        );
        // After the timeout, the idle session is stale, the playing one is not; a request
        // naming a session keeps it alive.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(t.stale(later, Duration::from_secs(60), |p| *p), ["a"]);
        t.touch(&req(Some("a"), None), later);
        assert!(t.stale(later, Duration::from_secs(60), |p| *p).is_empty());
    }
}
