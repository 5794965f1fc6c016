//! Several nodes (`--bus nats://…`): see CLUSTER.md for the model.
//!
//! - `nats`: the link to NATS (URL, TLS, credentials) and [`nats::BusConfig`].
//! - `lease`: this node's lease and the nicks it holds, in PostgreSQL, with fencing.
//! - `event`: what nodes tell each other through the stream.
//! - `stream`: the JetStream stream, its publisher and its applier.
//! - here: [`Node`], what sessions ask of the cluster (claiming a nick at login, releasing
//!   it at logout), and [`start`], which joins a node to the others before the hub is built.

pub mod acme;
pub mod event;
pub mod lease;
pub mod nats;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::hub::{ClusterSetup, Hub, Proposal};
use crate::store::postgres::PgTarget;
use lease::{Claim, Membership};

/// How often a node looks for nodes whose lease expired.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How long a login waits for the node holding its nick to end that session.
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

/// Why a login may not hold its nick on this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// Another node has the nick online with another certificate.
    #[error("nick in use on another server of the cluster")]
    InUse,
    /// Another node has it online with this certificate and did not end that session in time.
    #[error("your other session, on another server of the cluster, has not ended yet; try again in a few seconds")]
    StillEnding,
    /// The cluster's database did not answer.
    #[error("the cluster's database did not answer; try again")]
    Unavailable,
}

/// This node, as its sessions see it.
#[derive(Debug)]
pub struct Node {
    membership: Arc<Membership>,
    client: async_nats::Client,
}

impl Node {
    /// This node's lease and what it holds in the database.
    #[must_use]
    pub fn membership(&self) -> Arc<Membership> {
        Arc::clone(&self.membership)
    }

    /// This node's epoch (its fencing token).
    #[must_use]
    pub fn epoch(&self) -> i64 {
        self.membership.node().epoch
    }

    /// Claims `nick_key` for this node before a login joins the hub (CLUSTER.md): granted if
    /// free, this node's, or held by a dead node; held elsewhere with the same `credential`,
    /// that node is asked to end its session (it answers once it released the nick) and the
    /// claim is tried again.
    ///
    /// # Errors
    /// [`ClaimError`].
    pub async fn claim(&self, nick: &str, credential: &str) -> Result<(), ClaimError> {
        let nick_key = &mm_common::protocol::nick_key(nick);
        let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
        loop {
            let claim = self
                .membership
                .claim(nick_key, credential)
                .await
                .map_err(|e| {
                    warn!(error = %e, "nick not claimed: the cluster's database failed");
                    ClaimError::Unavailable
                })?;
            let node = match claim {
                Claim::Granted => {
                    if let Err(e) = self.membership.spelled(nick_key, nick).await {
                        // Only nodes that start later see the key instead of the spelling.
                        warn!(error = %e, "how a nick is spelled not recorded");
                    }
                    return Ok(());
                }
                Claim::Held {
                    same_credential: false,
                    ..
                } => return Err(ClaimError::InUse),
                Claim::Held { node, .. } => node,
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ClaimError::StillEnding);
            }
            let request = self.client.request(
                stream::takeover_subject(node.epoch),
                format!("{nick_key}\n{credential}\n{}", self.epoch()).into(),
            );
            match tokio::time::timeout(left, request).await {
                Ok(Ok(_)) => {}
                // No answer: the node is gone or going; its lease decides.
                Ok(Err(_)) | Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200).min(left)).await;
                }
            }
        }
    }

    /// Waits (at most `wait`) until every line this node proposed was applied, then tells the
    /// senders of any left that they were not sent. For shutdown, after the hub closed.
    pub async fn drain(&self, hub: &Hub, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while hub.pending_proposals() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        hub.abandon_pending();
    }

    /// Leaves the cluster: this node's lease and nicks are deleted, so its users may log in
    /// elsewhere at once.
    pub async fn leave(&self) {
        match self.membership.leave().await {
            Ok(()) => info!("left the cluster"),
            Err(e) => {
                warn!(error = %e, "the cluster lease not given up: this node's nicks are free when it expires")
            }
        }
    }

    /// Releases `nick_key` (its session here ended) unless `still_here` says a newer login of
    /// it on this node holds it now. Best effort: a nick left behind is this node's until it
    /// stops, and is released by its next login's logout or by the lease.
    pub fn release(self: &Arc<Self>, hub: &Hub, nick_key: String) {
        let node = Arc::clone(self);
        let hub = hub.clone();
        tokio::spawn(async move {
            if hub.is_online_here(&nick_key) {
                return;
            }
            if let Err(e) = node.membership.release(&nick_key).await {
                warn!(error = %e, "nick not released; the next login of it on this node or the lease frees it");
            }
        });
    }
}

