//! The bus: publish a message to a [`Topic`], and it reaches the outbox of every subscriber.
//!
//! The hub never walks its users to deliver: it publishes to a room's or a user's topic, and
//! the bus puts the message — encoded once, shared as [`Bytes`] — into each subscribed outbox.
//! [`LocalBus`] does that in this process; a bus between several nodes (NATS) will implement
//! the same trait, delivering to its local subscribers and forwarding to the other nodes.
//!
//! The hub calls the bus under its lock, so that every outbox sees messages in the one order
//! the hub accepted them; a bus must therefore never block or wait (it only does map work and
//! non-blocking queue pushes). A subscriber whose outbox is full is reported back, not waited
//! for: the hub then disconnects it as too slow.

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;

use super::outbox::{OutboxSender, QueueError};
use super::topic::Topic;

/// Outboxes whose queue was full when a publish reached them: each (connection id, nick key).
pub(crate) type TooSlow = Vec<(u64, std::sync::Arc<str>)>;

/// What became of one publish.
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// How many outboxes took the message.
    pub delivered: usize,
    /// The outboxes that were full (the hub disconnects them); empty in the common case, and
    /// then allocates nothing.
    pub too_slow: TooSlow,
}

/// Where the hub publishes. See the module documentation for the rules an implementation
/// keeps.
pub(crate) trait Bus: Send + fmt::Debug {
    /// Subscribes `outbox` to `topic`. A connection subscribes to a topic at most once.
    fn subscribe(&mut self, topic: Topic, outbox: OutboxSender);

    /// Unsubscribes connection `conn_id` from `topic`; whether it was subscribed. Once a
    /// connection is unsubscribed from every topic, its outbox closes (after what it holds).
    fn unsubscribe(&mut self, topic: &Topic, conn_id: u64) -> bool;

    /// Puts `msg` into the outbox of every subscriber of `topic` except connection `skip`.
    fn publish(&mut self, topic: &Topic, msg: &Bytes, skip: Option<u64>) -> Published;

    /// How many connections subscribe to `topic`.
    fn subscribers(&self, topic: &Topic) -> usize;

    /// Whether connection `conn_id` subscribes to `topic`.
    fn is_subscribed(&self, topic: &Topic, conn_id: u64) -> bool;
}

/// The in-process bus: topic → the outboxes subscribed to it.
///
/// A topic's subscribers are a `Vec` (iterated on every publish, the hot path); unsubscribing
/// finds the connection by a linear scan (about 10 µs in a room of 10,000) and swaps the last
/// one into its place, so fan-out order within a topic is not the order of subscription.
#[derive(Debug, Default)]
pub(crate) struct LocalBus {
    topics: HashMap<Topic, Vec<OutboxSender>>,
}

impl Bus for LocalBus {
    fn subscribe(&mut self, topic: Topic, outbox: OutboxSender) {
        self.topics.entry(topic).or_default().push(outbox);
    }

    fn unsubscribe(&mut self, topic: &Topic, conn_id: u64) -> bool {
        let Some(outboxes) = self.topics.get_mut(topic) else {
            return false;
        };
        let Some(at) = outboxes.iter().position(|o| o.conn_id == conn_id) else {
            return false;
        };
        outboxes.swap_remove(at);
        if outboxes.is_empty() {
            self.topics.remove(topic);
        }
        true
    }

    fn publish(&mut self, topic: &Topic, msg: &Bytes, skip: Option<u64>) -> Published {
        let mut published = Published::default();
        let Some(outboxes) = self.topics.get(topic) else {
            return published;
        };
        for outbox in outboxes {
            if Some(outbox.conn_id) == skip {
                continue;
            }
            match outbox.push(msg.clone()) {
                Ok(()) => published.delivered += 1,
                Err(QueueError::Full) => published
                    .too_slow
                    .push((outbox.conn_id, std::sync::Arc::clone(&outbox.key))),
                // The session is ending; the hub unsubscribes it when it leaves.
                Err(QueueError::Closed) => {}
            }
        }
        published
    }

    fn subscribers(&self, topic: &Topic) -> usize {
        self.topics.get(topic).map_or(0, Vec::len)
    }

