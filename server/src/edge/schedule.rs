//! Admission of origin fetches, earliest deadline first.
//!
//! Every fetch the edge makes carries a *deadline*: when the segment is due at a player. A
//! session blocked on a segment (the first segment of a miss, or one the prefetcher has not
//! landed yet) needs it *now*; a segment fetched ahead is due at its media time; pre-positioning
//! has no deadline to speak of. The scheduler lets `slots` fetches run at once and hands a
//! freed slot to the waiting fetch with the earliest deadline, so a new session's first segment
//! never queues behind other objects' read-ahead.
//!
//! On top of that, up to `reserve` more fetches may run when their deadline has already
//! passed: a session that is waiting does not wait for a read-ahead fetch to finish. A
//! waiting fetch whose deadline moves earlier ([`Scheduler::promote`]) moves up the queue
//! (and into the reserve when it is now due).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::time::Instant;

/// A running fetch's place; the slot frees when this drops.
#[derive(Debug)]
pub struct Slot {
    sched: Option<Arc<Scheduler>>,
    reserve: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(s) = self.sched.take() {
            s.release(self.reserve);
        }
    }
}

/// A fetch waiting for (or holding) a slot.
#[derive(Debug)]
pub struct Ticket {
    pub id: u64,
    state: TicketState,
}

#[derive(Debug)]
enum TicketState {
    Granted(Slot),
    Waiting(oneshot::Receiver<Slot>),
    Taken,
}

