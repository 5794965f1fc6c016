//! Operating a server: the admin listener (`/metrics`, `/healthz`, `/readyz`) of a real server,
//! scraped after a scripted session, and PROXY protocol v2 from trusted load balancers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mm_certs::ClientIdentity;
use mm_client::{ChatLine, ConnectError, Event, RoomEvent};
use mm_common::protocol::{ClientMsg, ErrorCode, ServerMsg};
use mm_server::Limits;
use mm_tests::{identity_for, RawTls, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` on the admin listener: (status code, body).
pub(crate) async fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = request(admin, "GET", path).await;
    (status, body)
}

/// `METHOD path` on the admin listener: (status code, head, body).
async fn request(admin: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut tcp = TcpStream::connect(admin).await.unwrap();
    tcp.write_all(format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("the admin listener answers")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn head_requests_are_answered_as_get_without_the_body_and_other_methods_refused() {
    let server = TestServer::start_operated(Limits::default(), &[]).await;
    let admin = server.admin.unwrap();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, head, body) = request(admin, "HEAD", path).await;
        assert_eq!((status, body.as_str()), (200, ""), "HEAD {path}: {head}");
        let (_, got) = get(admin, path).await;
        // The length of the body GET would send (the metrics' text changes between two
        // scrapes, so only its presence there).
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("HEAD {path} names a length: {head}"));
        if path != "/metrics" {
            assert_eq!(length, got.len(), "HEAD {path}");
        }
    }
    assert_eq!(request(admin, "HEAD", "/nothing").await.0, 404);
    for method in ["POST", "DELETE", "OPTIONS"] {
        let (status, _, body) = request(admin, method, "/healthz").await;
        assert_eq!(
            (status, body.as_str()),
            (405, "GET or HEAD only\n"),
            "{method}"
        );
    }
}

/// The value of the sample `series` (name with labels, exactly as exposed) in `text`.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrapes until every `(series, value)` holds (the counts of connections that are closing
/// settle a moment later); fails naming what did not.
pub(crate) async fn scrape_until(admin: SocketAddr, want: &[(&str, f64)]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, text) = get(admin, "/metrics").await;
        assert_eq!(status, 200, "{text}");
        let wrong: Vec<String> = want
            .iter()
            .filter(|(series, value)| sample(&text, series) != Some(*value))
            .map(|(series, value)| format!("{series}: {:?}, not {value}", sample(&text, series)))
            .collect();
        if wrong.is_empty() {
            return text;
        }
        assert!(Instant::now() < deadline, "{}\n\n{text}", wrong.join("\n"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_session_shows_exactly_its_counts_and_no_names_or_addresses() {
    let limits = Limits {
        rate_burst: 4,
        rate_per_sec: 1,
        ..Limits::default()
    };
    let server = TestServer::start_operated(limits, &[]).await;
    let admin = server.admin.unwrap();
    // Before anyone came: every series is there, at zero.
    scrape_until(
        admin,
        &[
            ("mm_logins_total{outcome=\"registered\"}", 0.0),
            ("mm_messages_accepted_total{kind=\"relay\"}", 0.0),
            ("mm_connections_open{transport=\"websocket\"}", 0.0),
            ("mm_online_users", 0.0),
        ],
    )
    .await;

    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    // Bob comes back: a known login.
    bob.client.quit().await;
    bob.wait_for("close", |e| matches!(e, Event::Closed { .. }))
        .await;
    let mut bob = server.client("bob").await;
    // Someone else's certificate asks for alice's nick: refused.
    let mut thief = server.options("alice");
    thief.certificate = Some(ClientIdentity::generate().unwrap());
    assert!(matches!(
        mm_client::connect(&thief).await,
        Err(ConnectError::Refused { .. })
    ));

    // Two lines in the lobby, one in a room, one private line (mm keeps to the rate).
    alice.chat_to(&mut bob, "hello lobby").await;
    alice.chat_to(&mut bob, "still here").await;
    alice
        .client
        .room_command(&ClientMsg::Join {
            room: "#zebra".into(),
        })
        .await
        .unwrap();
    alice
        .wait_for("entered #zebra", |e| {
            matches!(e, Event::Room(RoomEvent::Entered { .. }))
        })
        .await;
    alice
        .client
        .say("#zebra", "in the room", false)
        .await
        .unwrap();
    assert!(matches!(alice.next_answer().await, Event::Sent { .. }));
    // A plaintext private line (an end-to-end one is a relay).
    alice.client.insecure("bob").await.unwrap();
    alice.client.private("bob", "just you").await.unwrap();
    assert!(matches!(alice.next_answer().await, Event::Sent { .. }));
    match bob.next_line().await {
        Event::Private(ChatLine { text, .. }) => assert_eq!(text, "just you"),
        other => panic!("{other:?}"),
    }
    // A raw client floods the lobby (mm paces itself to the announced rate; this does not):
    // the burst goes through, the rest is refused, unless a token refilled meanwhile (one a
    // second).
    let mut flood = RawTls::login(&server, "dave").await;
    for i in 0..10 {
        flood
            .send(&ClientMsg::Public {
                room: "#lobby".into(),
                text: format!("burst {i}"),
                action: false,
            })
            .await;
    }
    let mut sent = 0u32;
    let mut limited = 0u32;
    while sent + limited < 10 {
        match flood.read().await {
            Some(ServerMsg::Sent { .. }) => sent += 1,
            Some(ServerMsg::Error { code, .. }) if code == ErrorCode::RATE_LIMITED => limited += 1,
            Some(_) => {}
            None => panic!("closed"),
        }
    }
    assert!(limited >= 1, "the burst hit the rate limit");

    let text = scrape_until(
        admin,
        &[
            ("mm_logins_total{outcome=\"registered\"}", 3.0),
            ("mm_logins_total{outcome=\"known\"}", 1.0),
            ("mm_logins_total{outcome=\"refused\"}", 1.0),
            ("mm_connections_accepted_total{transport=\"tls\"}", 5.0),
            (
                "mm_connections_accepted_total{transport=\"websocket\"}",
                0.0,
            ),
            ("mm_connections_open{transport=\"tls\"}", 3.0),
            (
                "mm_messages_accepted_total{kind=\"public\"}",
                2.0 + f64::from(sent),
            ),
            ("mm_messages_accepted_total{kind=\"room\"}", 1.0),
            ("mm_messages_accepted_total{kind=\"private\"}", 1.0),
            ("mm_messages_accepted_total{kind=\"relay\"}", 0.0),
            ("mm_rate_limited_total", f64::from(limited)),
            ("mm_online_users", 3.0),
            ("mm_rooms", 1.0),
            ("mm_outbound_queue_drops_total", 0.0),
            ("mm_slow_consumer_disconnects_total", 0.0),
            ("mm_store_backlog", 0.0),
        ],
    )
    .await;
    for series in [
        "mm_deliveries_total",
        "mm_received_bytes_total",
        "mm_sent_bytes_total",
        "mm_store_commit_seconds_count",
    ] {
        assert!(sample(&text, series).unwrap() > 0.0, "{series}\n{text}");
    }
    // Labels never carry a nick, a room or an address; nor does any other part of the text.
    for secret in [
        "alice",
        "bob",
        "dave",
        "#zebra",
        "zebra",
        "lobby",
        "127.0.0.1",
        "hello",
    ] {
        assert!(!text.contains(secret), "{secret:?} in the scrape:\n{text}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_ok_and_readiness_follows_the_store() {
    let server = TestServer::start_operated(Limits::default(), &[]).await;
    let admin = server.admin.unwrap();
    assert_eq!(get(admin, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz").await, (200, "ready\n".into()));
    assert_eq!(get(admin, "/nothing").await.0, 404);

    // Another process takes the store's write lock (as the sqlite3 shell would): commits fail,
    // and the store refuses writes as busy.
    let db = server.data.path().join("mm-server.db");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: "), "{body}");
    // Still alive meanwhile.
    assert_eq!(get(admin, "/healthz").await.0, 200);
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(admin, "/readyz").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_admin_requests_are_bounded() {
    use mm_server::admin::{MAX_CONNECTIONS, MAX_HEAD, REQUEST_TIMEOUT};
    let server = TestServer::start_operated(Limits::default(), &[]).await;
    let admin = server.admin.unwrap();

    // A head that never ends: refused once it reaches the bound, not read further.
    let mut huge = TcpStream::connect(admin).await.unwrap();
    let head = format!("GET /metrics HTTP/1.1\r\nX-Long: {}", "a".repeat(MAX_HEAD));
    let _ = huge.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, huge.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

    // Slowloris: part of a head, then nothing; dropped after the request timeout.
    let started = Instant::now();
    let mut slow = TcpStream::connect(admin).await.unwrap();
    slow.write_all(b"GET /metr").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(
        REQUEST_TIMEOUT + Duration::from_secs(3),
        slow.read_to_end(&mut rest),
    )
    .await
    .expect("a slow request is dropped")
    .unwrap();
    assert!(rest.is_empty());
    assert!(started.elapsed() >= REQUEST_TIMEOUT - Duration::from_millis(100));

    // As many idle connections as are served at once; the next one is closed at once.
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let mut c = TcpStream::connect(admin).await.unwrap();
        c.write_all(b"G").await.unwrap();
        idle.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(admin).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), extra.read_to_end(&mut got))
        .await
        .expect("a connection over the bound is closed at once")
        .unwrap();
    assert!(got.is_empty());
    // Once they are gone, it answers again.
    drop(idle);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = TcpStream::connect(admin).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(WAIT, c.read_to_end(&mut answer)).await;
        if answer.starts_with(b"HTTP/1.1 200 ") {
            break;
        }
        assert!(Instant::now() < deadline, "the admin listener stays full");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

/// A TCP connection to `server` that first sends `header`.
async fn with_header(server: &TestServer, header: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    tcp
}

/// A proxied native login claiming `client` as the address: whether it got in.
async fn proxied_login(server: &TestServer, client: &str, nick: &str) -> Option<RawTls> {
    let header = mm_server::proxy::header_v2(client.parse().unwrap(), server.addr).unwrap();
    let tcp = with_header(server, &header).await;
    let mut raw = RawTls::over(server, tcp, Some(&identity_for(nick)))
        .await
        .ok()?;
    raw.hello(nick).await.then_some(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_a_trusted_proxy_names_is_the_one_limited() {
    let limits = Limits {
        max_connections_per_ip: 1,
        ..Limits::default()
    };
    // Every connection really comes from 127.0.0.1; the header says who the client is.
    let server = TestServer::start_operated(limits, &["127.0.0.0/8"]).await;
    let first = proxied_login(&server, "203.0.113.7:40000", "pa").await;
    assert!(first.is_some(), "the first client of 203.0.113.7 logs in");
    let other = proxied_login(&server, "203.0.113.8:40000", "pb").await;
    assert!(other.is_some(), "another address is not limited with it");
    let same = proxied_login(&server, "203.0.113.7:40001", "pc").await;
    assert!(
        same.is_none(),
        "a second client of 203.0.113.7 is over its cap of one"
    );
    drop(first);
    // Its place frees once the first has gone.
    let deadline = Instant::now() + WAIT;
    while proxied_login(&server, "203.0.113.7:40002", "pd")
        .await
        .is_none()
    {
        assert!(Instant::now() < deadline, "203.0.113.7 stays at its cap");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Without a header, a trusted peer is closed (no TLS at all).
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    assert!(RawTls::over(&server, tcp, None).await.is_err());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_from_an_untrusted_peer_is_never_honoured() {
    let server = TestServer::start_operated(Limits::default(), &["10.0.0.0/8"]).await;
    let header =
        mm_server::proxy::header_v2("203.0.113.7:40000".parse().unwrap(), server.addr).unwrap();
    let tcp = with_header(&server, &header).await;
    // The header is taken for the start of TLS, which it is not.
    assert!(RawTls::over(&server, tcp, Some(&identity_for("pe")))
        .await
        .is_err());
    // A client without a header is served as usual.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut raw = RawTls::over(&server, tcp, Some(&identity_for("pf")))
        .await
        .unwrap();
    assert!(raw.hello("pf").await);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_headers_close_only_their_own_connection() {
    use mm_server::proxy::MAX_HEADER_BODY;
    let limits = Limits {
        handshake_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = TestServer::start_operated(limits, &["127.0.0.1"]).await;
    let admin = server.admin.unwrap();
    let good = mm_server::proxy::header_v2("198.51.100.1:1".parse().unwrap(), server.addr).unwrap();
    let mut oversized = good.clone();
    let len = u16::try_from(MAX_HEADER_BODY + 1).unwrap().to_be_bytes();
    oversized[14..16].copy_from_slice(&len);
    let mut wrong_version = good.clone();
    wrong_version[12] = 0x11;
    let cases: [(&str, Vec<u8>); 5] = [
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "a v1 text header",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2\r\n".to_vec(),
        ),
        ("a truncated header", good[..20].to_vec()),
        ("an oversized header", oversized[..16].to_vec()),
        ("a wrong version", wrong_version),
    ];
    // One good client stays connected throughout.
    let mut kept = proxied_login(&server, "198.51.100.2:1", "pg")
        .await
        .unwrap();
    for (what, bytes) in &cases {
        let mut tcp = with_header(&server, bytes).await;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "{what}: not closed ({read:?}, {} bytes)",
            rest.len()
        );
    }
    kept.send(&ClientMsg::Ping { token: 7 }).await;
    assert!(matches!(
        kept.read().await,
        Some(mm_common::protocol::ServerMsg::Pong { token: 7 })
    ));
    assert!(proxied_login(&server, "198.51.100.3:1", "ph")
        .await
        .is_some());
    scrape_until(
        admin,
        &[("mm_proxy_header_refused_total", cases.len() as f64)],
    )
    .await;
    server.shutdown().await;
}

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

/// Runs `mm-server --bind 127.0.0.1:0 --data <temp>` with `args` expecting it to refuse to
/// start; what it said.
async fn refused_with(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(MM_SERVER)
            .args(["--bind", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .args(args)
            .envs(mm_tests::test_store_env(data.path()))
            .output(),
    )
    .await
    .expect("mm-server started (or hung) where it should have refused to")
    .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_address_is_logged_and_one_that_cannot_be_used_is_refused_naming_the_flag() {
    let data = tempfile::tempdir().unwrap();
    let args: Vec<std::ffi::OsString> = vec![
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--admin".into(),
        "127.0.0.1:0".into(),
        "--data".into(),
        data.path().into(),
    ];
    let server = mm_tests::ServerProcess::start_with_args(MM_SERVER, &args, data).await;
    let line = server
        .log
        .iter()
        .find(|l| l.contains("metrics at http://"))
        .unwrap_or_else(|| panic!("{}", server.log.join("\n")));
    let at: SocketAddr = line
        .split("metrics at http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(get(at, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(at, "/readyz").await.0, 200);

    // The same address for a second server: refused, saying which flag to change.
    let said = refused_with(&["--admin", &at.to_string()]).await;
    assert!(
        said.contains("--admin") && said.contains("already in use"),
        "{said}"
    );
    server.stop().await;
    let said = refused_with(&["--admin", "localhost"]).await;
    assert!(said.contains("admin") && said.contains("off"), "{said}");
    let said = refused_with(&["--proxy-from", "10.0.0.0/99"]).await;
    assert!(said.contains("10.0.0.0/99"), "{said}");
}
