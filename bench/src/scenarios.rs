//! The load scenarios. Each returns a [`Report`]: counts (with loss), rates, latency
//! percentiles, and the server's CPU and memory when its pid is known.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use mm_client::{ChatLine, Event};
use mm_common::protocol::LOBBY;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::conn::{self, BenchConn};
use crate::server::{ProcStats, Target};

/// Most connection attempts in flight at once while setting up clients.
pub(crate) const CONNECT_PARALLEL: usize = 128;
/// Messages a fan-out sender may have unacknowledged (below the core's own bound,
/// [`mm_client::MAX_UNANSWERED`], so queueing a line never fails for lack of room).
pub(crate) const SEND_WINDOW: usize = 512;
/// A fan-out sender queues lines this many at a time, when its window has room for them all.
const SEND_BATCH: usize = 32;
/// Longest a scenario waits for its deliveries before counting the rest as lost.
pub(crate) const DELIVERY_DEADLINE: Duration = Duration::from_secs(120);

/// One run's results.
#[derive(Debug, Clone)]
pub struct Report {
    /// Everything, as one JSON object.
    pub json: Value,
}

impl Report {
    /// Lost deliveries (must be zero).
    pub fn lost(&self) -> u64 {
        self.json["lost"].as_u64().unwrap_or(0)
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the bench started (all clients share this clock).
pub(crate) fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[allow(clippy::expect_used)] // constant, valid bounds: this cannot fail
pub(crate) fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// A message text carrying its send time and its sender's node, padded to `bytes`.
fn stamped_text(bytes: usize, node: usize) -> String {
    let mut text = format!("{:020}|{:02}|", now_ns(), node % 100);
    while text.len() < bytes {
        text.push('x');
    }
    text
}

/// The send time stamped into a text, if any.
fn stamp_of(text: &str) -> Option<u64> {
    text.get(..20)?.parse().ok()
}

/// The sender's node stamped into a text, if any.
fn node_of(text: &str) -> Option<usize> {
    text.get(21..23)?.parse().ok()
}

pub(crate) async fn connect_many(
    target: &Target,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<BenchConn>> {
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLEL));
    let mut set = JoinSet::new();
    for i in 0..n {
        // Round robin over a cluster's nodes (the one server otherwise).
        let (gate, addr, tls) = (
            Arc::clone(&gate),
            target.node_for(i).1.to_owned(),
            Arc::clone(&target.tls),
        );
        let nick = format!("{prefix}{i}");
        set.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let conn = conn::login(&addr, &tls, &nick).await?;
            anyhow::Ok((i, conn))
        });
    }
    let mut clients: Vec<Option<BenchConn>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, conn) = joined??;
        clients[i] = Some(conn);
    }
    Ok(clients.into_iter().flatten().collect())
}

pub(crate) fn server_delta(
    before: Option<ProcStats>,
    after: Option<ProcStats>,
) -> (Option<u64>, Option<u64>) {
    match (before, after) {
        (Some(b), Some(a)) => (Some(a.cpu_us.saturating_sub(b.cpu_us)), Some(a.rss_kib)),
        _ => (None, None),
    }
}

