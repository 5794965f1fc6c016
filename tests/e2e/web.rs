//! The web transport: HTTPS and WebSocket on the native port (PROTOCOL.md, "The web"), chosen
//! by ALPN at the TLS handshake. A browser-like client here: TLS with ALPN `http/1.1`, no client
//! certificate, trusting the test CA; raw HTTP/1.1 heads; tokio-tungstenite as the WebSocket
//! client (or raw frames, to misbehave).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mm_common::protocol::{ClientMsg, ErrorCode, ServerMsg, PROTOCOL_VERSION};
use mm_server::Limits;
use mm_tests::{closed_within, RawTls, TestServer, WAIT};
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// A client certificate resolver that has no certificate and records whether the server asked
/// for one.
#[derive(Debug, Default)]
struct Asked(AtomicBool);

impl ResolvesClientCert for Asked {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.store(true, Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS connection offering `alpn`, no client certificate; `asked` records a certificate
/// request.
async fn tls_with(server: &TestServer, alpn: &[&[u8]], asked: Arc<Asked>) -> TlsStream<TcpStream> {
    tls_to(&server.addr.to_string(), &server.ca, alpn, asked).await
}

/// As [`tls_with`], to the server at `addr` whose CA is `ca`.
async fn tls_to(
    addr: &str,
    ca: &[CertificateDer<'static>],
    alpn: &[&[u8]],
    asked: Arc<Asked>,
) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots.add(cert.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(asked);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// A browser's TLS connection through a load balancer that sends a PROXY v2 header naming
/// `client`; the handshake's error if the server closes instead.
async fn proxied_web(server: &TestServer, client: &str) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in &server.ca {
        roots.add(cert.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let header = mm_server::proxy::header_v2(client.parse().unwrap(), server.addr).unwrap();
    tcp.write_all(&header).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// A browser's TLS connection: ALPN http/1.1, no client certificate.
async fn web(server: &TestServer) -> TlsStream<TcpStream> {
    let tls = tls_with(server, &[b"http/1.1"], Arc::default()).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls
}

/// One HTTP response: status, headers (names lowercased), body.
#[derive(Debug)]
struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response from `tls` (with `buf` holding what was read before); `head` for a HEAD
/// request (no body). What follows stays in `buf`.
async fn read_response(tls: &mut TlsStream<TcpStream>, buf: &mut Vec<u8>, head: bool) -> Http {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, tls.read(&mut chunk))
            .await
            .expect("no response")
            .unwrap_or(0);
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8(buf[..end].to_vec()).unwrap();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut rest = buf.split_off(end);
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let len = if head || status == 304 || status == 101 {
        0
    } else {
        len
    };
    while rest.len() < len {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, tls.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&chunk[..n]);
    }
    *buf = rest.split_off(len);
    Http {
        status,
        headers,
        body: rest,
    }
}

/// Sends a request head and reads the response.
async fn request(tls: &mut TlsStream<TcpStream>, head: &str) -> Http {
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(tls, &mut buf, head.starts_with("HEAD ")).await;
    assert!(buf.is_empty());
    r
}

fn upgrade_head(server: &TestServer, origin: Option<&str>) -> String {
    upgrade_head_to(&server.addr.to_string(), origin)
}

fn upgrade_head_to(host: &str, origin: Option<&str>) -> String {
    let mut head = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    if let Some(origin) = origin {
        head.push_str(&format!("Origin: {origin}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn own_origin(server: &TestServer) -> String {
    format!("https://{}", server.addr)
}

/// Opens the WebSocket at /ws from the server's own origin; returns the raw TLS stream after
/// the 101 (for raw frames) and what was read after it.
async fn upgraded(server: &TestServer) -> (TlsStream<TcpStream>, Vec<u8>) {
    let mut tls = web(server).await;
    tls.write_all(upgrade_head(server, Some(&own_origin(server))).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut tls, &mut buf, false).await;
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    (tls, buf)
}

type Ws = WebSocketStream<TlsStream<TcpStream>>;

async fn ws(server: &TestServer) -> Ws {
    let (tls, rest) = upgraded(server).await;
    WebSocketStream::from_partially_read(tls, rest, Role::Client, None).await
}

async fn send(ws: &mut Ws, msg: &ClientMsg) {
    let payload = mm_common::frame::encode_message(msg).unwrap();
    ws.send(Message::Binary(payload)).await.unwrap();
}

/// Every protocol message until the server closes, and whether a Close frame came.
async fn read_to_close(ws: &mut Ws) -> (Vec<ServerMsg>, bool) {
    let mut seen = Vec::new();
    let mut closed = false;
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("server neither answered nor closed");
        match next {
            Some(Ok(Message::Binary(b))) => seen.push(ServerMsg::decode(&b).unwrap()),
            Some(Ok(Message::Close(_))) => closed = true,
            Some(Ok(other)) => panic!("unexpected {other:?}"),
            None | Some(Err(_)) => return (seen, closed),
        }
    }
}

fn fatal(seen: &[ServerMsg]) -> (ErrorCode, String) {
    match seen.last() {
        Some(ServerMsg::Error {
            code,
            fatal: true,
            detail,
        }) => (*code, detail.clone()),
        other => panic!("expected a fatal error last, got {other:?} ({seen:?})"),
    }
}

#[tokio::test]
async fn native_clients_and_browsers_share_the_port_and_only_native_ones_are_asked_for_a_certificate(
) {
    let server = TestServer::start().await;
    // The native client (ALPN mm/1, a client certificate) still logs in.
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.chat_to(&mut bob, "native still works").await;

    let native = Arc::new(Asked::default());
    let tls = tls_with(&server, &[b"mm/1"], Arc::clone(&native)).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"mm/1"[..]));
    assert!(
        native.0.load(Ordering::SeqCst),
        "native: certificate requested"
    );

    let browser = Arc::new(Asked::default());
    let tls = tls_with(&server, &[b"h2", b"http/1.1"], Arc::clone(&browser)).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(
        !browser.0.load(Ordering::SeqCst),
        "web: no certificate request"
    );
    // Both offered: native.
    let both = Arc::new(Asked::default());
    let tls = tls_with(&server, &[b"http/1.1", b"mm/1"], Arc::clone(&both)).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"mm/1"[..]));
    assert!(both.0.load(Ordering::SeqCst));
}

#[tokio::test]
async fn the_web_client_is_served_with_its_security_headers_and_etags() {
    let server = TestServer::start().await;
    let host = server.addr.to_string();
    let mut tls = web(&server).await;
    let index = mm_server::web::assets::find("/index.html").unwrap();

    // Keep-alive: several requests on one connection.
    let r = request(&mut tls, &format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, index.body);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("etag"), Some(index.etag));
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(r.header(name), Some(value), "{name}");
    }

