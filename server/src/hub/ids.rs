//! Message ids: unique and increasing per topic, never reused — also across crashes.
//!
//! A client drops a line whose id it has already seen (it may be given a line twice: live, and
//! again from its mailbox at the next login). So an id given out once must never name another
//! line, even if the server was killed before the store committed the line that carried it —
//! the recipient may have seen it live by then. [`ReservedIds`] therefore gives out only ids
//! the store has durably *reserved* (the "hi/lo" scheme): it asks the store to record a
//! reservation [`BLOCK`] ids ahead, long before it needs it, and a restart continues after
//! the highest reservation recorded ([`Loaded::last_id`](crate::store::Loaded)). A restart
//! after a crash therefore skips at most one block of ids; ids are increasing, not dense.

use std::fmt;
use std::sync::Arc;

use crate::store::{Reply, Store};

use super::topic::Topic;

/// How far ahead ids are reserved: at most this many are skipped at a restart, and the store
/// has half a block's worth of messages (32,768) to commit the next reservation before the
/// hub would have to refuse messages as busy.
pub const BLOCK: u64 = 1 << 16;

/// Gives out message ids. Called under the hub's lock, so it must not block.
pub(crate) trait IdSource: Send + fmt::Debug {
    /// The id of the next message on `topic`: greater than every id given out for it before,
    /// by this process or an earlier one. `None` when none may be given out right now (the
    /// store has not recorded a reservation yet): refuse the message as busy.
    fn next(&mut self, topic: &Topic) -> Option<u64>;

    /// The highest id given out so far (0 if none).
    fn last(&self) -> u64;
}

/// The local id source: one counter for every topic (ids increasing overall are increasing
/// per topic), over reservations recorded in the store. A cluster will need per-room
/// sequences from a shared service behind the same trait.
pub(crate) struct ReservedIds {
    /// The next id to give out.
    next: u64,
    /// Ids up to here are reserved durably.
    reserved: u64,
    /// A reservation submitted to the store and not answered yet: its end, and the answer.
    pending: Option<(u64, Reply<()>)>,
    store: Arc<dyn Store>,
}

impl fmt::Debug for ReservedIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReservedIds")
            .field("next", &self.next)
            .field("reserved", &self.reserved)
            .field("pending", &self.pending.as_ref().map(|(up_to, _)| up_to))
            .finish_non_exhaustive()
    }
}

impl ReservedIds {
    /// Ids after `last_id` (the highest id the store says was ever given out or reserved),
    /// reserved through `store`. The first reservation is submitted at once: the store
    /// applies it before any login submitted later, so it is answered before any session can
    /// send a message.
    pub fn new(store: Arc<dyn Store>, last_id: u64) -> ReservedIds {
        let mut ids = ReservedIds {
            next: last_id.saturating_add(1),
            reserved: last_id,
            pending: None,
            store,
        };
        ids.reserve_ahead();
        ids
    }

    /// Takes the store's answer to the pending reservation, if it came, and submits the next
    /// one once fewer than half a block of reserved ids remain.
    fn reserve_ahead(&mut self) {
        self.take_answer();
        if self.pending.is_none() && self.reserved.saturating_sub(self.next) < BLOCK / 2 {
            let up_to = self.next.saturating_add(BLOCK);
            match self.store.reserve_ids(up_to) {
                Ok(reply) => self.pending = Some((up_to, reply)),
                Err(e) => tracing::debug!(error = %e, "message id reservation postponed"),
            }
            // A store that answers at once (in memory) has answered already.
            self.take_answer();
        }
    }

    /// Takes the answer to the pending reservation, if it came.
    fn take_answer(&mut self) {
        let Some((up_to, reply)) = &mut self.pending else {
            return;
        };
        match reply.try_recv() {
            Ok(Ok(())) => self.reserved = self.reserved.max(*up_to),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => return,
            // Refused or lost (the store is failing or closing): asked again at the next id.
            Ok(Err(e)) => tracing::warn!(error = %e, "message ids not reserved; retrying"),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {}
        }
        self.pending = None;
    }
}

impl IdSource for ReservedIds {
    fn next(&mut self, _topic: &Topic) -> Option<u64> {
        self.reserve_ahead();
        if self.next > self.reserved {
            return None;
        }
        let id = self.next;
        self.next = self.next.saturating_add(1);
        Some(id)
    }

    fn last(&self) -> u64 {
        self.next.saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::topic::RoomId;
    use super::*;
    use crate::clock::SystemClock;
    use crate::store::sqlite::SqliteStore;
    use crate::store::Options;

    const LOBBY: Topic = Topic::Room(RoomId::LOBBY);

    /// The next id, waiting (up to 10 s) for the store to record a reservation.
    fn next_id(ids: &mut ReservedIds) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(id) = ids.next(&LOBBY) {
                return id;
            }
            assert!(std::time::Instant::now() < deadline, "no reservation");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn ids_increase_and_a_restart_after_a_crash_never_gives_one_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut given: Vec<u64> = Vec::new();
        for _run in 0..3 {
            let (store, loaded) = SqliteStore::open(
                &path,
                Options::from_limits(&crate::config::Limits::default()),
                Arc::new(SystemClock),
            )
            .unwrap();
            let store: Arc<dyn Store> = Arc::new(store);
            let mut ids = ReservedIds::new(Arc::clone(&store), loaded.last_id);
            // More than a block per run, so that reservations follow one another. The lines
            // that carried these ids were never stored (the process died first), and the
            // store is closed without the last id given out, as after kill -9: only the
            // reservations tell the next run where to start.
            for _ in 0..(BLOCK + BLOCK / 2) {
                given.push(next_id(&mut ids));
            }
            store.close(0).unwrap().blocking_recv().unwrap().unwrap();
        }
        assert!(
            given.windows(2).all(|w| w[0] < w[1]),
            "ids must increase, also across restarts"
        );
        assert_eq!(given[0], 1, "a new store starts at 1");
    }

    #[test]
    fn without_a_recorded_reservation_no_id_is_given_out() {
        let store = Arc::new(crate::store::memory::FaultyStore::default());
        store
            .reserve_fails
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut ids = ReservedIds::new(store.clone(), 41);
        assert_eq!(ids.next(&LOBBY), None, "refused as busy, never unreserved");
        store
            .reserve_fails
            .store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(ids.next(&LOBBY), Some(42), "asked again, then given out");
        assert_eq!(ids.last(), 42);
    }
}
