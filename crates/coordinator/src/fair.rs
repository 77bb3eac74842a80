//! Slots shared fairly between callers: a counting semaphore whose freed slots go to the waiting
//! caller that holds the fewest, and which can keep one slot for callers that hold none.
//!
//! A plain semaphore grants in arrival order, so one caller that keeps more requests waiting than
//! there are slots, each holding its slot as long as it can (a controller that sleeps until its
//! deadline), takes every slot that frees and keeps everyone else waiting. Here a freed slot goes
//! to the waiting caller holding the fewest slots (the longest-waiting among equals), and with
//! [`FairSlots::reserving`] no caller may take the last free slot while it holds another: one
//! caller alone never holds them all, so a caller holding none finds one at once unless other
//! callers hold the rest. Callers are told apart by a key (an identity, a client address); many
//! keys get many slots.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// A limit on work of one kind running at once, shared fairly between callers.
#[derive(Debug, Clone)]
pub struct FairSlots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// keep the last free slot for callers holding none
    reserve: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    held: HashMap<String, usize>,
    /// in arrival order
    waiting: VecDeque<Waiter>,
    next_id: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    key: String,
    grant: oneshot::Sender<()>,
}

/// A slot of a [`FairSlots`], given back when dropped.
#[derive(Debug)]
pub struct FairPermit {
    inner: Arc<Inner>,
    key: String,
}

impl FairSlots {
    /// `slots` slots (at least one), granted fairly, with no slot kept back.
    pub fn new(slots: usize) -> Self {
        Self::build(slots, false)
    }

    /// `slots` slots (at least one), granted fairly, where a caller holding a slot never takes
    /// the last free one: with two slots or more, one caller holds at most `slots - 1`.
    pub fn reserving(slots: usize) -> Self {
        Self::build(slots, true)
    }

    fn build(slots: usize, reserve: bool) -> Self {
        let slots = slots.max(1);
        FairSlots {
            inner: Arc::new(Inner {
                reserve: reserve && slots >= 2,
                state: Mutex::new(State { free: slots, ..State::default() }),
            }),
        }
    }

    /// Waits for a slot for the caller `key`. Cancel-safe: a wait dropped before or after its
    /// slot was granted leaves no slot taken.
    pub async fn acquire(&self, key: &str) -> FairPermit {
        let (id, rx) = {
            let mut state = self.inner.lock();
            let id = state.next_id;
            state.next_id += 1;
            let (tx, rx) = oneshot::channel();
            state.waiting.push_back(Waiter { id, key: key.to_owned(), grant: tx });
            self.inner.dispatch(&mut state);
            (id, rx)
        };
        let mut wait = Wait { inner: &self.inner, id, key, rx, done: false };
        // The sender lives in the queue until the grant is sent, so this only ends by a grant.
        let _ = (&mut wait.rx).await;
        wait.done = true;
        FairPermit { inner: self.inner.clone(), key: key.to_owned() }
    }

    /// Slots the caller `key` holds now.
    pub fn held_by(&self, key: &str) -> usize {
        self.inner.lock().held.get(key).copied().unwrap_or(0)
    }
}

/// A wait in progress; dropped unfinished, it leaves the queue or gives back what it was granted.
struct Wait<'a> {
    inner: &'a Inner,
    id: u64,
    key: &'a str,
    rx: oneshot::Receiver<()>,
    done: bool,
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.inner.lock();
        if let Some(at) = state.waiting.iter().position(|w| w.id == self.id) {
            state.waiting.remove(at);
        } else if self.rx.try_recv().is_ok() {
            // Granted (grants are sent under the lock, so it is in the channel) but not taken.
            self.inner.give_back(&mut state, self.key);
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement that can panic (none do), so a poisoned
        // lock is still good.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn give_back(&self, state: &mut State, key: &str) {
        state.free += 1;
        if let Some(n) = state.held.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                state.held.remove(key);
            }
        }
        self.dispatch(state);
    }

    /// Grants free slots to waiters: each time to the waiter whose caller holds the fewest
    /// (the first to arrive among equals) and may take one.
    fn dispatch(&self, state: &mut State) {
        while state.free > 0 {
            let free = state.free;
            let held = |key: &str| state.held.get(key).copied().unwrap_or(0);
            let best = state
                .waiting
                .iter()
                .enumerate()
                .filter(|(_, w)| !self.reserve || free >= 2 || held(&w.key) == 0)
                .min_by_key(|(at, w)| (held(&w.key), *at))
                .map(|(at, _)| at);
            let Some(at) = best else { return };
            let Some(waiter) = state.waiting.remove(at) else { return };
            if waiter.grant.send(()).is_ok() {
                state.free -= 1;
                *state.held.entry(waiter.key).or_insert(0) += 1;
            }
        }
    }
}

impl Drop for FairPermit {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        self.inner.give_back(&mut state, &self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Whether `acquire` is still waiting after a moment.
    async fn waits(slots: &FairSlots, key: &str) -> bool {
        tokio::time::timeout(Duration::from_millis(50), slots.acquire(key)).await.is_err()
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_waiting_caller_that_holds_fewest() {
        let slots = FairSlots::new(2);
        let a1 = slots.acquire("a").await;
        let _a2 = slots.acquire("a").await;
        // a waits first, then b: the slot a frees goes to b, who holds none.
        let a3 = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("a").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b1 = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("b").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a1);
        let b1 = tokio::time::timeout(Duration::from_secs(5), b1).await.expect("b served").expect("task");
        assert_eq!((slots.held_by("a"), slots.held_by("b")), (1, 1));
        assert!(!a3.is_finished(), "a was served before b");
        drop(b1);
        let _a3 = tokio::time::timeout(Duration::from_secs(5), a3).await.expect("a served").expect("task");
        assert_eq!(slots.held_by("a"), 2);
    }

    #[tokio::test]
    async fn one_caller_never_holds_the_last_slot_of_a_reserving_pool() {
        let slots = FairSlots::reserving(3);
        let _a1 = slots.acquire("a").await;
        let _a2 = slots.acquire("a").await;
        assert!(waits(&slots, "a").await, "a took the last slot");
        let b = tokio::time::timeout(Duration::from_millis(50), slots.acquire("b")).await.expect("b at once");
        assert_eq!(slots.held_by("b"), 1);
        drop(b);
        // A pool of one slot keeps nothing back.
        let one = FairSlots::reserving(1);
        let _only = one.acquire("a").await;
        assert!(waits(&one, "b").await);
    }

    #[tokio::test]
    async fn a_wait_given_up_takes_no_slot() {
        let slots = FairSlots::new(1);
        let a = slots.acquire("a").await;
        for _ in 0..3 {
            assert!(waits(&slots, "b").await);
        }
        // Granted and dropped before it was polled again: the slot comes back.
        let mut late = Box::pin(slots.acquire("c"));
        assert!(poll_once(late.as_mut()).await.is_none());
        drop(a);
        assert_eq!(slots.held_by("c"), 1, "granted to c on release");
        drop(late);
        assert_eq!(slots.held_by("c"), 0);
        let _b =
            tokio::time::timeout(Duration::from_millis(50), slots.acquire("b")).await.expect("free again");
    }

    /// Polls a future once.
    async fn poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await
    }
}
