//! The room scenarios (protocol 5): the join storm (`join`: thousands of clients log in and
//! join one room at once) and fan-out in many rooms at once (`rooms`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use mm_client::{Event, RoomEvent};
use mm_common::protocol::room_key;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::conn::{self, BenchConn};
use crate::scenarios::{
    collect, connect_many, latency_json, run_client, server_delta, Pace, Plan, Report,
    CONNECT_PARALLEL, DELIVERY_DEADLINE, SEND_WINDOW,
};
use crate::server::{own_stats, ProcStats, Target};

/// The room of the join storm.
const STORM: &str = "#storm";

/// What a join's answer brought.
#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    /// `Entered` for the room came.
    entered: bool,
    /// Its first page of members came (after `Entered`), with this many members.
    names: Option<usize>,
}

impl Entry {
    fn done(&self) -> bool {
        self.entered && self.names.is_some()
    }
}

/// Reads `conn`'s events until the answer to its join of `room` is in: `Entered`, then the
/// first page of members. Other events (join notices, lines) are passed over. A room error, a
/// close or [`DELIVERY_DEADLINE`] ends it early: the entry says what came.
async fn await_entry(conn: &mut BenchConn, room: &str) -> anyhow::Result<Entry> {
    let key = room_key(room);
    let mut entry = Entry::default();
    let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
    while !entry.done() {
        let event = match tokio::time::timeout_at(deadline, conn.next_event()).await {
            Ok(event) => event?,
            Err(_) => bail!("no answer to the join of {room} in time"),
        };
        match event {
            Some(Event::Room(RoomEvent::Entered { room: info, .. }))
                if room_key(&info.name) == key =>
            {
                entry.entered = true;
            }
            Some(Event::Room(RoomEvent::Names {
                room: r, members, ..
            })) if entry.entered && room_key(&r) == key => {
                entry.names = Some(members.len());
            }
            Some(Event::Room(RoomEvent::Error {
                room: r, detail, ..
            })) if room_key(&r) == key => {
                bail!("join of {room} refused: {detail}")
            }
            Some(Event::Closed { error, .. }) => {
                bail!("closed while joining {room}: {error:?}")
            }
            None => bail!("closed while joining {room}"),
            Some(_) => {}
        }
    }
    Ok(entry)
}

/// Joins `room` and waits for the answer ([`await_entry`]).
async fn join(conn: &mut BenchConn, room: &str) -> anyhow::Result<Entry> {
    conn.join(room)
        .map_err(|e| anyhow::anyhow!("join {room}: {e:?}"))?;
    await_entry(conn, room).await
}

/// Sends `lines` lines of 100 bytes to `room` (which `conn` is in), waiting for every answer.
async fn send_lines(conn: &mut BenchConn, room: &str, lines: u64) -> anyhow::Result<()> {
    let text = "h".repeat(100);
    let (mut queued, mut answered) = (0, 0);
    while answered < lines {
        while queued < lines && conn.unanswered() < SEND_WINDOW {
            conn.say(room, &text)
                .map_err(|e| anyhow::anyhow!("line to {room}: {e:?}"))?;
            queued += 1;
        }
        match conn.next_event().await? {
            Some(Event::Sent { .. }) => answered += 1,
            Some(Event::Error { detail, .. }) => bail!("line to {room} refused: {detail}"),
            Some(Event::Closed { .. }) | None => bail!("server closed while sending to {room}"),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Logs each of `nicks` in once and quits (registers the accounts), `CONNECT_PARALLEL` at once.
async fn register(target: &Target, nicks: &[String]) -> anyhow::Result<()> {
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLEL));
    let mut set = JoinSet::new();
    for nick in nicks {
        let (gate, addr, tls, nick) = (
            Arc::clone(&gate),
            target.addr.clone(),
            Arc::clone(&target.tls),
            nick.clone(),
        );
        set.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut conn = conn::login(&addr, &tls, &nick).await?;
            conn.quit();
            conn.flush().await?;
            while let Some(_event) = conn.next_event().await? {}
            anyhow::Ok(())
        });
    }
    while let Some(done) = set.join_next().await {
        done??;
    }
    Ok(())
}

/// One storm client's story, in seconds since the storm started.
struct Story {
    /// Its login was done (TLS, hello, welcome).
    logged_in: f64,
    /// Its join was sent (= `logged_in`, unless the joins wait for every login).
    join_sent: f64,
    /// Its `Entered` and first page of members came.
    done: f64,
    entry: Entry,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn percentiles(mut values: Vec<f64>) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize] * 1e3;
    json!({ "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0) })
}

fn cpu_s(before: Option<ProcStats>, after: Option<ProcStats>) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) => Some(a.cpu_us.saturating_sub(b.cpu_us) as f64 / 1e6),
        _ => None,
    }
}