/// A node being started: joined to the cluster and its stream, its hub not built yet.
pub struct Joining {
    membership: Arc<Membership>,
    client: async_nats::Client,
    js: jetstream::Context,
    /// The first sequence this node applies.
    start: u64,
    /// The first sequence whose room commands this node applies: after the position its
    /// rooms were loaded at (`Loaded::rooms_applied`), before `start`.
    rooms_from: u64,
    /// When the stream was made (its identity: see [`stream::stream_state`]).
    created: String,
    /// A line's id is `base + sequence`.
    base: u64,
    proposals: mpsc::Receiver<Proposal>,
    sender: mpsc::Sender<Proposal>,
    /// Users online on other nodes when this node joined.
    online: Vec<(String, i64)>,
    /// The lobby lines of the stream's last events before `start` ([`stream::REPLAY`]).
    replayed: Vec<crate::store::Line>,
}

impl std::fmt::Debug for Joining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joining")
            .field("node", self.membership.node())
            .field("start", &self.start)
            .field("rooms_from", &self.rooms_from)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Joins this node to the cluster: its lease in the database (`target`), the link to NATS
/// (`bus`), the stream (made if missing) and the id base. `last_id` is the highest id the
/// store ever recorded (a new stream's ids start above it); `rooms_applied` the id of the
/// stream event the loaded rooms stand at (`Loaded::rooms_applied`); `settings` the room
/// limits every live node must share ([`crate::hub::cluster_settings`]).
///
/// # Errors
/// In words naming what failed: the database, NATS, JetStream.
pub async fn start(
    target: &PgTarget,
    bus: &nats::BusConfig,
    (last_id, rooms_applied): (u64, u64),
    settings: &str,
) -> anyhow::Result<Joining> {
    // NATS first: a node that cannot reach it leaves no lease behind.
    let client = nats::connect(bus)
        .await
        .map_err(|e| anyhow::anyhow!("cluster: {e}"))?;
    let membership = Arc::new(
        Membership::join_with(target, &bus.node_name, bus.lease, settings)
            .await
            .map_err(|e| anyhow::anyhow!("cluster: {e}"))?,
    );
    match joined(membership.clone(), client, bus, (last_id, rooms_applied)).await {
        Ok(joining) => Ok(joining),
        Err(e) => {
            // Its lease goes at once, so that it can start again under its name.
            let _ = membership.leave().await;
            Err(e)
        }
    }
}

/// The rest of [`start`], once the node has its lease.
async fn joined(
    membership: Arc<Membership>,
    client: async_nats::Client,
    bus: &nats::BusConfig,
    (last_id, rooms_applied): (u64, u64),
) -> anyhow::Result<Joining> {
    let js = jetstream::new(client.clone());
    let mut mm = stream::ensure(&js).await?;
    // Who is online elsewhere, read before the stream's position: a logout after this read is
    // in the stream after that position, and applied.
    let online = membership
        .online()
        .await
        .map_err(|e| anyhow::anyhow!("cluster: who is online could not be read: {e}"))?;
    let info = mm
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("cluster: the stream's state could not be read: {e}"))?;
    let created = info.created.unix_timestamp_nanos().to_string();
    let base = membership
        .stream_base(&created, last_id.saturating_add(crate::hub::ids::BLOCK))
        .await
        .map_err(|e| anyhow::anyhow!("cluster: the stream's id base could not be recorded: {e}"))?;
    let start = info.state.last_sequence.saturating_add(1);
    let first = info.state.first_sequence.max(1);
    // The rooms were loaded (before this) as of event `rooms_applied`: the room commands
    // after it are run again from the stream. Ids below `base` are an older stream's: all of
    // this one's room commands are after them.
    let wanted = if rooms_applied >= base {
        rooms_applied - base + 1
    } else {
        first
    };
    if wanted < first {
        warn!(
            wanted,
            first, "the stream no longer holds every room command after the rooms the store holds (no node stored them for over an hour?): rooms may lack a change"
        );
    }
    let rooms_from = wanted.max(first).min(start);
    let replayed = stream::replay_lines(
        &js,
        info.state
            .first_sequence
            .max(start.saturating_sub(stream::REPLAY)),
        info.state.last_sequence,
        base,
        None,
    )
    .await;
    let (sender, proposals) = mpsc::channel(stream::PROPOSALS);
    info!(
        node = %bus.node_name,
        epoch = membership.node().epoch,
        from = start,
        rooms_from,
        base,
        "joined the cluster"
    );
    Ok(Joining {
        membership,
        client,
        js,
        start,
        rooms_from,
        base,
        proposals,
        sender,
        online,
        replayed,
        created,
    })
}

impl Joining {
    /// Adds to `history` (the lobby's lines the store loaded, oldest first, at most `len`)
    /// the stream's recent lines it lacks (accepted by other nodes, not yet committed when the
    /// store was read), keeping the newest `len` in id order.
    pub fn complete_history(&mut self, history: &mut Vec<crate::store::Line>, len: usize) {
        let replayed = std::mem::take(&mut self.replayed);
        if replayed.is_empty() {
            return;
        }
        let mut by_id: std::collections::BTreeMap<u64, crate::store::Line> =
            history.drain(..).map(|l| (l.id, l)).collect();
        for line in replayed {
            by_id.entry(line.id).or_insert(line);
        }
        let skip = by_id.len().saturating_sub(len);
        history.extend(by_id.into_values().skip(skip));
    }

