//! The server's metrics: one [`prometheus::Registry`] per server instance (never the crate's
//! global default registry, so that servers in one process, as in the tests, each count their
//! own), exposed in Prometheus' text format by the admin listener ([`crate::admin`]).
//!
//! Every metric is documented in METRICS.md. Labels carry only fixed words (a transport, an
//! outcome, a kind): never a nick, a room name or an address.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The transports a chat connection can use (label `transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The native protocol over TLS (`mm`).
    Tls,
    /// The web client's WebSocket over the same port (HTTPS).
    WebSocket,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Tls => "tls",
            Transport::WebSocket => "websocket",
        }
    }
}

/// How a login ended (label `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// A new nick was registered.
    Registered,
    /// A registered nick's owner logged in.
    Known,
    /// Refused (nick taken, limits, store busy, a protocol error...).
    Refused,
}

/// The kind of an accepted chat message (label `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A public line in `#lobby`.
    Public,
    /// A public line in another room.
    Room,
    /// A private plaintext line.
    Private,
    /// An end-to-end encrypted relay payload.
    Relay,
}

/// The store's metrics, handed to the store once at start ([`crate::store::Store::attach_metrics`]).
/// Cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Seconds from the start of a batch's transaction to its successful commit.
    pub commit_seconds: Histogram,
    /// Operations submitted to the store and not yet answered.
    pub backlog: IntGauge,
}

/// The cluster's metrics (`--bus`; zero on a server on its own). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    /// The last stream sequence this node applied (compare nodes: the lag of one behind).
    pub applied_sequence: IntGauge,
    /// Publishes to the stream sent again after no acknowledgement (NATS away or slow).
    pub publish_retries: IntCounter,
    /// This node's lines and presence changes proposed and not yet applied.
    pub proposals_waiting: IntGauge,
    /// Users online on other nodes, as this node sees them.
    pub remote_users: IntGauge,
    /// 1 while this node's link to NATS is up (a node of several), else 0.
    pub bus_connected: IntGauge,
    /// 1 while the stream refuses or does not acknowledge this node's publishes.
    pub publish_failing: IntGauge,
    /// When a publish last failed (seconds since the Unix epoch; 0: never).
    pub publish_failed_at: IntGauge,
}

impl ClusterMetrics {
    /// Records a failed publish now.
    pub fn publish_failed(&self) {
        self.publish_failing.set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.publish_failed_at.set(now);
    }

    /// Whether publishes fail now: the last one failed, less than `window` ago.
    pub fn publishing_fails(&self, window: std::time::Duration) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        self.publish_failing.get() != 0 && now.saturating_sub(self.publish_failed_at.get()) < window
    }
}

/// The metrics of one server instance.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    connections_accepted: IntCounterVec,
    connections_open: IntGaugeVec,
    logins: IntCounterVec,
    /// Frames (lines, notices) moved from a user's queue to its connection.
    pub deliveries: IntCounter,
    /// Bytes of protocol frames read from logged-in clients.
    pub bytes_received: IntCounter,
    /// Bytes of protocol frames written to clients.
    pub bytes_sent: IntCounter,
    /// Frames refused by a full outbound queue.
    pub queue_drops: IntCounter,
    /// Connections closed because they did not keep up.
    pub slow_consumer_disconnects: IntCounter,
    /// Messages refused by the per-connection rate limit.
    pub rate_limited: IntCounter,
    messages: IntCounterVec,
    /// Connections from a trusted proxy closed for a missing or invalid PROXY header.
    pub proxy_header_refused: IntCounter,
    rooms: IntGauge,
    online: IntGauge,
    /// The store's.
    pub store: StoreMetrics,
    /// The cluster's.
    pub cluster: ClusterMetrics,
}

