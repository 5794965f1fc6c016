//! The stream `MM` on NATS JetStream: every node proposes to it and applies it in its one
//! order (CLUSTER.md). Three tasks per node: the publisher (proposals → stream, retried with
//! the same `Nats-Msg-Id` until JetStream acknowledges them), the applier (an ordered consumer
//! → [`Hub::apply`]), and the answerer of takeover requests from other nodes.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::event;
use super::lease::Membership;
use crate::hub::{Hub, Proposal};

/// The stream's name.
pub const STREAM: &str = "MM";
/// The one subject every event is published to (one subject: one total order).
pub const SUBJECT: &str = "mm.log";
/// How long the stream keeps events: a node behind by more cannot replay (it stops).
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// JetStream's deduplication window for `Nats-Msg-Id` (a retried publish inside it is dropped).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a publish waits for JetStream's acknowledgement before it is sent again.
pub const ACK_WAIT: Duration = Duration::from_secs(5);
/// Proposals waiting for the publisher, per node; beyond this a line is refused as busy.
pub const PROPOSALS: usize = 8192;

/// The subject on which the node of `epoch` answers takeover requests.
#[must_use]
pub fn takeover_subject(epoch: i64) -> String {
    format!("mm.node.{epoch}.takeover")
}

/// Makes the stream if it is missing (the same settings on every node) and returns it.
///
/// # Errors
/// If JetStream is not enabled on the NATS server, or refuses the stream.
pub async fn ensure(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    let config = stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![SUBJECT.to_owned()],
        storage: stream::StorageType::File,
        max_age: MAX_AGE,
        duplicate_window: DUPLICATE_WINDOW,
        max_message_size: i32::try_from(event::MAX_EVENT_LEN).unwrap_or(i32::MAX),
        ..Default::default()
    };
    js.get_or_create_stream(config).await.map_err(|e| {
        anyhow::anyhow!(
            "the NATS server refused the stream {STREAM} (is JetStream enabled: nats-server -js?): {e}"
        )
    })
}

/// Most proposals of one node in flight to JetStream at once (published, not yet
/// acknowledged): the publisher does not wait for each acknowledgement before the next.
pub const IN_FLIGHT: usize = 256;

/// JetStream's answer to one publish: whether it was a repeat, or the error and whether it is
/// definitive (JetStream refused it: it is not in the stream) rather than unknown (no answer,
/// the link broke: it may be).
type AckResult = Result<bool, (bool, String)>;

/// Whether a publish error means JetStream did not take the message (rather than that its
/// answer was lost).
fn definitive(kind: jetstream::context::PublishErrorKind) -> bool {
    use jetstream::context::PublishErrorKind as K;
    !matches!(kind, K::TimedOut | K::BrokenPipe)
}

/// A publish on its way: resolves to the proposal and JetStream's answer.
type Acking = std::pin::Pin<Box<dyn std::future::Future<Output = (Proposal, AckResult)> + Send>>;

/// Publishes proposals in the order they came, up to [`IN_FLIGHT`] at once on the one NATS
/// connection (JetStream orders them as they arrive), each until JetStream acknowledged it:
/// a publish that is not acknowledged within [`ACK_WAIT`] is sent again with the same
/// `Nats-Msg-Id` (a repeat is deduplicated), so that nothing proposed is dropped while NATS
/// is away. Ends when every proposal sender is gone, or at `cancel` once nothing is left.
///
/// Order: proposals reach the stream in the order they came unless a publish fails while a
/// later one succeeds (a NATS fault between the two); the retried one then comes after it.
pub async fn publish(
    js: jetstream::Context,
    hub: Hub,
    mut proposals: mpsc::Receiver<Proposal>,
    metrics: crate::metrics::ClusterMetrics,
    cancel: CancellationToken,
) {
    use futures_util::stream::FuturesOrdered;
    let mut in_flight: FuturesOrdered<Acking> = FuturesOrdered::new();
    let mut open = true;
    let mut closing = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        if !open && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            biased;
            Some((mut proposal, acked)) = in_flight.next(), if !in_flight.is_empty() => match acked {
                Ok(duplicate) => {
                    backoff = Duration::from_millis(100);
                    metrics.publish_failing.set(0);
                    if duplicate {
                        debug!(id = %proposal.msg_id, "publish repeated; JetStream had it");
                    }
                }
                // JetStream refused it at the first try: it is not in the stream, and sending
                // it again later would put it after this node's later lines. Its sender is
                // told it was not sent.
                Err((true, e)) if proposal.attempts == 1 => {
                    warn!(error = %e, id = %proposal.msg_id, "the stream refused a publish; its sender is told it was not sent");
                    metrics.publish_failed();
                    hub.refuse_proposal(&proposal.msg_id);
                }
                Err((_, e)) => {
                    warn!(error = %e, id = %proposal.msg_id, "stream publish not acknowledged; sending it again");
                    metrics.publish_retries.inc();
                    metrics.publish_failed();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    proposal.attempts += 1;
                    in_flight.push_back(send(&js, proposal).await);
                }
            },
            p = proposals.recv(), if open && in_flight.len() < IN_FLIGHT => match p {
                Some(mut p) => {
                    p.attempts = 1;
                    in_flight.push_back(send(&js, p).await);
                }
                None => open = false,
            },
            () = cancel.cancelled(), if open && !closing => {
                // Whatever is queued still goes; then the loop ends once acknowledged.
                closing = true;
                proposals.close();
            }
        }
    }
}