impl Ticket {
    /// Waits for the slot. `None` if the scheduler was dropped.
    pub async fn slot(mut self) -> Option<Slot> {
        match std::mem::replace(&mut self.state, TicketState::Taken) {
            TicketState::Granted(s) => Some(s),
            TicketState::Waiting(rx) => rx.await.ok(),
            TicketState::Taken => None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    reserve_free: usize,
    next_id: u64,
    /// Waiting fetches by (deadline, id).
    queue: BTreeSet<(Instant, u64)>,
    waiting: HashMap<u64, (Instant, oneshot::Sender<Slot>)>,
}

/// Counts of a scheduler, for tests and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub running: usize,
    pub running_reserve: usize,
    pub waiting: usize,
}

/// The admission queue. Shared as `Arc<Scheduler>`.
#[derive(Debug)]
pub struct Scheduler {
    slots: usize,
    reserve: usize,
    state: Mutex<State>,
}

impl Scheduler {
    pub fn new(slots: usize, reserve: usize) -> Arc<Self> {
        let slots = slots.max(1);
        Arc::new(Self {
            slots,
            reserve,
            state: Mutex::new(State {
                free: slots,
                reserve_free: reserve,
                ..State::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn load(&self) -> Load {
        let st = self.lock();
        Load {
            running: self.slots - st.free,
            running_reserve: self.reserve - st.reserve_free,
            waiting: st.waiting.len(),
        }
    }

    /// Asks for a slot for a fetch due at `deadline`. Granted at once when one is free.
    pub fn enqueue(self: &Arc<Self>, deadline: Instant) -> Ticket {
        let now = Instant::now();
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        let ahead = st.queue.first().is_some_and(|&(d, _)| d <= deadline);
        let grant = if st.free > 0 && !ahead {
            st.free -= 1;
            Some(false)
        } else if deadline <= now && st.reserve_free > 0 {
            st.reserve_free -= 1;
            Some(true)
        } else {
            None
        };
        let state = match grant {
            Some(reserve) => TicketState::Granted(self.slot(reserve)),
            None => {
                let (tx, rx) = oneshot::channel();
                st.queue.insert((deadline, id));
                st.waiting.insert(id, (deadline, tx));
                TicketState::Waiting(rx)
            }
        };
        Ticket { id, state }
    }

    /// Moves waiting fetch `id` to `deadline` if that is earlier. No effect once it runs.
    pub fn promote(self: &Arc<Self>, id: u64, deadline: Instant) {
        let mut st = self.lock();
        let Some((old, _)) = st.waiting.get(&id) else {
            return;
        };
        let old = *old;
        if deadline >= old {
            return;
        }
        st.queue.remove(&(old, id));
        if deadline <= Instant::now() && st.reserve_free > 0 {
            st.reserve_free -= 1;
            if let Some((_, tx)) = st.waiting.remove(&id) {
                drop(st);
                self.hand(tx, true);
            }
            return;
        }
        st.queue.insert((deadline, id));
        if let Some(w) = st.waiting.get_mut(&id) {
            w.0 = deadline;
        }
    }

    fn slot(self: &Arc<Self>, reserve: bool) -> Slot {
        Slot {
            sched: Some(self.clone()),
            reserve,
        }
    }

    /// Gives a slot of the given kind to `tx`; if its waiter is gone, passes it on.
    fn hand(self: &Arc<Self>, tx: oneshot::Sender<Slot>, reserve: bool) {
        if let Err(mut slot) = tx.send(self.slot(reserve)) {
            // The waiter gave up: no recursion through Drop, pass the slot on here.
            slot.sched = None;
            self.release(reserve);
        }
    }

    fn release(self: &Arc<Self>, reserve: bool) {
        let now = Instant::now();
        let mut st = self.lock();
        let next = match st.queue.first().copied() {
            // A reserve slot only goes to a fetch that is already due.
            Some((d, id)) if !reserve || d <= now => {
                st.queue.remove(&(d, id));
                st.waiting.remove(&id).map(|(_, tx)| tx)
            }
            _ => None,
        };
        match next {
            Some(tx) => {
                drop(st);
                self.hand(tx, reserve);
            }
            None if reserve => st.reserve_free += 1,
            None => st.free += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    async fn granted(t: Ticket) -> Option<Slot> {
        tokio::time::timeout(Duration::from_millis(1), t.slot())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn grants_up_to_slots_then_queues() {
        let s = Scheduler::new(2, 0);
        let a = granted(s.enqueue(at(1000))).await.expect("first slot");
        let _b = granted(s.enqueue(at(1000))).await.expect("second slot");
        let c = s.enqueue(at(1000));
        assert_eq!(
            s.load(),
            Load {
                running: 2,
                running_reserve: 0,
                waiting: 1
            }
        );
        drop(a);
        assert!(
            granted(c).await.is_some(),
            "a freed slot goes to the waiter"
        );
        assert_eq!(s.load().waiting, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn earliest_deadline_first() {
        let s = Scheduler::new(1, 0);
        let running = granted(s.enqueue(at(0))).await.expect("slot");
        let late = s.enqueue(at(5000));
        let early = s.enqueue(at(100));
        let mid = s.enqueue(at(1000));
        drop(running);
        let e = granted(early).await.expect("earliest deadline runs next");
        assert_eq!(s.load().waiting, 2);
        drop(e);
        let m = granted(mid).await.expect("then the middle one");
        drop(m);
        assert!(granted(late).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn promotion_moves_a_waiter_up() {
        let s = Scheduler::new(1, 0);
        let running = granted(s.enqueue(at(0))).await.expect("slot");
        let a = s.enqueue(at(200));
        let b = s.enqueue(at(3000));
        s.promote(b.id, at(50));
        s.promote(a.id, at(9000)); // later: ignored
        drop(running);
        let gb = granted(b).await.expect("promoted waiter runs first");
        drop(gb);
        assert!(granted(a).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_serves_only_due_fetches() {
        let s = Scheduler::new(1, 1);
        let _ahead = granted(s.enqueue(at(10_000))).await.expect("slot");
        // A read-ahead fetch waits: the reserve is not for it.
        let ahead2 = s.enqueue(at(20_000));
        assert_eq!(s.load().running_reserve, 0);
        // A due fetch (a session is blocked on it) runs at once from the reserve.
        let due = granted(s.enqueue(Instant::now()))
            .await
            .expect("reserve slot");
        assert_eq!(s.load().running_reserve, 1);
        // Promotion to "now" also uses the reserve once it frees.
        let due2 = s.enqueue(Instant::now());
        drop(due);
        let d2 = granted(due2)
            .await
            .expect("reserve slot passed on to a due fetch");
        drop(d2);
        // The reserve slot is not handed to the read-ahead fetch.
        assert_eq!(
            s.load(),
            Load {
                running: 1,
                running_reserve: 0,
                waiting: 1
            }
        );
        s.promote(ahead2.id, Instant::now());
        assert!(granted(ahead2).await.is_some(), "promoted to due: reserve");
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_waiters_do_not_leak_slots() {
        let s = Scheduler::new(1, 0);
        let running = granted(s.enqueue(at(0))).await.expect("slot");
        let gone = s.enqueue(at(10));
        drop(gone);
        let next = s.enqueue(at(20));
        drop(running);
        assert!(
            granted(next).await.is_some(),
            "slot skipped the abandoned waiter"
        );
        assert_eq!(s.load().running, 0);
        assert!(granted(s.enqueue(at(0))).await.is_some());
    }
}