    /// What the hub needs to be a node ([`crate::hub::HubBuilder::cluster`]).
    #[must_use]
    pub fn setup(&self) -> ClusterSetup {
        ClusterSetup {
            epoch: self.membership.node().epoch,
            proposals: self.sender.clone(),
            base: self.base,
        }
    }

    /// Starts the node's tasks on `tracker` (publisher, applier, takeover answers, lease
    /// renewal, sweep of dead nodes) until `cancel`. When the lease is lost, or the stream can
    /// no longer be applied without a gap, `stop` is cancelled: the server shuts down (its
    /// clients reconnect to another node).
    pub fn run(
        self,
        hub: &Hub,
        metrics: &crate::metrics::ClusterMetrics,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
        stop: &CancellationToken,
    ) -> Arc<Node> {
        let Joining {
            membership,
            client,
            js,
            start,
            rooms_from,
            proposals,
            sender,
            online,
            base,
            created,
            ..
        } = self;
        let js_for_sweep = js.clone();
        drop(sender);
        hub.seed_remote(online);
        tracker.spawn(stream::publish(
            js.clone(),
            hub.clone(),
            proposals,
            metrics.clone(),
            cancel.clone(),
        ));
        tracker.spawn(stream::apply(
            js,
            hub.clone(),
            metrics.clone(),
            (rooms_from, start, created),
            cancel.clone(),
            stop.clone(),
        ));
        tracker.spawn(stream::answer_takeovers(
            client.clone(),
            hub.clone(),
            Arc::clone(&membership),
            cancel.clone(),
        ));
        let fenced = {
            let (hub, stop) = (hub.clone(), stop.clone());
            move || {
                error!("the cluster lease could not be renewed in time: closing every session and stopping (clients reconnect to another node)");
                hub.fence();
                stop.cancel();
            }
        };
        tracker.spawn(lease::run(
            Arc::clone(&membership),
            fenced,
            || {},
            cancel.clone(),
        ));
        tracker.spawn(sweep(
            Arc::clone(&membership),
            hub.clone(),
            js_for_sweep,
            base,
            cancel.clone(),
        ));
        Arc::new(Node { membership, client })
    }
}

/// Every [`SWEEP_EVERY`]: nodes whose lease expired leave the presence view, and the node that
/// swept one first stores the lobby lines it had ordered but not stored ([`recover`]).
async fn sweep(
    membership: Arc<Membership>,
    hub: Hub,
    js: jetstream::Context,
    base: u64,
    cancel: CancellationToken,
) {
    let mut missing = std::collections::HashSet::new();
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = cancel.cancelled() => return,
        }
        // Whichever node sweeps first removes a dead node's rows; every node compares its own
        // view with the live leases.
        match membership.sweep().await {
            Ok(gone) => {
                for (node, _) in gone {
                    recover(&js, &hub, &membership, base, node.epoch).await;
                }
            }
            Err(e) => warn!(error = %e, "dead nodes not swept"),
        }
        match membership.live_nodes().await {
            Ok(live) => {
                let live: Vec<i64> = live.iter().map(|n| n.epoch).collect();
                hub.keep_nodes(&live, &mut missing);
            }
            Err(e) => warn!(error = %e, "live nodes not read"),
        }
        // Where the stored rooms stand in the stream, for nodes that start later.
        hub.tell_rooms_applied();
    }
}

/// A node of `epoch` died: the lobby lines it ordered in the stream's last [`stream::REPLAY`]
/// events, and the room lines of it this node accepted among its last
/// [`crate::hub::RECENT_LINES`], that it did not store (it died between the stream's
/// acknowledgement and its commit; everyone saw them live) are stored now, so that the
/// histories are what everyone saw. Best effort: logged if it cannot.
async fn recover(
    js: &jetstream::Context,
    hub: &Hub,
    membership: &Membership,
    base: u64,
    epoch: i64,
) {
    let last = match js.get_stream(stream::STREAM).await {
        Ok(mut s) => match s.info().await {
            Ok(info) => info.state.last_sequence,
            Err(e) => return warn!(error = %e, "a dead node's lines not checked"),
        },
        Err(e) => return warn!(error = %e, "a dead node's lines not checked"),
    };
    let mut lines = stream::replay_lines(
        js,
        last.saturating_sub(stream::REPLAY),
        last,
        base,
        Some(epoch),
    )
    .await;
    lines.extend(hub.lines_of(epoch));
    if lines.is_empty() {
        return;
    }
    let ids: Vec<i64> = lines
        .iter()
        .filter_map(|l| i64::try_from(l.id).ok())
        .collect();
    let stored = match membership.stored_lines(&ids).await {
        Ok(stored) => stored,
        Err(e) => return warn!(error = %e, "a dead node's lines not checked"),
    };
    let mut recovered = 0;
    for line in lines {
        if i64::try_from(line.id).is_ok_and(|id| stored.contains(&id)) {
            continue;
        }
        if hub.store().append_public(line).is_ok() {
            recovered += 1;
        }
    }
    if recovered > 0 {
        info!(
            epoch,
            lines = recovered,
            "stored lines a dead node had ordered but not stored"
        );
    }
}