/// Buckets of the commit latency histogram, in seconds: 0.5 ms to 10 s (an fsync takes ~1 ms
/// to ~20 ms on common disks; seconds mean a stuck or failing disk).
const COMMIT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// A new registry with every metric at zero.
    ///
    /// # Errors
    /// If the registry refuses a metric (a name registered twice: a programming error).
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let connections_accepted = IntCounterVec::new(
            Opts::new(
                "mm_connections_accepted_total",
                "Chat connections established (TLS handshake done, or WebSocket upgraded), by transport.",
            ),
            &["transport"],
        )?;
        let connections_open = IntGaugeVec::new(
            Opts::new(
                "mm_connections_open",
                "Chat connections open now, by transport.",
            ),
            &["transport"],
        )?;
        let logins = IntCounterVec::new(
            Opts::new(
                "mm_logins_total",
                "Logins, by outcome (registered, known, refused).",
            ),
            &["outcome"],
        )?;
        let deliveries = IntCounter::new(
            "mm_deliveries_total",
            "Frames (lines and notices) moved from users' outbound queues to their connections.",
        )?;
        let bytes_received = IntCounter::new(
            "mm_received_bytes_total",
            "Bytes of protocol messages received from logged-in clients (framing included, TLS excluded).",
        )?;
        let bytes_sent = IntCounter::new(
            "mm_sent_bytes_total",
            "Bytes of protocol messages written to logged-in clients (framing included, TLS excluded).",
        )?;
        let queue_drops = IntCounter::new(
            "mm_outbound_queue_drops_total",
            "Frames that did not fit in a connection's full outbound queue (the connection is then closed as too slow).",
        )?;
        let slow_consumer_disconnects = IntCounter::new(
            "mm_slow_consumer_disconnects_total",
            "Connections closed because they did not keep up (outbound queue full, or a write stalled).",
        )?;
        let rate_limited = IntCounter::new(
            "mm_rate_limited_total",
            "Messages refused by the per-connection rate limit.",
        )?;
        let messages = IntCounterVec::new(
            Opts::new(
                "mm_messages_accepted_total",
                "Chat messages accepted, by kind (public, room, private, relay).",
            ),
            &["kind"],
        )?;
        let proxy_header_refused = IntCounter::new(
            "mm_proxy_header_refused_total",
            "Connections from a trusted proxy closed for a missing, late or invalid PROXY protocol v2 header.",
        )?;
        let rooms = IntGauge::new("mm_rooms", "Rooms, the default room excluded.")?;
        let online = IntGauge::new("mm_online_users", "Users logged in now.")?;
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "mm_store_commit_seconds",
                "Time from the start of a store transaction to its successful commit, in seconds.",
            )
            .buckets(COMMIT_BUCKETS.to_vec()),
        )?;
        let backlog = IntGauge::new(
            "mm_store_backlog",
            "Operations submitted to the store and not yet answered (waiting, or in the batch being committed).",
        )?;
        registry.register(Box::new(connections_accepted.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(bytes_received.clone()))?;
        registry.register(Box::new(bytes_sent.clone()))?;
        registry.register(Box::new(queue_drops.clone()))?;
        registry.register(Box::new(slow_consumer_disconnects.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(messages.clone()))?;
        registry.register(Box::new(proxy_header_refused.clone()))?;
        registry.register(Box::new(rooms.clone()))?;
        registry.register(Box::new(online.clone()))?;
        let cluster = ClusterMetrics {
            applied_sequence: IntGauge::new(
                "mm_cluster_applied_sequence",
                "The last sequence of the cluster's stream this node applied (0 on a server on its own).",
            )?,
            publish_retries: IntCounter::new(
                "mm_cluster_publish_retries_total",
                "Publishes to the cluster's stream sent again after no acknowledgement.",
            )?,
            proposals_waiting: IntGauge::new(
                "mm_cluster_proposals_waiting",
                "Lines and presence changes of this node proposed to the stream and not yet applied.",
            )?,
            remote_users: IntGauge::new(
                "mm_cluster_remote_users",
                "Users online on other nodes of the cluster, as this node sees them.",
            )?,
            publish_failed_at: IntGauge::new(
                "mm_cluster_publish_failure_timestamp_seconds",
                "When a publish to the cluster's stream last failed, in seconds since the Unix epoch (0: never).",
            )?,
            publish_failing: IntGauge::new(
                "mm_cluster_publish_failing",
                "1 while the cluster's stream refuses or does not acknowledge this node's publishes (since the last one it acknowledged).",
            )?,
            bus_connected: IntGauge::new(
                "mm_cluster_bus_connected",
                "1 while this node's link to the cluster's bus (NATS) is up; 0 when it is down or there is none.",
            )?,
        };
        registry.register(Box::new(cluster.applied_sequence.clone()))?;
        registry.register(Box::new(cluster.publish_retries.clone()))?;
        registry.register(Box::new(cluster.proposals_waiting.clone()))?;
        registry.register(Box::new(cluster.remote_users.clone()))?;
        registry.register(Box::new(cluster.bus_connected.clone()))?;
        registry.register(Box::new(cluster.publish_failing.clone()))?;
        registry.register(Box::new(cluster.publish_failed_at.clone()))?;
        registry.register(Box::new(commit_seconds.clone()))?;
        registry.register(Box::new(backlog.clone()))?;
        // Every labelled series exists from the start (at 0), so that a scrape shows them all
        // and a rate over them never starts from a missing series.
        for t in [Transport::Tls, Transport::WebSocket] {
            connections_accepted.with_label_values(&[t.label()]);
            connections_open.with_label_values(&[t.label()]);
        }
        for o in ["registered", "known", "refused"] {
            logins.with_label_values(&[o]);
        }
        for k in ["public", "room", "private", "relay"] {
            messages.with_label_values(&[k]);
        }
        Ok(Metrics {
            registry,
            connections_accepted,
            connections_open,
            logins,
            deliveries,
            bytes_received,
            bytes_sent,
            queue_drops,
            slow_consumer_disconnects,
            rate_limited,
            messages,
            proxy_header_refused,
            rooms,
            online,
            store: StoreMetrics {
                commit_seconds,
                backlog,
            },
            cluster,
        })
    }

    /// A connection on `transport` is established: counted, and open until the guard drops.
    pub fn connection(&self, transport: Transport) -> OpenConnection {
        self.connections_accepted
            .with_label_values(&[transport.label()])
            .inc();
        let open = self
            .connections_open
            .with_label_values(&[transport.label()]);
        open.inc();
        OpenConnection(open)
    }

    /// Counts a login's outcome.
    pub fn login(&self, outcome: LoginOutcome) {
        let label = match outcome {
            LoginOutcome::Registered => "registered",
            LoginOutcome::Known => "known",
            LoginOutcome::Refused => "refused",
        };
        self.logins.with_label_values(&[label]).inc();
    }

    /// Counts an accepted message.
    pub fn message(&self, kind: MessageKind) {
        let label = match kind {
            MessageKind::Public => "public",
            MessageKind::Room => "room",
            MessageKind::Private => "private",
            MessageKind::Relay => "relay",
        };
        self.messages.with_label_values(&[label]).inc();
    }

    /// The exposition text (Prometheus text format 0.0.4), with the rooms and online users as
    /// of now.
    pub fn render(&self, rooms: usize, online: usize) -> String {
        self.rooms.set(i64::try_from(rooms).unwrap_or(i64::MAX));
        self.online.set(i64::try_from(online).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics: cannot encode");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// An open connection's place in `mm_connections_open`; released on drop.
#[derive(Debug)]
pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_instances_count_apart_and_every_series_is_there_from_the_start() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        let guard = a.connection(Transport::Tls);
        a.login(LoginOutcome::Known);
        a.message(MessageKind::Relay);
        let text = a.render(3, 1);
        assert!(
            text.contains("mm_connections_open{transport=\"tls\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mm_logins_total{outcome=\"known\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mm_messages_accepted_total{kind=\"relay\"} 1"),
            "{text}"
        );
        assert!(text.contains("mm_rooms 3"), "{text}");
        let other = b.render(0, 0);
        assert!(
            other.contains("mm_logins_total{outcome=\"known\"} 0"),
            "{other}"
        );
        assert!(
            other.contains("mm_connections_open{transport=\"websocket\"} 0"),
            "{other}"
        );
        assert!(
            other.contains("# TYPE mm_store_commit_seconds histogram"),
            "{other}"
        );
        drop(guard);
        assert!(a
            .render(3, 1)
            .contains("mm_connections_open{transport=\"tls\"} 0"));
    }
}