    let js = request(
        &mut tls,
        &format!("GET /app.js HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    )
    .await;
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(!js.body.is_empty());

    let head = request(
        &mut tls,
        &format!("HEAD / HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(index.body.len().to_string().as_str())
    );

    let cached = request(
        &mut tls,
        &format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nIf-None-Match: {}\r\n\r\n",
            index.etag
        ),
    )
    .await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag"), Some(index.etag));
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(cached.header(name), Some(value), "{name}");
    }
    let stale = request(
        &mut tls,
        &format!("GET / HTTP/1.1\r\nHost: {host}\r\nIf-None-Match: \"old\"\r\n\r\n"),
    )
    .await;
    assert_eq!(stale.status, 200);

    let missing = request(
        &mut tls,
        &format!("GET /nope HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    )
    .await;
    assert_eq!(missing.status, 404);
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(missing.header(name), Some(value), "{name}");
    }

    let post = request(
        &mut tls,
        &format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"),
    )
    .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert!(closed_within(&mut tls, WAIT).await, "405 closes");

    // A body is refused and closes (it would otherwise be read as the next request).
    let mut tls = web(&server).await;
    let body = request(
        &mut tls,
        &format!("GET / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\n"),
    )
    .await;
    assert_eq!(body.status, 400);
    assert!(closed_within(&mut tls, WAIT).await);
}

#[tokio::test]
async fn the_web_client_is_sent_gzip_compressed_when_the_browser_accepts_it() {
    use std::io::Read as _;

    let server = TestServer::start().await;
    let host = server.addr.to_string();
    let mut tls = web(&server).await;
    let js = mm_server::web::assets::find("/app.js").unwrap();
    let gzip_etag = js.gzip_etag();

    // As Chromium asks.
    let gz = request(
        &mut tls,
        &format!(
            "GET /app.js HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert_eq!(gz.header("etag"), Some(gzip_etag.as_str()));
    assert_eq!(
        gz.header("content-length"),
        Some(gz.body.len().to_string().as_str())
    );
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(gz.body.as_slice())
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, js.body);
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(gz.header(name), Some(value), "{name}");
    }

    for refused in [
        "",
        "Accept-Encoding: gzip;q=0\r\n",
        "Accept-Encoding: identity\r\n",
    ] {
        let r = request(
            &mut tls,
            &format!("GET /app.js HTTP/1.1\r\nHost: {host}\r\n{refused}\r\n"),
        )
        .await;
        assert_eq!(r.status, 200, "{refused}");
        assert_eq!(r.header("content-encoding"), None, "{refused}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{refused}");
        assert_eq!(r.header("etag"), Some(js.etag), "{refused}");
        assert_eq!(r.body, js.body, "{refused}");
    }

    let head = request(
        &mut tls,
        &format!("HEAD /app.js HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\n\r\n"),
    )
    .await;
    assert_eq!(head.headers, gz.headers);
    assert!(head.body.is_empty());

    // Each form revalidates with its own ETag.
    let cached = request(
        &mut tls,
        &format!(
            "GET /app.js HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\nIf-None-Match: {gzip_etag}\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(cached.status, 304);
    assert_eq!(cached.header("etag"), Some(gzip_etag.as_str()));
    assert_eq!(cached.header("vary"), Some("Accept-Encoding"));
    let cached = request(
        &mut tls,
        &format!(
            "GET /app.js HTTP/1.1\r\nHost: {host}\r\nIf-None-Match: {}\r\n\r\n",
            js.etag
        ),
    )
    .await;
    assert_eq!(cached.status, 304);
    assert_eq!(cached.header("etag"), Some(js.etag));
    let other = request(
        &mut tls,
        &format!(
            "GET /app.js HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\nIf-None-Match: {}\r\n\r\n",
            js.etag
        ),
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("content-encoding"), Some("gzip"));

    // An Accept-Encoding over the head limit is refused and closes, as any oversized head.
    let mut huge = format!("GET /app.js HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: ");
    huge.push_str(&"x;q=0.5, ".repeat(1024));
    huge.push_str("gzip\r\n\r\n");
    let _ = tls.write_all(huge.as_bytes()).await;
    let mut buf = Vec::new();
    let r = read_response(&mut tls, &mut buf, false).await;
    assert!(r.status == 431 || r.status == 400, "{r:?}");
    assert!(closed_within(&mut tls, WAIT).await, "closed after 431");

    println!(
        "app.js: {} bytes sent without gzip, {} with",
        js.body.len(),
        gz.body.len()
    );
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_and_closed() {
    let server = TestServer::start().await;
    let mut tls = web(&server).await;
    let mut head = format!("GET / HTTP/1.1\r\nHost: {}\r\nX-Filler: ", server.addr);
    head.push_str(&"a".repeat(9 * 1024));
    head.push_str("\r\n\r\n");
    let _ = tls.write_all(head.as_bytes()).await;
    let mut buf = Vec::new();
    let r = read_response(&mut tls, &mut buf, false).await;
    assert!(r.status == 431 || r.status == 400, "{r:?}");
    assert!(closed_within(&mut tls, WAIT).await, "closed after 431");
}

#[tokio::test]
async fn the_websocket_upgrade_needs_the_servers_own_origin() {
    let server = TestServer::start().await;
    for origin in [Some("https://evil.example"), None, Some("null")] {
        let mut tls = web(&server).await;
        let r = request(&mut tls, &upgrade_head(&server, origin)).await;
        assert_eq!(r.status, 403, "{origin:?}");
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(r.header(name), Some(value), "{name}");
        }
        assert!(closed_within(&mut tls, WAIT).await);
    }
    // http:// is not this server's origin either.
    let mut tls = web(&server).await;
    let http = format!("http://{}", server.addr);
    assert_eq!(
        request(&mut tls, &upgrade_head(&server, Some(&http)))
            .await
            .status,
        403
    );
    let (_tls, rest) = upgraded(&server).await;
    assert!(rest.is_empty());
}

#[tokio::test]
async fn the_session_runs_over_websocket_as_over_the_native_transport() {
    let server = TestServer::start().await;
    // Native: a Ping before any hello.
    let mut raw = RawTls::connect(&server).await;
    raw.send(&ClientMsg::Ping { token: 7 }).await;
    let native = raw.read_to_close().await;
    assert!(!native.is_empty());

    let mut ws = ws(&server).await;
    send(&mut ws, &ClientMsg::Ping { token: 7 }).await;
    let (seen, closed) = read_to_close(&mut ws).await;
    assert_eq!(seen, native, "the same answer as on the native transport");
    assert!(closed, "a WebSocket Close frame ends it");

    // WebSocket pings are answered with pongs (control frames, not protocol messages), and
    // the session goes on: Hello without a certificate is refused as on native.
    let mut ws = self::ws(&server).await;
    ws.send(Message::Ping(Bytes::from_static(b"hi")))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(
        matches!(&pong, Some(Ok(Message::Pong(p))) if &p[..] == b"hi"),
        "{pong:?}"
    );
    send(
        &mut ws,
        &ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            nick: "webby".into(),
        },
    )
    .await;
    let (seen, _) = read_to_close(&mut ws).await;
    assert_eq!(fatal(&seen).0, ErrorCode::CERTIFICATE_REQUIRED);
}

#[tokio::test]
async fn a_text_message_is_a_fatal_bad_frame() {
    let server = TestServer::start().await;
    let mut ws = ws(&server).await;
    ws.send(Message::Text("hello".into())).await.unwrap();
    let (seen, closed) = read_to_close(&mut ws).await;
    let (code, detail) = fatal(&seen);
    assert_eq!(code, ErrorCode::BAD_FRAME);
    assert!(detail.contains("text"), "{detail}");
    assert!(closed);
}

/// A masked client frame header (RFC 6455 section 5.2) for `len` bytes, with a zero mask.
fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
    match len {
        0..=125 => h.push(0x80 | len as u8),
        126..=0xFFFF => {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
    }
    h.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as it is
    h
}

#[tokio::test]
async fn a_message_over_64_kib_is_refused_from_its_header_and_closed() {
    let server = TestServer::start().await;
    // One frame announcing 1 MiB, of which only 1 KiB is ever sent: the server must answer
    // from the header, not wait for (or buffer) the rest.
    let (mut tls, rest) = upgraded(&server).await;
    tls.write_all(&frame_header(true, 0x2, 1 << 20))
        .await
        .unwrap();
    tls.write_all(&[0u8; 1024]).await.unwrap();
    let mut ws = WebSocketStream::from_partially_read(tls, rest, Role::Client, None).await;
    let (seen, closed) = read_to_close(&mut ws).await;
    let (code, detail) = fatal(&seen);
    assert_eq!(code, ErrorCode::BAD_FRAME);
    assert_eq!(detail, "frame too long: 1048576 bytes, the limit is 65536");
    assert!(closed);

    // Fragments that add up to more than 64 KiB.
    let (mut tls, rest) = upgraded(&server).await;
    tls.write_all(&frame_header(false, 0x2, 40_000))
        .await
        .unwrap();
    tls.write_all(&[1u8; 40_000]).await.unwrap();
    let _ = tls.write_all(&frame_header(true, 0x0, 40_000)).await;
    let _ = tls.write_all(&[1u8; 40_000]).await;
    let mut ws = WebSocketStream::from_partially_read(tls, rest, Role::Client, None).await;
    let (seen, _) = read_to_close(&mut ws).await;
    let (code, detail) = fatal(&seen);
    assert_eq!(code, ErrorCode::BAD_FRAME);
    assert!(detail.starts_with("frame too long"), "{detail}");
}

#[tokio::test]
async fn a_flood_of_empty_continuation_fragments_is_cut_off() {
    let server = TestServer::start().await;
    let (mut tls, rest) = upgraded(&server).await;
    let mut flood = frame_header(false, 0x2, 1);
    flood.push(0);
    // Empty continuations add nothing to the message, so its size limit never trips: 200 KiB
    // of them.
    for _ in 0..(200 * 1024 / 6) {
        flood.extend_from_slice(&frame_header(false, 0x0, 0));
    }
    let started = Instant::now();
    let _ = tls.write_all(&flood).await;
    let mut ws = WebSocketStream::from_partially_read(tls, rest, Role::Client, None).await;
    let (seen, _) = read_to_close(&mut ws).await;
    let (code, detail) = fatal(&seen);
    assert_eq!(code, ErrorCode::BAD_FRAME);
    assert!(detail.contains("too many fragments"), "{detail}");
    assert!(started.elapsed() < WAIT);
}

#[tokio::test]
async fn a_slow_upgrade_request_is_closed_within_the_timeout() {
    let limits = Limits {
        hello_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let tls = web(&server).await;
    let (mut read, mut write) = tokio::io::split(tls);
    let head = upgrade_head(&server, Some(&own_origin(&server)));
    let trickle = tokio::spawn(async move {
        for byte in head.bytes() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    assert!(
        closed_within(&mut read, Duration::from_secs(5)).await,
        "a head trickling in is cut off"
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    trickle.abort();
}

#[tokio::test]
async fn a_websocket_client_that_never_logs_in_times_out_as_on_native() {
    let limits = Limits {
        hello_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let mut ws = ws(&server).await;
    let started = Instant::now();
    let (seen, closed) = read_to_close(&mut ws).await;
    let (code, detail) = fatal(&seen);
    assert_eq!(code, ErrorCode::TIMEOUT);
    assert_eq!(detail, "no hello received in time");
    assert!(closed);
    assert!(started.elapsed() < Duration::from_secs(5));
}

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_connections_cost_little_memory_and_the_web_address_is_logged() {
    const CONFIG: &str = "[limits]\nmax_connections_per_ip = 1000\nhello_timeout = \"120s\"\n";
    let server = mm_tests::ServerProcess::start(MM_SERVER, CONFIG).await;
    let url = format!("https://{}/", server.addr);
    assert!(
        server
            .log
            .iter()
            .any(|l| l.contains(&format!("web client: {url}"))),
        "{:?}",
        server.log
    );
    let ca = server.ca();
    let open = |n: usize| {
        let (addr, ca) = (server.addr.clone(), ca.clone());
        async move {
            let mut conns = Vec::new();
            for _ in 0..n {
                let mut tls = tls_to(&addr, &ca, &[b"http/1.1"], Arc::default()).await;
                let origin = format!("https://{addr}");
                tls.write_all(upgrade_head_to(&addr, Some(&origin)).as_bytes())
                    .await
                    .unwrap();
                let mut buf = Vec::new();
                assert_eq!(read_response(&mut tls, &mut buf, false).await.status, 101);
                conns.push(tls);
            }
            conns
        }
    };
    let native = |n: usize| {
        let (addr, ca) = (server.addr.clone(), ca.clone());
        async move {
            let mut conns = Vec::new();
            for _ in 0..n {
                conns.push(tls_to(&addr, &ca, &[b"mm/1"], Arc::default()).await);
            }
            conns
        }
    };
    // Warm up (the runtime's threads, the allocator's arenas), then measure 200 more of each:
    // idle before their login, both.
    let _warm = open(20).await;
    let _warm_native = native(20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib();
    let conns = open(200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let middle = server.rss_kib();
    let per_ws = middle.saturating_sub(before) as f64 / 200.0;
    let natives = native(200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_native = server.rss_kib().saturating_sub(middle) as f64 / 200.0;
    eprintln!(
        "{per_ws:.1} KiB per idle WebSocket connection, {per_native:.1} KiB per idle native one"
    );
    // tungstenite's default read buffer alone is 128 KiB per connection (zero-filled at the
    // first read); with the small one, TLS and all, an idle WebSocket costs about 1.5 times a
    // native connection (17.5 and 11.7 KiB in this debug build; 28.1 KiB for the WebSocket with
    // a 4 KiB read buffer and the session's future in the web one). RSS deltas over 200
    // connections move by a KiB from run to run, so this bound is wide: it catches a regression
    // to the old shape (2.4 times) or to tungstenite's defaults, while the target (at
    // most 1.5 times, 10,000 clients, release) is measured by `mm-bench` (BENCHMARKS.md, "Web
    // client: WebSocket vs native").
    assert!(
        per_ws <= per_native * 2.0,
        "{per_ws:.1} KiB per idle WebSocket connection, {per_native:.1} per native one"
    );
    drop(conns);
    drop(natives);
}

/// The key login over the WebSocket: challenged, and a proof that does not verify is refused.
/// (Successful key logins and chat over the WebSocket: server/src/session/tests/key_login.rs and
/// the browser tests, tests/browser/.)
#[tokio::test]
async fn a_websocket_client_logs_in_with_an_account_key_challenge_and_proof() {
    let server = TestServer::start().await;
    let mut ws = ws(&server).await;
    let mut key = vec![0u8; mm_common::key_login::PUBLIC_KEY_LEN];
    key[0] = 4;
    send(
        &mut ws,
        &ClientMsg::KeyHello {
            version: PROTOCOL_VERSION,
            nick: "webby".into(),
            key,
        },
    )
    .await;
    let next = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    let Some(Ok(Message::Binary(b))) = next else {
        panic!("{next:?}")
    };
    match ServerMsg::decode(&b).unwrap() {
        ServerMsg::Challenge { nonce } => {
            assert_eq!(nonce.len(), mm_common::key_login::NONCE_LEN)
        }
        other => panic!("expected a Challenge, got {other:?}"),
    }
    // Not a signature by that key (nor is the key a point on the curve): refused.
    send(
        &mut ws,
        &ClientMsg::KeyProof {
            signature: vec![0; mm_common::key_login::SIGNATURE_LEN],
        },
    )
    .await;
    let (seen, closed) = read_to_close(&mut ws).await;
    assert_eq!(fatal(&seen).0, ErrorCode::CERTIFICATE_REQUIRED);
    assert!(closed);
}

#[tokio::test]
async fn frames_sent_right_behind_the_upgrade_request_are_not_lost() {
    let server = TestServer::start().await;
    let mut tls = web(&server).await;
    // The head and a first message in one write, before the 101 comes back.
    let mut bytes = upgrade_head(&server, Some(&own_origin(&server))).into_bytes();
    let ping = mm_common::frame::encode_message(&ClientMsg::Ping { token: 9 }).unwrap();
    bytes.extend_from_slice(&frame_header(true, 0x2, ping.len() as u64));
    bytes.extend_from_slice(&ping);
    tls.write_all(&bytes).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut tls, &mut buf, false).await.status, 101);
    let mut ws = WebSocketStream::from_partially_read(tls, buf, Role::Client, None).await;
    let (seen, _) = read_to_close(&mut ws).await;
    // Answered as a Ping before Hello is on native: the message reached the session.
    let (code, _) = fatal(&seen);
    assert_eq!(code, ErrorCode::UNEXPECTED_MESSAGE);
}

#[tokio::test]
async fn web_connections_count_against_the_per_address_cap() {
    let limits = Limits {
        max_connections_per_ip: 2,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let _one = web(&server).await;
    let _two = ws(&server).await;
    let mut three = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_within(&mut three, WAIT).await,
        "a third connection from the address is closed"
    );
}

/// Sends `head` on `tls` and reads what comes for `pause`; false once the server closed.
async fn request_and_wait(tls: &mut TlsStream<TcpStream>, head: &str, pause: Duration) -> bool {
    if tls.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let until = tokio::time::sleep(pause);
    tokio::pin!(until);
    let mut chunk = [0u8; 4096];
    loop {
        tokio::select! {
            () = &mut until => return true,
            r = tls.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            },
        }
    }
}

/// A server whose `hello_timeout` is 1 s, a web connection to it and a `GET /` request head.
async fn web_with_a_1s_hello_timeout() -> (TestServer, TlsStream<TcpStream>, String) {
    let limits = Limits {
        hello_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let tls = web(&server).await;
    let head = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    (server, tls, head)
}

#[tokio::test]
async fn a_web_connection_that_does_not_upgrade_is_closed_at_one_overall_deadline() {
    // `_server` (not `_`): the server stays up for the whole test.
    let (_server, mut tls, head) = web_with_a_1s_hello_timeout().await;
    let started = Instant::now();
    let mut served = 0;
    // A request every 0.6 s, each well within the 1 s hello_timeout: only the connection's
    // overall deadline (3 × 1 s) ends it.
    while request_and_wait(&mut tls, &head, Duration::from_millis(600)).await {
        served += 1;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still open after {served} requests"
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(5),
        "closed after {took:?} and {served} requests"
    );
    assert!(served >= 4, "{served}");
}

#[tokio::test]
async fn an_upgraded_connection_gets_the_sessions_login_timeout_not_the_web_deadline() {
    let (server, mut tls, head) = web_with_a_1s_hello_timeout().await;
    let started = Instant::now();
    for _ in 0..3 {
        assert!(request_and_wait(&mut tls, &head, Duration::from_millis(700)).await);
    }
    // Upgraded at ~2.1 s, 0.9 s before the web deadline: the session's own login timeout
    // (1 s from the upgrade) ends it, with its error, not a silent close at 3 s.
    tls.write_all(upgrade_head(&server, Some(&own_origin(&server))).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut tls, &mut buf, false).await.status, 101);
    let mut ws = WebSocketStream::from_partially_read(tls, buf, Role::Client, None).await;
    let (seen, closed) = read_to_close(&mut ws).await;
    let (code, detail) = fatal(&seen);
    assert_eq!(code, ErrorCode::TIMEOUT);
    assert_eq!(detail, "no hello received in time");
    assert!(closed);
    assert!(started.elapsed() >= Duration::from_millis(3000));
}

#[tokio::test]
async fn websocket_sessions_are_counted_apart_from_native_ones_and_page_requests_not_at_all() {
    let server = TestServer::start_operated(Limits::default(), &[]).await;
    let admin = server.admin.unwrap();
    // A page request over HTTPS: not a chat connection.
    let mut page = web(&server).await;
    let answer = request(
        &mut page,
        &format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr),
    )
    .await;
    assert_eq!(answer.status, 200);
    // A WebSocket session, refused for a Ping before its Hello.
    let mut ws = ws(&server).await;
    send(&mut ws, &ClientMsg::Ping { token: 7 }).await;
    let (seen, _) = read_to_close(&mut ws).await;
    assert!(!fatal(&seen).1.is_empty());
    // And a native one, the same.
    let mut raw = RawTls::connect(&server).await;
    raw.send(&ClientMsg::Ping { token: 7 }).await;
    raw.read_to_close().await;
    crate::operations::scrape_until(
        admin,
        &[
            (
                "mm_connections_accepted_total{transport=\"websocket\"}",
                1.0,
            ),
            ("mm_connections_accepted_total{transport=\"tls\"}", 1.0),
            ("mm_connections_open{transport=\"websocket\"}", 0.0),
            ("mm_connections_open{transport=\"tls\"}", 0.0),
            ("mm_logins_total{outcome=\"refused\"}", 2.0),
        ],
    )
    .await;
    drop(page);
    server.shutdown().await;
}

#[tokio::test]
async fn web_connections_through_a_trusted_proxy_count_by_the_address_it_names() {
    let limits = Limits {
        max_connections_per_ip: 1,
        ..Limits::default()
    };
    let server = TestServer::start_operated(limits, &["127.0.0.1"]).await;
    let page = |host: SocketAddr| format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut first = proxied_web(&server, "203.0.113.9:1000").await.unwrap();
    assert_eq!(request(&mut first, &page(server.addr)).await.status, 200);
    // The same claimed address is at its cap of one (TLS never starts)...
    assert!(proxied_web(&server, "203.0.113.9:1001").await.is_err());
    // ...another is not, though every connection comes from 127.0.0.1.
    let mut other = proxied_web(&server, "203.0.113.10:1000").await.unwrap();
    assert_eq!(request(&mut other, &page(server.addr)).await.status, 200);
    drop((first, other));
    server.shutdown().await;
}