/// Publishes `proposal` and returns the future of its acknowledgement (bounded by
/// [`ACK_WAIT`]), which yields the proposal back.
async fn send(js: &jetstream::Context, proposal: Proposal) -> Acking {
    let sent = js
        .send_publish(
            SUBJECT,
            jetstream::message::PublishMessage::build()
                .payload(proposal.bytes.clone())
                .message_id(proposal.msg_id.as_str()),
        )
        .await;
    Box::pin(async move {
        let acked = match sent {
            Ok(ack) => match tokio::time::timeout(ACK_WAIT, ack.into_future()).await {
                Ok(Ok(ack)) => Ok(ack.duplicate),
                Ok(Err(e)) => Err((definitive(e.kind()), e.to_string())),
                Err(_) => Err((false, "no acknowledgement within 5 s".to_owned())),
            },
            Err(e) => Err((definitive(e.kind()), e.to_string())),
        };
        (proposal, acked)
    })
}

/// The stream's identity (when it was made, as nanoseconds since the Unix epoch) and its last
/// sequence; `None` if the stream does not exist. Errors are transient (NATS away).
///
/// # Errors
/// If NATS or JetStream does not answer.
pub async fn stream_state(js: &jetstream::Context) -> anyhow::Result<Option<(String, u64)>> {
    let mut mm = match js.get_stream(STREAM).await {
        Ok(s) => s,
        Err(e) => {
            if let jetstream::context::GetStreamErrorKind::JetStream(inner) = e.kind() {
                if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND {
                    return Ok(None);
                }
            }
            return Err(e.into());
        }
    };
    let info = mm.info().await?;
    Ok(Some((
        info.created.unix_timestamp_nanos().to_string(),
        info.state.last_sequence,
    )))
}

/// How often a node checks that the stream it applies is still the one it joined.
pub const IDENTITY_EVERY: Duration = Duration::from_secs(5);

/// How many stream events before its start a node reads back at start, for the lobby lines
/// the store had not committed yet when it loaded the history (CLUSTER.md).
pub const REPLAY: u64 = 4096;

/// The lobby lines among the stream's events `from..=to` (a node starting: see [`REPLAY`]),
/// with their ids (`base + sequence`), oldest first; only those accepted by the node of
/// `epoch` if given. Gives up (with what it has, and a warning) after 10 s.
pub async fn replay_lines(
    js: &jetstream::Context,
    from: u64,
    to: u64,
    base: u64,
    epoch: Option<i64>,
) -> Vec<crate::store::Line> {
    let mut lines = Vec::new();
    let from = from.max(1);
    if from > to {
        return lines; // an empty stream
    }
    let read = async {
        let stream = js.get_stream(STREAM).await?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: SUBJECT.to_owned(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            let Ok(info) = message.info() else { continue };
            let seq = info.stream_sequence;
            if seq > to {
                break;
            }
            if let Ok(event::Event::Line {
                origin,
                room,
                action,
                from,
                text,
                ts,
            }) = event::decode(&message.payload)
            {
                if mm_common::protocol::is_lobby(&room) && epoch.is_none_or(|e| e == origin.epoch) {
                    lines.push(crate::store::Line {
                        room: crate::hub::RoomId::LOBBY,
                        action,
                        id: base.saturating_add(seq),
                        ts,
                        from,
                        text,
                    });
                }
            }
            if seq == to {
                break;
            }
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "the stream's recent lines not read back; the lobby's history may miss a line or two"),
        Err(_) => warn!("the stream's recent lines not read back within 10 s; the lobby's history may miss a line or two"),
    }
    lines
}