/// `join`: the join storm. `n` accounts are registered beforehand (each logged in once); a
/// room [`STORM`] is created and given `history` lines; then, timed, the `n` clients connect
/// (`parallel` connection attempts in flight at once), log in and each joins [`STORM`], until
/// the last one has its `Entered` and its first page of members. With `phased`, the joins wait
/// until every client is logged in, so the two phases are timed (and their server CPU counted)
/// apart.
pub async fn join_storm(
    target: &Target,
    n: usize,
    history: u64,
    parallel: usize,
    phased: bool,
) -> anyhow::Result<Report> {
    if n == 0 || parallel == 0 {
        bail!("join needs at least 1 client and 1 connection in flight");
    }
    let nicks: Vec<String> = (0..n).map(|i| format!("j{i}")).collect();
    let setup = Instant::now();
    register(target, &nicks)
        .await
        .context("registering the accounts")?;
    // The room, its owner (online through the storm, not reading) and its history.
    let mut owner = conn::login(&target.addr, &target.tls, "jowner").await?;
    join(&mut owner, STORM).await.context("creating the room")?;
    send_lines(&mut owner, STORM, history)
        .await
        .context("the room's history")?;
    let setup_s = secs(setup.elapsed());
    // Made outside the timing, as the `connect` scenario does.
    let configs: Vec<_> = nicks.iter().map(|nick| conn::config(nick)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let gate = Arc::new(Semaphore::new(parallel));
    // With `phased`, the joins start when every login is done.
    let go = Arc::new(Semaphore::new(0));
    // Logins done or failed.
    let tried = Arc::new(AtomicUsize::new(0));
    let before = target.stats();
    let own_before = own_stats();
    let start = Instant::now();
    let mut set = JoinSet::new();
    for config in configs {
        let (gate, go, tried, addr, tls) = (
            Arc::clone(&gate),
            Arc::clone(&go),
            Arc::clone(&tried),
            target.addr.clone(),
            Arc::clone(&target.tls),
        );
        set.spawn(async move {
            let permit = gate.acquire_owned().await?;
            let login = conn::login_with(&addr, &tls, config).await;
            drop(permit);
            tried.fetch_add(1, Ordering::Release);
            let mut conn = login?;
            let logged_in = secs(start.elapsed());
            if phased {
                go.acquire().await?.forget();
            }
            let join_sent = secs(start.elapsed());
            let entry = join(&mut conn, STORM).await?;
            let done = secs(start.elapsed());
            // The connection stays open (not read) until the end of the run.
            anyhow::Ok((
                conn,
                Story {
                    logged_in,
                    join_sent,
                    done,
                    entry,
                },
            ))
        });
    }
    let mut stories = Vec::with_capacity(n);
    let mut conns = Vec::with_capacity(n);
    let mut errors: Vec<String> = Vec::new();
    let mut mid = None;
    if phased {
        // Every login first (or its failure): the tasks wait on `go` once logged in.
        let deadline = Instant::now() + DELIVERY_DEADLINE;
        while tried.load(Ordering::Acquire) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        mid = Some((secs(start.elapsed()), target.stats(), own_stats()));
        go.add_permits(n);
    }
    while let Some(joined) = set.join_next().await {
        match joined? {
            Ok((conn, story)) => {
                conns.push(conn);
                stories.push(story);
            }
            Err(e) => {
                if errors.len() < 5 {
                    errors.push(format!("{e:#}"));
                }
            }
        }
    }
    let elapsed = secs(start.elapsed());
    let after = target.stats();
    let own_after = own_stats();
    drop(conns);
    drop(owner);

    let entered = stories.iter().filter(|s| s.entry.entered).count();
    let named = stories.iter().filter(|s| s.entry.names.is_some()).count();
    let joined = stories.iter().filter(|s| s.entry.done()).count();
    let last_login = stories.iter().map(|s| s.logged_in).fold(0.0, f64::max);
    let server_cpu = cpu_s(before, after);
    let mut report = json!({
        "scenario": "join", "clients": n, "history": history, "parallel": parallel,
        "phased": phased, "setup_seconds": setup_s,
        "joined": joined, "entered": entered, "names": named, "lost": (n - joined) as u64,
        "seconds": elapsed, "joins_per_sec": joined as f64 / elapsed,
        "last_login_at_seconds": last_login,
        "login_latency": percentiles(stories.iter().map(|s| s.logged_in).collect()),
        "join_latency": percentiles(stories.iter().map(|s| s.done - s.join_sent).collect()),
        "names_on_join": stories.iter().filter_map(|s| s.entry.names).max(),
        "server_cpu_seconds": server_cpu,
        "server_cores_busy": server_cpu.map(|c| c / elapsed),
        "server_cpu_us_per_client": server_cpu.map(|c| c * 1e6 / n as f64),
        "bench_cpu_seconds": cpu_s(own_before, own_after),
        "server_peak_rss_kib": after.map(|s| s.peak_rss_kib),
        "server_rss_kib": after.map(|s| s.rss_kib),
    });
    if let Some((at, server_mid, own_mid)) = mid {
        let fields = json!({
            "login_phase_seconds": at,
            "login_phase_server_cpu_seconds": cpu_s(before, server_mid),
            "login_phase_bench_cpu_seconds": cpu_s(own_before, own_mid),
            "join_phase_seconds": elapsed - at,
            "join_phase_server_cpu_seconds": cpu_s(server_mid, after),
            "join_phase_bench_cpu_seconds": cpu_s(own_mid, own_after),
        });
        if let (Some(map), Value::Object(more)) = (report.as_object_mut(), fields) {
            map.extend(more);
        }
    }
    if !errors.is_empty() {
        eprintln!("mm-bench: join: {} clients failed, e.g.:", n - joined);
        for e in &errors {
            eprintln!("  {e}");
        }
    }
    Ok(Report { json: report })
}

/// `rooms`: `r` rooms of `m` members each (every client in one room), `s` senders in each
/// room each sending `k` lines of `bytes` bytes as fast as the server acknowledges them (at
/// most 512 unacknowledged per sender). Every member must receive every line of its room
/// sent by the others, and nothing of any other room.
pub async fn rooms(
    target: &Target,
    r: usize,
    m: usize,
    s: usize,
    k: u64,
    bytes: usize,
) -> anyhow::Result<Report> {
    if r == 0 || m < 2 || s == 0 || s > m {
        bail!("rooms needs at least 1 room of 2 members and 1..=members senders");
    }
    let n = r * m;
    let clients = connect_many(target, "r", n)
        .await
        .context("connecting clients")?;
    let names: Vec<Arc<str>> = (0..r).map(|i| Arc::from(format!("#r{i}"))).collect();
    // Joins, untimed: each room's first member creates it, then the others join; then every
    // member joins again, which (answered in hub order) makes sure each has read every join
    // notice before the measurement.
    let mut clients: Vec<Option<BenchConn>> = clients.into_iter().map(Some).collect();
    for round in 0..3 {
        let mut set = JoinSet::new();
        for (i, slot) in clients.iter_mut().enumerate() {
            let first = i % m == 0;
            if (round == 0) != first && round != 2 {
                continue;
            }
            let Some(mut conn) = slot.take() else {
                continue;
            };
            let room = Arc::clone(&names[i / m]);
            set.spawn(async move {
                let entry = join(&mut conn, &room).await;
                (i, conn, entry)
            });
        }
        while let Some(joined) = set.join_next().await {
            let (i, conn, entry) = joined?;
            entry.with_context(|| format!("member {i} joining"))?;
            clients[i] = Some(conn);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = Arc::new(AtomicU64::new(0));
    let before = target.stats();
    let start = Instant::now();
    let mut readers = JoinSet::new();
    for (i, conn) in clients.into_iter().enumerate() {
        let Some(conn) = conn else { continue };
        let is_sender = i % m < s;
        let other_senders = if is_sender { s - 1 } else { s } as u64;
        let plan = Plan {
            room: Arc::clone(&names[i / m]),
            expect_lines: other_senders * k,
            send: if is_sender { k } else { 0 },
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
    drop(kept);
    let expected = (r * s) as u64 * k * (m as u64 - 1);
    let (cpu_us, rss) = server_delta(before, after);
    let (received, hist) = (got.lines, got.hist);
    Ok(Report {
        json: json!({
            "scenario": "rooms", "rooms": r, "members": m, "senders": s, "messages": k,
            "bytes": bytes, "clients": n,
            "deliveries": received, "expected": expected, "misdelivered": got.foreign,
            "lost": expected.saturating_sub(received) + got.foreign,
            "seconds": elapsed.as_secs_f64(),
            "deliveries_per_sec": received as f64 / elapsed.as_secs_f64(),
            "server_cpu_us_per_delivery": cpu_us.map(|c| c as f64 / received.max(1) as f64),
            "server_rss_kib": rss,
            "latency": latency_json(&hist),
        }),
    })
}