pub(crate) fn latency_json(h: &Histogram<u64>) -> Value {
    json!({
        "p50_us": h.value_at_quantile(0.50),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

/// What each client of a fan-out or latency run does: the lines it must receive, and the
/// lines it sends (if it is a sender).
pub(crate) struct Plan {
    /// The room its lines go to and come from ([`LOBBY`] for the public chat): a line of any
    /// other room is counted as misdelivered.
    pub room: Arc<str>,
    /// Chat lines it must receive.
    pub expect_lines: u64,
    /// Lines it sends (their answers, `Sent` or a refusal, it must receive).
    pub send: u64,
    /// Bytes per line sent.
    pub bytes: usize,
    /// When to send: as fast as the window allows, or on a schedule.
    pub pace: Pace,
    /// Only lines sent at or after this time go into the histogram (warm-up).
    pub record_after_ns: u64,
    /// The node it is connected to (0 for one server): stamped into what it sends, and lines
    /// from senders on other nodes also go into [`Received::cross`].
    pub node: usize,
}

/// How a sender sends.
pub(crate) enum Pace {
    /// Closed loop: at most [`SEND_WINDOW`] lines unanswered, [`SEND_BATCH`] per write.
    Window,
    /// Open loop: one line every `period` from the start, whatever the replies do (catching up
    /// in a burst if late; only the core's [`mm_client::MAX_UNANSWERED`] bounds the lag).
    Every(Duration),
}

/// One client of a fan-out or latency run, in one task: sends its lines (if any) while it
/// reads, until the plan is met, the connection closes or the deadline passes; returns what it
/// received ([`Received`]: lines of its room, lines of other rooms, histogram) and the
/// connection if it sent (kept open until the end).
///
/// A sender never waits on its answers without reading them: sending is only queueing into
/// the core, and [`BenchConn::next_event`] writes what is queued while it reads. It queues
/// only while fewer than [`SEND_WINDOW`] (or, open loop, [`mm_client::MAX_UNANSWERED`]) lines
/// are unanswered, and every answer read frees room.
pub(crate) async fn run_client(
    mut conn: BenchConn,
    plan: Plan,
    delivered: Arc<AtomicU64>,
) -> (Received, Option<BenchConn>) {
    let mut hist = histogram();
    let mut cross = histogram();
    let (mut lines, mut foreign, mut answers, mut sent) = (0u64, 0u64, 0u64, 0u64);
    let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
    let start = tokio::time::Instant::now();
    // One timer for the whole run, moved only by an open-loop sender's schedule (a timer
    // per event cost more than the event).
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    let mut timer_at = deadline;
    while lines < plan.expect_lines || answers < plan.send {
        // Events already read go first: a closed-loop sender refills its window once per read,
        // with the answers of the whole read, not one line per answer (one-line writes made
        // the server write one frame per wake-up to every client: twice its CPU per delivery
        // at 1,000 clients).
        let buffered = match plan.pace {
            Pace::Window => conn.try_event(),
            Pace::Every(_) => None,
        };
        let event = match buffered {
            Some(event) => Ok(Some(event)),
            None => {
                // Queue what may go now.
                let next_due = match plan.pace {
                    Pace::Window => {
                        window_refill(&mut conn, &plan, &mut sent);
                        None
                    }
                    Pace::Every(period) => loop {
                        if sent >= plan.send {
                            break None;
                        }
                        let due = start + period.mul_f64(sent as f64);
                        if due > tokio::time::Instant::now() {
                            break Some(due);
                        }
                        match conn.say(&plan.room, &stamped_text(plan.bytes, plan.node)) {
                            Ok(_) => sent += 1,
                            // Busy: room comes with the answers read below (closed: seen below).
                            Err(_) => break None,
                        }
                    },
                };
                let wake = next_due.map_or(deadline, |due| due.min(deadline));
                if wake != timer_at {
                    timer.as_mut().reset(wake);
                    timer_at = wake;
                }
                tokio::select! {
                    event = conn.next_event() => event,
                    () = timer.as_mut() => {
                        if wake == deadline {
                            break;
                        }
                        continue;
                    }
                }
            }
        };
        match event {
            Ok(Some(Event::Public(ChatLine { room, .. }))) if *room != *plan.room => {
                foreign += 1;
            }
            Ok(Some(Event::Public(ChatLine { text, .. }))) => {
                lines += 1;
                delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(sent) = stamp_of(&text) {
                    if sent >= plan.record_after_ns {
                        let us = (now_ns().saturating_sub(sent) / 1000).max(1);
                        let _ = hist.record(us);
                        if node_of(&text).is_some_and(|n| n != plan.node % 100) {
                            let _ = cross.record(us);
                        }
                    }
                }
            }
            Ok(Some(Event::Sent { .. } | Event::Error { line: Some(_), .. })) => answers += 1,
            Ok(Some(Event::Closed { .. })) | Ok(None) | Err(_) => break,
            Ok(Some(_)) => {}
        }
    }
    let received = Received {
        lines,
        foreign,
        hist,
        cross,
        per_node: per_node_count(plan.node, lines),
    };
    (received, (plan.send > 0).then_some(conn))
}

/// What one client of a fan-out received.
pub(crate) struct Received {
    /// Lines of its room.
    pub lines: u64,
    /// Lines of any other room (must be none).
    pub foreign: u64,
    /// Their delivery latency.
    pub hist: Histogram<u64>,
    /// The delivery latency of the lines sent by a client on another node (cluster only).
    pub cross: Histogram<u64>,
    /// Lines of its room received by the clients of each node (index: node).
    pub per_node: Vec<u64>,
}

fn per_node_count(node: usize, lines: u64) -> Vec<u64> {
    let mut v = vec![0; node + 1];
    v[node] = lines;
    v
}

/// Queues a closed-loop sender's next lines, [`SEND_BATCH`] at a time while the window has room
/// for a whole batch (or for the last lines), all written together by the next read.
fn window_refill(conn: &mut BenchConn, plan: &Plan, sent: &mut u64) {
    loop {
        let batch = (SEND_BATCH as u64).min(plan.send - *sent) as usize;
        if batch == 0 || SEND_WINDOW.saturating_sub(conn.unanswered()) < batch {
            return;
        }
        for _ in 0..batch {
            if conn
                .say(&plan.room, &stamped_text(plan.bytes, plan.node))
                .is_err()
            {
                return; // cannot happen below MAX_UNANSWERED; a closed connection is seen next
            }
            *sent += 1;
        }
    }
}

/// Waits for every reader; what they received, summed (histograms merged).
/// Returns also the senders' connections, to close only after the measurement.
pub(crate) async fn collect(
    readers: &mut JoinSet<(Received, Option<BenchConn>)>,
) -> anyhow::Result<(Received, Vec<BenchConn>)> {
    let mut all = Received {
        lines: 0,
        foreign: 0,
        hist: histogram(),
        cross: histogram(),
        per_node: Vec::new(),
    };
    let mut kept = Vec::new();
    while let Some(joined) = readers.join_next().await {
        let (got, conn) = joined?;
        all.lines += got.lines;
        all.foreign += got.foreign;
        all.hist.add(&got.hist).ok();
        all.cross.add(&got.cross).ok();
        if all.per_node.len() < got.per_node.len() {
            all.per_node.resize(got.per_node.len(), 0);
        }
        for (sum, n) in all.per_node.iter_mut().zip(&got.per_node) {
            *sum += n;
        }
        kept.extend(conn);
    }
    Ok((all, kept))
}

/// `fanout`: N clients online, S of them each send M public lines of B bytes as fast as the
/// server acknowledges them (at most 512 unacknowledged per sender).
pub async fn fanout(
    target: &Target,
    n: usize,
    s: usize,
    m: u64,
    bytes: usize,
) -> anyhow::Result<Report> {
    if n < 2 || s == 0 || s > n {
        bail!("fanout needs at least 2 clients and 1..=clients senders");
    }
    let clients = connect_many(target, "f", n)
        .await
        .context("connecting clients")?;
    // Let the join notices settle before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = Arc::new(AtomicU64::new(0));
    let lobby: Arc<str> = Arc::from(LOBBY);
    let before = target.stats();
    let nodes_before = NodesBefore::now(target);
    let start = Instant::now();
    let mut readers = JoinSet::new();
    for (i, conn) in clients.into_iter().enumerate() {
        let is_sender = i < s;
        let other_senders = if is_sender { s - 1 } else { s } as u64;
        let plan = Plan {
            room: Arc::clone(&lobby),
            expect_lines: other_senders * m,
            send: if is_sender { m } else { 0 },
            bytes,
            pace: Pace::Window,
            record_after_ns: 0,
            node: target.node_for(i).0,
        };
        readers.spawn(run_client(conn, plan, Arc::clone(&delivered)));
    }
    let (got, kept) = collect(&mut readers).await?;
    let elapsed = start.elapsed();
    let after = target.stats();
    let cluster = nodes_before.report(target, n, s, s as u64 * m, 1.0, &got);
    drop(kept); // senders' connections stayed open until the end
    let (received, hist) = (got.lines, got.hist);
    let expected = (s as u64) * m * (n as u64 - 1);
    let (cpu_us, rss) = server_delta(before, after);
    let rate = received as f64 / elapsed.as_secs_f64();
    Ok(with_cluster(
        Report {
            json: json!({
                "scenario": "fanout", "clients": n, "senders": s, "messages": m, "bytes": bytes,
                "deliveries": received, "expected": expected, "misdelivered": got.foreign,
                "lost": expected.saturating_sub(received) + got.foreign,
                "seconds": elapsed.as_secs_f64(), "deliveries_per_sec": rate,
                "server_cpu_us_per_delivery": cpu_us.map(|c| c as f64 / received.max(1) as f64),
                "server_rss_kib": rss,
                "latency": latency_json(&hist),
            }),
        },
        cluster,
    ))
}

/// `idle`: N logged-in clients doing nothing but read what the server sends them (join
/// notices) and answer pings, as a real idle client does; the server's memory per connection.
pub async fn idle(target: &Target, n: usize) -> anyhow::Result<Report> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = target.stats();
    let clients = connect_many(target, "i", n)
        .await
        .context("connecting clients")?;
    let connected = clients.len();
    let mut tasks = JoinSet::new();
    for mut conn in clients {
        // The core answers pings.
        tasks.spawn(async move { while let Ok(Some(_)) = conn.next_event().await {} });
    }
    // Let the join notices drain and the allocator settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = target.stats();
    let per_conn = match (before, after) {
        (Some(b), Some(a)) => {
            Some((a.rss_kib.saturating_sub(b.rss_kib)) as f64 / connected.max(1) as f64)
        }
        _ => None,
    };
    tasks.abort_all();
    Ok(Report {
        json: json!({
            "scenario": "idle", "clients": n, "connected": connected, "lost": (n - connected) as u64,
            "server_rss_before_kib": before.map(|s| s.rss_kib), "server_rss_after_kib": after.map(|s| s.rss_kib),
            "server_rss_kib_per_connection": per_conn,
        }),
    })
}

/// `connect`: C concurrent connectors doing TLS + hello + quit for T seconds, after `history`
/// public lines were sent (so each login also receives them), with `online` idle clients
/// logged in meanwhile (so each login is also sent their nicks).
pub async fn connect(
    target: &Target,
    c: usize,
    seconds: f64,
    history: u64,
    online: usize,
) -> anyhow::Result<Report> {
    let mut idle = JoinSet::new();
    if online > 0 {
        for mut conn in connect_many(target, "o", online)
            .await
            .context("logging the idle clients in")?
        {
            // The core answers pings; join and leave notices are read and dropped.
            idle.spawn(async move { while let Ok(Some(_)) = conn.next_event().await {} });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if history > 0 {
        let mut conn = conn::login(&target.addr, &target.tls, "historian").await?;
        let text = "h".repeat(100);
        let (mut queued, mut answered) = (0, 0);
        while answered < history {
            // As many as the core takes; then its answers make room.
            while queued < history && conn.unanswered() < SEND_WINDOW {
                conn.public(&text)?;
                queued += 1;
            }
            match conn.next_event().await? {
                Some(Event::Sent { .. }) => answered += 1,
                Some(Event::Error { detail, .. }) => {
                    anyhow::bail!("history line refused: {detail}")
                }
                Some(Event::Closed { .. }) | None => {
                    anyhow::bail!("server closed while sending history")
                }
                Some(_) => {}
            }
        }
        conn.quit();
        conn.flush().await?;
    }
    let before = target.stats();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let failures = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for w in 0..c {
        let (addr, tls, failures) = (
            target.addr.clone(),
            Arc::clone(&target.tls),
            Arc::clone(&failures),
        );
        set.spawn(async move {
            let mut hist = histogram();
            let mut i = 0u64;
            while Instant::now() < deadline {
                // The core's configuration (a fresh identity) is made outside the timing.
                let config = conn::config(&format!("c{w}x{i}"));
                let t0 = Instant::now();
                match conn::login_with(&addr, &tls, config).await {
                    Ok(mut conn) => {
                        conn.quit();
                        let quit = conn.flush().await;
                        while let Ok(Some(_)) = conn.next_event().await {}
                        if quit.is_ok() {
                            let _ = hist.record((t0.elapsed().as_micros() as u64).max(1));
                        }
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
            hist
        });
    }
    let mut hist = histogram();
    while let Some(joined) = set.join_next().await {
        hist.add(&joined?).ok();
    }
    let elapsed = start.elapsed();
    let (cpu_us, _) = server_delta(before, target.stats());
    idle.abort_all();
    let logins = hist.len();
    Ok(Report {
        json: json!({
            "scenario": "connect", "concurrency": c, "history": history, "online": online,
            "seconds": elapsed.as_secs_f64(),
            "logins": logins, "failed": failures.load(Ordering::Relaxed), "lost": failures.load(Ordering::Relaxed),
            "logins_per_sec": logins as f64 / elapsed.as_secs_f64(),
            "server_cpu_us_per_login": cpu_us.map(|c| c as f64 / logins.max(1) as f64),
            "latency": latency_json(&hist),
        }),
    })
}

/// `latency`: an open-loop paced rate of `rate` deliveries per second to N clients (4 senders)
/// for `seconds` after `warmup` seconds.
pub async fn latency(
    target: &Target,
    n: usize,
    rate: f64,
    seconds: f64,
    warmup: f64,
) -> anyhow::Result<Report> {
    if n < 3 {
        bail!("latency needs at least 3 clients");
    }
    let s = 4.min(n - 1);
    let messages_per_sec = rate / (n as f64 - 1.0); // each message reaches n - 1 clients
    let per_sender_rate = messages_per_sec / s as f64;
    let per_sender = (per_sender_rate * (seconds + warmup)).floor().max(1.0) as u64;
    let period = Duration::from_secs_f64(1.0 / per_sender_rate);
    let clients = connect_many(target, "l", n)
        .await
        .context("connecting clients")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = Arc::new(AtomicU64::new(0));
    let lobby: Arc<str> = Arc::from(LOBBY);
    let record_after_ns = now_ns() + (warmup * 1e9) as u64;
    let mut readers = JoinSet::new();
    for (i, conn) in clients.into_iter().enumerate() {
        let is_sender = i < s;
        let others = if is_sender { s - 1 } else { s } as u64;
        let plan = Plan {
            room: Arc::clone(&lobby),
            expect_lines: others * per_sender,
            send: if is_sender { per_sender } else { 0 },
            bytes: 64,
            pace: Pace::Every(period),
            record_after_ns,
            node: target.node_for(i).0,
        };
        readers.spawn(run_client(conn, plan, Arc::clone(&delivered)));
    }
    // CPU is measured over the measured part only.
    let warmup_wait = Duration::from_secs_f64(warmup);
    tokio::time::sleep(warmup_wait).await;
    let before = target.stats();
    let nodes_before = NodesBefore::now(target);
    let measure_start = Instant::now();
    let (got, kept) = collect(&mut readers).await?;
    let measured = measure_start.elapsed();
    let after = target.stats();
    // CPU is read over the measured part: the lines sent in it are this share of all.
    let share = seconds / (seconds + warmup);
    let cluster = nodes_before.report(target, n, s, s as u64 * per_sender, share, &got);
    let (received, hist) = (got.lines, got.hist);
    drop(kept);
    let expected = s as u64 * per_sender * (n as u64 - 1);
    let (cpu_us, rss) = server_delta(before, after);
    let measured_deliveries = (rate * seconds) as u64;
    Ok(with_cluster(
        Report {
            json: json!({
                "scenario": "latency", "clients": n, "target_deliveries_per_sec": rate, "seconds": seconds, "warmup": warmup,
                "deliveries": received, "expected": expected, "misdelivered": got.foreign,
                "lost": expected.saturating_sub(received) + got.foreign,
                "measured_seconds": measured.as_secs_f64(),
                "server_cpu_us_per_delivery": cpu_us.map(|c| c as f64 / measured_deliveries.max(1) as f64),
                "server_rss_kib": rss,
                "latency": latency_json(&hist),
            }),
        },
        cluster,
    ))
}

/// `secure`: P pairs each run `/secure` and then exchange K end-to-end encrypted messages
/// through the server, using the full client library.
pub async fn secure(target: &Target, pairs: usize, k: u64) -> anyhow::Result<Report> {
    use mm_client::{connect as client_connect, ConnectOptions, Event, Trust};
    use mm_common::e2e::E2eEvent;
    let options = |nick: String| {
        ConnectOptions::new(target.addr.clone(), nick, Trust::Roots(target.ca.clone()))
    };
    let mut conns = Vec::new();
    for p in 0..pairs {
        let a = client_connect(&options(format!("sa{p}"))).await?;
        let b = client_connect(&options(format!("sb{p}"))).await?;
        conns.push((a, b));
    }
    let before = target.stats();
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (p, ((a, mut a_events, _), (b, mut b_events, _))) in conns.into_iter().enumerate() {
        set.spawn(async move {
            let t0 = Instant::now();
            // Protocol 6: a's session starts from b's prekeys (fetched from the directory); b's
            // comes up with the first message, so only a's readiness is waited for here. b
            // publishes its keys right after its login: a fetch before that finds none, and is
            // asked again.
            loop {
                a.secure(&format!("sb{p}")).await?;
                let up = loop {
                    match tokio::time::timeout(DELIVERY_DEADLINE, a_events.next()).await {
                        Ok(Some(Event::Secure(E2eEvent::Ready { .. }))) => break true,
                        Ok(Some(Event::Secure(E2eEvent::Failed {
                            failure: mm_common::e2e::Failure::NoKeys,
                            ..
                        }))) => break false,
                        Ok(Some(Event::Secure(E2eEvent::Failed { failure, .. }))) => {
                            bail!("no session: {failure}")
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => bail!("gave up waiting for the session"),
                    }
                };
                if up {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let handshake = t0.elapsed();
            let t1 = Instant::now();
            let sender = {
                let a = a.clone();
                let to = format!("sb{p}");
                tokio::spawn(async move {
                    for i in 0..k {
                        a.private(&to, &format!("secret {i}")).await?;
                    }
                    anyhow::Ok(())
                })
            };
            let mut got = 0u64;
            while got < k {
                match tokio::time::timeout(DELIVERY_DEADLINE, b_events.next()).await {
                    Ok(Some(Event::Secure(E2eEvent::Message { .. }))) => got += 1,
                    Ok(Some(Event::Secure(E2eEvent::Failed { failure, .. }))) => {
                        bail!("session failed: {failure}")
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            sender.await??;
            drop(b);
            anyhow::Ok((handshake, t1.elapsed(), got))
        });
    }
    let (mut handshakes, mut received, mut message_time) = (Vec::new(), 0u64, Duration::ZERO);
    while let Some(joined) = set.join_next().await {
        let (hs, mt, got) = joined??;
        handshakes.push(hs);
        received += got;
        message_time = message_time.max(mt);
    }
    let total = start.elapsed();
    let (cpu_us, _) = server_delta(before, target.stats());
    handshakes.sort();
    let hs_phase = handshakes.last().copied().unwrap_or_default();
    let expected = pairs as u64 * k;
    Ok(Report {
        json: json!({
            "scenario": "secure", "pairs": pairs, "messages_per_pair": k,
            "handshakes_per_sec": pairs as f64 / hs_phase.as_secs_f64().max(1e-9),
            "handshake_p50_ms": handshakes.get(handshakes.len() / 2).map(|d| d.as_secs_f64() * 1e3),
            "messages": received, "expected": expected, "lost": expected.saturating_sub(received),
            "messages_per_sec": received as f64 / message_time.as_secs_f64().max(1e-9),
            "seconds": total.as_secs_f64(),
            "server_cpu_us_per_message": cpu_us.map(|c| c as f64 / (received + 3 * pairs as u64).max(1) as f64),
        }),
    })
}

/// `store`: the SQLite store alone. Appends `lines` public lines of `bytes` bytes as fast as it
/// accepts them (retrying when it says busy) and waits until the last is committed.
pub async fn store(lines: u64, bytes: usize) -> anyhow::Result<Report> {
    use mm_server::clock::{Clock, SystemClock};
    use mm_server::store::sqlite::SqliteStore;
    use mm_server::store::{Line, Options, Store, StoreError};
    let dir = tempfile::tempdir()?;
    let (store, _) = SqliteStore::open(
        &dir.path().join("bench.db"),
        Options {
            history_len: 100,
            mailbox_len: 100,
            max_accounts: 100,
            mailbox_total: 100,
            max_unacked: 100,
        },
        std::sync::Arc::new(SystemClock),
    )?;
    let text = "x".repeat(bytes);
    let start = Instant::now();
    let mut busy = 0u64;
    for id in 1..=lines {
        loop {
            let line = Line {
                room: mm_server::hub::RoomId::LOBBY,
                action: false,
                id,
                ts: SystemClock.now_ms(),
                from: "bench".into(),
                text: text.clone(),
            };
            match store.append_public(line) {
                Ok(_durable) => break, // the close below waits for every commit
                Err(StoreError::Busy) => {
                    busy += 1;
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    store.close(lines)?.await??;
    let elapsed = start.elapsed();
    tokio::task::spawn_blocking(move || store.join()).await?;
    Ok(Report {
        json: json!({
            "scenario": "store", "lines": lines, "bytes": bytes, "seconds": elapsed.as_secs_f64(),
            "lines_per_sec": lines as f64 / elapsed.as_secs_f64(),
            "busy_refusals": busy, "lost": 0,
        }),
    })
}

/// The CPU of every node (and of the NATS server) at the start of a cluster measurement.
pub(crate) struct NodesBefore {
    nodes: Vec<Option<ProcStats>>,
    bus: Option<ProcStats>,
}

impl NodesBefore {
    pub(crate) fn now(target: &Target) -> NodesBefore {
        NodesBefore {
            nodes: target.node_stats(),
            bus: target.bus_stats(),
        }
    }

    /// The per-node part of a fan-out or latency report on a cluster (`None` for one server):
    /// for each node its clients, senders, the deliveries to its clients, its CPU over the
    /// measurement, and that CPU per delivery and per stream message (every node applies every
    /// line: `stream_messages`, the lines sent); the NATS server's CPU; and the latency of the
    /// lines that a reader got from a sender on another node.
    ///
    /// Clients and senders follow [`Target::node_for`]: client `i` on node `i % client nodes`,
    /// the senders being clients `0..senders`. `share` is the part of the lines sent (and
    /// delivered) during the CPU measurement (less than 1 when a warm-up was not measured):
    /// CPU per delivery and per stream message divide by that part.
    pub(crate) fn report(
        &self,
        target: &Target,
        clients: usize,
        senders: usize,
        stream_messages: u64,
        share: f64,
        got: &Received,
    ) -> Option<Value> {
        if !target.is_cluster() {
            return None;
        }
        let after = target.node_stats();
        let mut nodes = Vec::new();
        let mut total_cpu = 0u64;
        for (k, (b, a)) in self.nodes.iter().zip(&after).enumerate() {
            let cpu = server_delta(*b, *a).0;
            total_cpu += cpu.unwrap_or(0);
            let on = |count: usize| (0..count).filter(|&i| target.node_for(i).0 == k).count();
            let deliveries = got.per_node.get(k).copied().unwrap_or(0);
            nodes.push(json!({
                "node": k + 1,
                "clients": on(clients),
                "senders": on(senders),
                "deliveries": deliveries,
                "cpu_us": cpu,
                "cpu_us_per_delivery": cpu.filter(|_| deliveries > 0).map(|c| c as f64 / (deliveries as f64 * share)),
                "cpu_us_per_stream_message": cpu.map(|c| c as f64 / (stream_messages.max(1) as f64 * share)),
                "rss_kib": a.map(|s| s.rss_kib),
            }));
        }
        let bus_cpu = server_delta(self.bus, target.bus_stats()).0;
        Some(json!({
            "nodes": nodes,
            "stream_messages": stream_messages,
            "nodes_cpu_us": total_cpu,
            "nodes_cpu_us_per_delivery": total_cpu as f64 / (got.lines.max(1) as f64 * share),
            "nodes_cpu_us_per_stream_message": total_cpu as f64 / (stream_messages.max(1) as f64 * share),
            "nats_cpu_us": bus_cpu,
            "nats_cpu_us_per_stream_message": bus_cpu.map(|c| c as f64 / (stream_messages.max(1) as f64 * share)),
            "cross_node_deliveries": got.cross.len(),
            "cross_node_latency": latency_json(&got.cross),
        }))
    }
}

/// `report` with the cluster part (if any) under `"cluster"`.
fn with_cluster(mut report: Report, cluster: Option<Value>) -> Report {
    if let Some(cluster) = cluster {
        report.json["cluster"] = cluster;
    }
    report
}