/// Applies the stream from `start` (a sequence) to the hub, in order, until `cancel`; before
/// it, from `rooms_from`, only its room commands (the rooms loaded at start stand at
/// `rooms_from − 1`; lines and presence before `start` are in what the node loaded). The
/// ordered consumer resumes after the last sequence it delivered when NATS comes back; a
/// consumer that fails is made again from the next sequence. A gap (the stream no longer has
/// what this node has not applied) cannot be repaired: it cancels `fail` (the node stops, its
/// clients reconnect elsewhere and load history from the store).
pub async fn apply(
    js: jetstream::Context,
    hub: Hub,
    metrics: crate::metrics::ClusterMetrics,
    (rooms_from, start, created): (u64, u64, String),
    cancel: CancellationToken,
    fail: CancellationToken,
) {
    let mut next = rooms_from.min(start);
    let mut checked = tokio::time::Instant::now();
    while !cancel.is_cancelled() {
        let consumer = async {
            let stream = js.get_stream(STREAM).await?;
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: SUBJECT.to_owned(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: next,
                    },
                    ..Default::default()
                })
                .await?;
            anyhow::Ok(consumer.messages().await?)
        };
        let mut messages = match consumer.await {
            Ok(m) => m,
            Err(e) => {
                if matches!(stream_state(&js).await, Ok(None)) {
                    error!("the cluster's stream is gone (did NATS lose its JetStream store?): this node stops (its clients reconnect; started again it makes the stream anew)");
                    fail.cancel();
                    return;
                }
                warn!(error = %e, "stream consumer not made; trying again in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = cancel.cancelled() => return,
                }
            }
        };
        info!(from = next, "applying the stream");
        // async-nats remakes an ordered consumer by itself after a reconnection, but against
        // nats-server 2.9 that took over a minute (its missed-heartbeat detection): a
        // reconnection makes a new one here, from the next sequence, at once.
        let client = js.client();
        let stats = client.statistics();
        let connects = stats.connects.load(std::sync::atomic::Ordering::Relaxed);
        let mut watch = tokio::time::interval(Duration::from_millis(200));
        loop {
            let message = tokio::select! {
                m = messages.next() => m,
                _ = watch.tick() => {
                    let up = client.connection_state() == async_nats::connection::State::Connected;
                    metrics.bus_connected.set(i64::from(up));
                    if up && checked.elapsed() >= IDENTITY_EVERY {
                        checked = tokio::time::Instant::now();
                        // The stream made again (NATS lost its store) restarts its sequence:
                        // this node's ids and position mean nothing there. It stops; started
                        // again it joins the new stream with a new id base.
                        let replaced = match stream_state(&js).await {
                            Ok(None) => Some("the cluster's stream is gone (did NATS lose its JetStream store?)"),
                            Ok(Some((now, last))) if now != created || last.saturating_add(1) < next => {
                                Some("the cluster's stream was made again (did NATS lose its JetStream store?)")
                            }
                            _ => None,
                        };
                        if let Some(why) = replaced {
                            error!("{why}: this node stops (its clients reconnect; started again it joins the new stream)");
                            fail.cancel();
                            return;
                        }
                    }
                    if stats.connects.load(std::sync::atomic::Ordering::Relaxed) != connects {
                        info!(from = next, "NATS link back: applying the stream again from where this node was");
                        break;
                    }
                    continue;
                }
                () = cancel.cancelled() => return,
            };
            let message = match message {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    warn!(error = %e, "stream consumer failed; made again from sequence {next}");
                    break;
                }
                None => break,
            };
            let seq = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => {
                    warn!(error = %e, "stream message without its sequence; skipped");
                    continue;
                }
            };
            if seq < next {
                continue; // a repeat
            }
            if seq > next {
                error!(
                    expected = next,
                    got = seq,
                    "the stream no longer holds events this node has not applied; stopping (clients reconnect and load history)"
                );
                fail.cancel();
                return;
            }
            next = seq + 1;
            metrics
                .applied_sequence
                .set(i64::try_from(seq).unwrap_or(i64::MAX));
            match event::decode(&message.payload) {
                Ok(event) if seq >= start || matches!(event, event::Event::Room { .. }) => {
                    hub.apply(seq, event);
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, seq, "stream event not applied"),
            }
        }
    }
}

/// Answers other nodes' takeover requests (`nick_key`, credential and the requesting node's
/// epoch, newline-separated):
/// ends this node's session of that nick if it holds it with that credential, releases the
/// nick, and answers `ok` (or `none`).
pub async fn answer_takeovers(
    client: async_nats::Client,
    hub: Hub,
    membership: Arc<Membership>,
    cancel: CancellationToken,
) {
    let subject = takeover_subject(membership.node().epoch);
    let mut requests = match client.subscribe(subject).await {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "takeover requests cannot be received: logins elsewhere of this node's users wait for its lease");
            return;
        }
    };
    loop {
        let request = tokio::select! {
            r = requests.next() => match r { Some(r) => r, None => return },
            () = cancel.cancelled() => return,
        };
        let Some(reply) = request.reply else {
            continue;
        };
        let text = String::from_utf8_lossy(&request.payload);
        let mut parts = text.splitn(3, '\n');
        let (Some(key), Some(credential), Some(Ok(epoch))) = (
            parts.next(),
            parts.next(),
            parts.next().map(str::parse::<i64>),
        ) else {
            continue;
        };
        if key.len() > 4 * mm_common::protocol::MAX_NICK_LEN || credential.len() > 1024 {
            continue;
        }
        let ended = hub.replaced_elsewhere(key, credential, epoch);
        if ended {
            if let Err(e) = membership.release(key).await {
                warn!(error = %e, "nick not released after a takeover");
            }
        }
        let answer = if ended { "ok" } else { "none" };
        let _ = client.publish(reply, answer.into()).await;
    }
}
