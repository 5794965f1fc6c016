//! The server under attack: while alice and bob chat, hundreds of hostile connections of every
//! kind. alice's lines must keep reaching bob within a bounded delay, the server's memory must
//! stay bounded, and every bad connection must end up closed. Figures are printed (run with
//! `--nocapture`) for the notes; the assertions are generous bounds against hangs and leaks,
//! not speed targets.

use mm_client::ChatLine;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mm_client::{ConnectOptions, Event, Trust};
use mm_common::frame;
use mm_common::protocol::{ClientMsg, PROTOCOL_VERSION};
use mm_tests::closed_within;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

const CONFIG: &str = r#"
[limits]
max_connections = 2000
max_connections_per_ip = 1000
handshake_timeout = "2s"
hello_timeout = "2s"
ping_interval = "1s"
idle_timeout = "3s"
write_timeout = "2s"
"#;

fn tls_config(ca: &[rustls_pki_types::CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c.clone()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A real TLS ClientHello, as bytes.
fn client_hello(config: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(
        Arc::clone(config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

async fn tls_login(
    addr: &str,
    config: &Arc<rustls::ClientConfig>,
    nick: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let hello = frame::encode(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        nick: nick.into(),
    })
    .unwrap();
    tls.write_all(&hello).await.unwrap();
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_serving_while_under_attack() {
    let server = mm_tests::ServerProcess::start(MM_SERVER, CONFIG).await;
    let ca = server.ca();
    let addr = server.addr.clone();
    let tls = tls_config(&ca);
    let rss_start = server.rss_kib();

    let options = |nick: &str| ConnectOptions::new(addr.clone(), nick, Trust::Roots(ca.clone()));
    let (alice, _alice_events, _) = mm_client::connect(&options("alice")).await.unwrap();
    let (_bob, mut bob_events, _) = mm_client::connect(&options("bob")).await.unwrap();

    // The attackers. Each task returns whether the server closed its connection in time.
    let mut attacks: JoinSet<(&'static str, bool)> = JoinSet::new();
    // Every timeout involved is 2-3 s; the margin is for a loaded CI machine, where the whole
    // suite shares two cores. (Idle connections that stayed open were once blamed on the
    // machine's load; the cause was the listen backlog of 128, which dropped the handshakes of
    // a burst this size: see `mm_server::listener::LISTEN_BACKLOG`.)
    let limit = Duration::from_secs(30);
    for _ in 0..300 {
        let addr = addr.clone();
        attacks.spawn(async move {
            // Connects and sends nothing at all.
            let mut tcp = TcpStream::connect(&addr).await.unwrap();
            ("idle tcp", closed_within(&mut tcp, limit).await)
        });
    }
    let hello_bytes = client_hello(&tls);
    for _ in 0..50 {
        let (addr, hello) = (addr.clone(), hello_bytes.clone());
        attacks.spawn(async move {
            // Slowloris: a ClientHello one byte every 100 ms, far slower than the handshake timeout allows.
            let mut tcp = TcpStream::connect(&addr).await.unwrap();
            for byte in hello {
                if tcp.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ("slowloris", closed_within(&mut tcp, limit).await)
        });
    }
    for _ in 0..30 {
        let (addr, hello) = (addr.clone(), hello_bytes.clone());
        attacks.spawn(async move {
            // A whole ClientHello, then silence.
            let mut tcp = TcpStream::connect(&addr).await.unwrap();
            tcp.write_all(&hello).await.unwrap();
            ("hello then silence", closed_within(&mut tcp, limit).await)
        });
    }
    for i in 0..30u32 {
        let addr = addr.clone();
        attacks.spawn(async move {
            // Plain-text garbage on the TLS port.
            let mut tcp = TcpStream::connect(&addr).await.unwrap();
            let garbage: Vec<u8> = (0..4096u32)
                .map(|j| (j.wrapping_mul(31).wrapping_add(i * 7)) as u8)
                .collect();
            let _ = tcp.write_all(&garbage).await;
            ("garbage", closed_within(&mut tcp, limit).await)
        });
    }
    for i in 0..20 {
        let (addr, tls) = (addr.clone(), Arc::clone(&tls));
        attacks.spawn(async move {
            // TLS, then a 4 GB length prefix.
            let mut conn = tls_login(&addr, &tls, &format!("big{i}")).await;
            conn.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
            ("oversized length", closed_within(&mut conn, limit).await)
        });
    }
    {
        let (addr, tls) = (addr.clone(), Arc::clone(&tls));
        attacks.spawn(async move {
            // A flooder: public lines as fast as it can write them, never pacing.
            let conn = tls_login(&addr, &tls, "flooder").await;
            let line = frame::encode(&ClientMsg::Public {
                room: "#lobby".into(),
                action: false,
                text: "SPAM".repeat(100),
            })
            .unwrap();
            let (mut read, mut write) = tokio::io::split(conn);
            let writer = tokio::spawn(async move {
                for _ in 0..100_000 {
                    if write.write_all(&line).await.is_err() {
                        break;
                    }
                }
            });
            let closed = closed_within(&mut read, limit).await;
            writer.abort();
            ("flooder", closed)
        });
    }
    {
        let (addr, tls) = (addr.clone(), Arc::clone(&tls));
        attacks.spawn(async move {
            // Logs in, then never reads a byte (nor answers pings): dropped at the idle timeout.
            let conn = tls_login(&addr, &tls, "deaf").await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            // Only now look: what the server buffered, then the end of the stream.
            let mut tcp = conn.into_inner().0;
            let closed = closed_within(&mut tcp, limit).await;
            ("never reads", closed)
        });
    }

    // Meanwhile alice talks to bob, paced like a person typing fast; bob measures delays.
    let mut delays = Vec::new();
    let mut peak_rss = rss_start;
    let chat_started = Instant::now();
    for i in 0..30 {
        let sent = Instant::now();
        alice.public(&format!("line {i}")).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), bob_events.next()).await {
                Ok(Some(Event::Public(ChatLine { from, text, .. }))) if from == "alice" => {
                    assert_eq!(text, format!("line {i}"));
                    break;
                }
                Ok(Some(Event::Closed { error, .. })) => {
                    panic!("bob lost the connection: {error:?}")
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("line {i} did not arrive within 10 s"),
            }
        }
        delays.push(sent.elapsed());
        peak_rss = peak_rss.max(server.rss_kib());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let chat_time = chat_started.elapsed();

    // A newcomer can still log in during the attack.
    let (_carol, _, welcome) = mm_client::connect(&options("carol")).await.unwrap();
    assert!(welcome.online.contains(&"alice".to_string()));

    let mut outcomes: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    while let Some(result) = attacks.join_next().await {
        let (kind, closed) = result.unwrap();
        let entry = outcomes.entry(kind).or_default();
        entry.0 += 1;
        if closed {
            entry.1 += 1;
        }
        peak_rss = peak_rss.max(server.rss_kib());
    }
    let rss_end = server.rss_kib();

    delays.sort();
    let p50 = delays[delays.len() / 2];
    let max = delays[delays.len() - 1];
    eprintln!("attack connections: {outcomes:?} (kind: (opened, closed by the server))");
    eprintln!(
        "alice->bob during the attack: {} lines in {:.1?}, delay p50 {p50:.1?}, max {max:.1?}",
        delays.len(),
        chat_time
    );
    eprintln!("server RSS: start {rss_start} KiB, peak {peak_rss} KiB, end {rss_end} KiB");

    for (kind, (opened, closed)) in &outcomes {
        assert_eq!(
            opened, closed,
            "{kind}: the server must close every bad connection"
        );
    }
    assert!(
        max < Duration::from_secs(5),
        "a line took {max:?} to arrive"
    );
    assert!(peak_rss < 256 * 1024, "server RSS peaked at {peak_rss} KiB");
    let (status, _) = server.stop().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_backs_off_and_recovers() {
    // 64 descriptors: a few for the runtime and the listener, the rest for connections.
    let mut server = mm_tests::ServerProcess::start_limited(MM_SERVER, CONFIG, Some(64)).await;
    let ca = server.ca();
    let addr = server.addr.clone();
    let options = |nick: &str| ConnectOptions::new(addr.clone(), nick, Trust::Roots(ca.clone()));
    let (alice, _alice_events, _) = mm_client::connect(&options("alice")).await.unwrap();
    let (_bob, mut bob_events, _) = mm_client::connect(&options("bob")).await.unwrap();

    // Far more connections than descriptors: accept fails with EMFILE until some close.
    let mut held = Vec::new();
    for _ in 0..150 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    let ticks_before = server.cpu_ticks();
    server.read_log(Duration::from_secs(2)).await;
    let ticks = server.cpu_ticks() - ticks_before;
    let log = server.log.join("\n");
    assert!(
        log.contains("accept failed"),
        "EMFILE should have been hit and logged:\n{log}"
    );
    // Backing off, not spinning: well under one core-second of CPU in those 2 s (100 ticks/s).
    assert!(
        ticks < 50,
        "server used {ticks} ticks while out of descriptors"
    );

    // Users already connected keep chatting meanwhile.
    alice.public("still here").await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), bob_events.next())
            .await
            .unwrap()
        {
            Some(Event::Public(ChatLine { text, .. })) => {
                assert_eq!(text, "still here");
                break;
            }
            Some(_) => {}
            None => panic!("bob's connection ended"),
        }
    }
    // Once the flood is gone, newcomers get in again.
    drop(held);
    let mut connected = None;
    for _ in 0..50 {
        match mm_client::connect(&options("carol")).await {
            Ok(c) => {
                connected = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(connected.is_some(), "the server did not recover");
    eprintln!("EMFILE: {ticks} CPU ticks in 2 s while out of descriptors; recovered");
    let (status, _) = server.stop().await;
    assert!(status.success());
}