    /// A linear scan of the topic's subscribers (asked only when a member joins a room it is
    /// already in, or a join completes after reading the room's history).
    fn is_subscribed(&self, topic: &Topic, conn_id: u64) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|v| v.iter().any(|o| o.conn_id == conn_id))
    }
}

/// One publish as a [`RecordingBus`] saw it: the topic, the message, the connection skipped.
#[cfg(test)]
pub(crate) type Publish = (Topic, Bytes, Option<u64>);

/// A bus for tests: a [`LocalBus`] that also records every publish, in order, where the test
/// can read it.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct RecordingBus {
    inner: LocalBus,
    /// Every publish so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<Publish>>>,
}

#[cfg(test)]
impl Bus for RecordingBus {
    fn subscribe(&mut self, topic: Topic, outbox: OutboxSender) {
        self.inner.subscribe(topic, outbox);
    }

    fn unsubscribe(&mut self, topic: &Topic, conn_id: u64) -> bool {
        self.inner.unsubscribe(topic, conn_id)
    }

    fn publish(&mut self, topic: &Topic, msg: &Bytes, skip: Option<u64>) -> Published {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((topic.clone(), msg.clone(), skip));
        self.inner.publish(topic, msg, skip)
    }

    fn subscribers(&self, topic: &Topic) -> usize {
        self.inner.subscribers(topic)
    }

    fn is_subscribed(&self, topic: &Topic, conn_id: u64) -> bool {
        self.inner.is_subscribed(topic, conn_id)
    }
}

#[cfg(test)]
mod tests {
    use super::super::outbox::outbox;
    use super::super::topic::RoomId;
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn a_publish_reaches_every_subscriber_but_the_skipped_one_and_reports_full_outboxes() {
        let mut bus = LocalBus::default();
        let lobby = Topic::Room(RoomId::LOBBY);
        let mut outboxes = Vec::new();
        for (conn, capacity) in [(1, 4), (2, 4), (3, 1)] {
            let key = format!("u{conn}");
            let (tx, rx) = outbox(conn, &key, &key, capacity, usize::MAX, Arc::default());
            bus.subscribe(lobby.clone(), tx.clone());
            bus.subscribe(Topic::user(&key), tx);
            outboxes.push(rx);
        }
        let msg = Bytes::from_static(b"hello");
        let first = bus.publish(&lobby, &msg, Some(1));
        assert_eq!((first.delivered, first.too_slow.len()), (2, 0));
        let second = bus.publish(&lobby, &msg, None);
        assert_eq!(second.delivered, 2);
        assert_eq!(second.too_slow, vec![(3, Arc::from("u3"))]);
        // One encoded message, shared: every outbox holds the same bytes, not a copy.
        let got = outboxes[1].try_recv().unwrap().unwrap();
        assert_eq!(got.as_ptr(), msg.as_ptr());
        assert_eq!(outboxes[0].try_recv().unwrap().unwrap(), msg);
        assert_eq!(
            outboxes[0].try_recv().unwrap(),
            None,
            "skipped the first time"
        );
        // A user's topic reaches that user only.
        assert_eq!(bus.publish(&Topic::user("u1"), &msg, None).delivered, 1);
        assert_eq!(bus.publish(&Topic::user("nobody"), &msg, None).delivered, 0);
    }

    #[test]
    fn an_outbox_closes_once_unsubscribed_from_every_topic() {
        let mut bus = LocalBus::default();
        let lobby = Topic::Room(RoomId::LOBBY);
        let replaced = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = outbox(7, "Ann", "ann", 4, usize::MAX, replaced);
        bus.subscribe(lobby.clone(), tx.clone());
        bus.subscribe(Topic::user("ann"), tx);
        assert_eq!(bus.subscribers(&lobby), 1);
        bus.publish(&lobby, &Bytes::from_static(b"last"), None);
        assert!(bus.unsubscribe(&lobby, 7));
        assert!(!bus.unsubscribe(&lobby, 7), "only once");
        assert_eq!(bus.subscribers(&lobby), 0);
        assert_eq!(rx.try_recv(), Ok(Some(Bytes::from_static(b"last"))));
        assert_eq!(
            rx.try_recv(),
            Ok(None),
            "still subscribed to its user topic"
        );
        assert!(bus.unsubscribe(&Topic::user("ann"), 7));
        assert_eq!(rx.try_recv(), Err(super::super::outbox::Closed::TooSlow));
    }
}
