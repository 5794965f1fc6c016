//! HTTP/1.1 request heads (RFC 9112) and the server's answers, without sockets: parsing with
//! `httparse`, routing, the WebSocket upgrade's checks (RFC 6455 section 4.2.1) and the
//! `Origin` check, and responses with their security headers.
//!
//! The server takes no request bodies: only `GET` and `HEAD`, and a request that announces a
//! body (`Content-Length` over 0, or any `Transfer-Encoding`) is refused and the connection
//! closed (its body would be read as the next request otherwise: request smuggling).

use super::assets::{self, Asset};

/// Longest request head (request line and headers, with the blank line), in bytes.
pub const MAX_HEAD: usize = 8 * 1024;

/// Most header fields in one request head (browsers send about 15).
pub const MAX_HEADERS: usize = 64;

/// The headers of every response (besides `Content-Type`, `Content-Length`, `Cache-Control`,
/// and for files `ETag`, `Vary` and `Content-Encoding`): nothing but this server's own files may run, be styled, framed or connected to,
/// and nothing is sniffed or leaks in a `Referer`.
pub const SECURITY_HEADERS: &str = "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n\
X-Content-Type-Options: nosniff\r\n\
Referrer-Policy: no-referrer\r\n\
X-Frame-Options: DENY\r\n\
Cross-Origin-Opener-Policy: same-origin\r\n\
Cross-Origin-Resource-Policy: same-origin\r\n";

/// The path of the WebSocket endpoint.
pub const WS_PATH: &str = "/ws";

/// What the server needs of one request head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ... as sent.
    pub method: String,
    /// The request target's path, without the query.
    pub path: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// `Host`, if sent exactly once.
    pub host: Option<String>,
    /// `Origin`, if sent exactly once.
    pub origin: Option<String>,
    /// `Upgrade` values, comma-joined.
    pub upgrade: String,
    /// `Connection` values, comma-joined.
    pub connection: String,
    /// `Sec-WebSocket-Version`.
    pub ws_version: Option<String>,
    /// `Sec-WebSocket-Key`.
    pub ws_key: Option<String>,
    /// `If-None-Match` values, comma-joined.
    pub if_none_match: Option<String>,
    /// `Accept-Encoding` values, comma-joined (bounded by [`MAX_HEAD`] like every header).
    pub accept_encoding: Option<String>,
    /// The request announces a body (Content-Length over 0, unreadable or repeated; or a
    /// Transfer-Encoding).
    pub has_body: bool,
    /// A header that must be single (`Host`, `Origin`) came twice.
    pub duplicate: bool,
}

/// Why a head is refused before it is understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] fields: `431`.
    TooLarge,
    /// Not HTTP/1.x: `400`.
    Malformed,
}

/// Parses the head at the start of `buf`: `Ok(None)` while incomplete, else the request and the
/// head's length in bytes (what follows is the next request, or the first WebSocket frames).
///
/// # Errors
/// [`HeadError::TooLarge`] once the head is longer than [`MAX_HEAD`] or has too many fields,
/// [`HeadError::Malformed`] when it is not an HTTP/1.x request head.
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HeadError::Malformed);
    };
    let path = target.split('?').next().unwrap_or_default();
    let mut out = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        minor_version,
        ..Request::default()
    };
    let mut hosts = 0;
    let mut origins = 0;
    let mut lengths = 0;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).trim().to_owned();
        let name = h.name;
        let join = |to: &mut String, v: &str| {
            if !to.is_empty() {
                to.push_str(", ");
            }
            to.push_str(v);
        };
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            out.host = Some(value);
        } else if name.eq_ignore_ascii_case("origin") {
            origins += 1;
            out.origin = Some(value);
        } else if name.eq_ignore_ascii_case("upgrade") {
            join(&mut out.upgrade, &value);
        } else if name.eq_ignore_ascii_case("connection") {
            join(&mut out.connection, &value);
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            out.ws_version = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            out.ws_key = Some(value);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            join(out.if_none_match.get_or_insert_with(String::new), &value);
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            join(out.accept_encoding.get_or_insert_with(String::new), &value);
        } else if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            if value != "0" {
                out.has_body = true;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            out.has_body = true;
        }
    }
    if lengths > 1 {
        out.has_body = true;
    }
    if hosts > 1 || origins > 1 {
        out.duplicate = true;
        out.host = None;
        out.origin = None;
    }
    Ok(Some((out, len)))
}

/// Whether a comma-separated header value holds `token` (case-insensitive), as `Connection:
/// keep-alive, Upgrade` holds `upgrade`.
pub fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a WebSocket upgrade comes from this server's own page: `Origin` present and equal to
/// `https://` and the request's `Host` (ASCII case-insensitive). Any other origin (another
/// site's page, `null`) could use the browser's connection to this server in its user's name
/// (cross-site WebSocket hijacking: browsers send no CORS check for WebSocket).
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>) -> bool {
    let (Some(origin), Some(host)) = (origin, host) else {
        return false;
    };
    let Some(origin_host) = origin
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .and_then(|_| origin.get(8..))
    else {
        return false;
    };
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// An HTTP response, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra header lines, each ending in CRLF.
    pub extra: String,
    /// `Content-Type` of the body (none for 101 and 304).
    pub content_type: Option<&'static str>,
    /// The body (written for GET, only its length for HEAD).
    pub body: &'static [u8],
    /// The connection closes after this response.
    pub close: bool,
}

/// The reason phrase of a status code.
fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

impl Response {
    /// A short plain-text error (or other) response.
    pub fn text(status: u16, body: &'static str, close: bool) -> Response {
        Response {
            status,
            extra: String::new(),
            content_type: Some("text/plain; charset=utf-8"),
            body: body.as_bytes(),
            close,
        }
    }

    /// The bytes of the head, and of the body unless `head_only` (a `HEAD` request, or a
    /// status without a body).
    pub fn render(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        out.push_str(SECURITY_HEADERS);
        out.push_str(&self.extra);
        let has_body = !matches!(self.status, 101 | 304);
        if has_body {
            if let Some(ct) = self.content_type {
                out.push_str("Content-Type: ");
                out.push_str(ct);
                out.push_str("\r\n");
            }
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if self.status != 101 {
            out.push_str("Cache-Control: no-cache\r\n");
            if self.close {
                out.push_str("Connection: close\r\n");
            }
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if has_body && !head_only {
            bytes.extend_from_slice(self.body);
        }
        bytes
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer it (and close after if the response says so).
    Respond(Response),
    /// Answer `101` with this `Sec-WebSocket-Accept` and run the WebSocket transport.
    Upgrade {
        /// RFC 6455 section 4.2.2: base64 of SHA-1 of the key and the protocol's GUID.
        accept: String,
    },
}

/// Whether `If-None-Match` names `etag` (or is `*`), comparing weakly (RFC 9110 section
/// 13.1.2).
fn not_modified(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|v| {
        v.split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        })
    })
}

/// Whether an `Accept-Encoding` value (RFC 9110 section 12.5.3) accepts `gzip`: `gzip` (or its
/// alias `x-gzip`) listed with a weight over 0, or else `*` listed with a weight over 0. A `q=0`
/// refuses (a refusal of `gzip` wins over `*` and over another `gzip` element); an element with an
/// unreadable weight counts as a refusal. No header: `false` (identity, what every client reads).
/// Weights between codings are not compared: gzip is sent whenever it is acceptable.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(value) = accept_encoding else {
        return false;
    };
    // For `gzip` and `*`: None = not listed, Some(true) = accepted, Some(false) = refused.
    let (mut gzip, mut star) = (None::<bool>, None::<bool>);
    for element in value.split(',') {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let mut accepted = true;
        for param in parts {
            let (name, weight) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("q") {
                accepted = weight_over_zero(weight.trim());
            }
        }
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding == "*" {
            &mut star
        } else {
            continue;
        };
        *slot = Some(slot.unwrap_or(true) && accepted);
    }
    gzip.or(star).unwrap_or(false)
}

/// Whether a `qvalue` (RFC 9110 section 12.4.2: `0` to `1` with up to three decimals) is over
/// 0; `false` for one that does not parse.
fn weight_over_zero(q: &str) -> bool {
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match int {
        "0" => frac.len() <= 3 && digits(frac) && frac.bytes().any(|b| b != b'0'),
        "1" => frac.len() <= 3 && frac.bytes().all(|b| b == b'0'),
        _ => false,
    }
}

/// An asset's response: its gzip form with `Content-Encoding: gzip` and that form's `ETag` when
/// the request accepts gzip and the asset has one, else its bytes; `304` (no body, no
/// `Content-Encoding`) when `If-None-Match` names the `ETag` of the form chosen. Every one says
/// `Vary: Accept-Encoding`, so that caches keep the two forms apart.
fn asset_response(req: &Request, asset: &Asset, close: bool) -> Response {
    let gzip = asset
        .gzip
        .filter(|_| accepts_gzip(req.accept_encoding.as_deref()));
    let (etag, body, encoding) = match gzip {
        Some(gz) => (asset.gzip_etag(), gz, "Content-Encoding: gzip\r\n"),
        None => (asset.etag.to_owned(), asset.body, ""),
    };
    let extra = format!("ETag: {etag}\r\nVary: Accept-Encoding\r\n");
    if not_modified(req.if_none_match.as_deref(), &etag) {
        return Response {
            status: 304,
            extra,
            content_type: None,
            body: b"",
            close,
        };
    }
    Response {
        status: 200,
        extra: format!("{extra}{encoding}"),
        content_type: Some(asset.content_type),
        body,
        close,
    }
}

/// Decides what to do with `req` (see the module); `last` when the connection has served its
/// last request (the response then closes it).
pub fn route(req: &Request, last: bool) -> Action {
    let close = last || req.minor_version == 0 || has_token(&req.connection, "close");
    if req.method != "GET" && req.method != "HEAD" {
        let mut r = Response::text(405, "only GET and HEAD\n", true);
        r.extra = "Allow: GET, HEAD\r\n".into();
        return Action::Respond(r);
    }
    if req.has_body {
        return Action::Respond(Response::text(400, "requests have no body here\n", true));
    }
    if req.duplicate || (req.minor_version >= 1 && req.host.is_none()) {
        return Action::Respond(Response::text(400, "one Host header, please\n", true));
    }
    if req.path == WS_PATH {
        return upgrade(req);
    }
    let path = if req.path == "/" {
        "/index.html"
    } else {
        req.path.as_str()
    };
    match assets::find(path) {
        Some(asset) => Action::Respond(asset_response(req, asset, close)),
        None => Action::Respond(Response::text(404, "not found\n", close)),
    }
}

/// The WebSocket upgrade's checks (RFC 6455 section 4.2.1), then the `Origin` check.
fn upgrade(req: &Request) -> Action {
    let websocket = req.method == "GET"
        && req.minor_version >= 1
        && has_token(&req.upgrade, "websocket")
        && has_token(&req.connection, "upgrade");
    let Some(key) = req.ws_key.as_deref().filter(|k| !k.is_empty()) else {
        return Action::Respond(Response::text(
            400,
            "this is the WebSocket endpoint: GET with Upgrade: websocket\n",
            true,
        ));
    };
    if !websocket {
        return Action::Respond(Response::text(
            400,
            "this is the WebSocket endpoint: GET with Upgrade: websocket\n",
            true,
        ));
    }
    if req.ws_version.as_deref() != Some("13") {
        let mut r = Response::text(426, "WebSocket version 13 only\n", true);
        r.extra = "Sec-WebSocket-Version: 13\r\n".into();
        return Action::Respond(r);
    }
    if !origin_allowed(req.origin.as_deref(), req.host.as_deref()) {
        return Action::Respond(Response::text(
            403,
            "WebSocket connections are taken from this server's own page only\n",
            true,
        ));
    }
    Action::Upgrade {
        accept: tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
    }
}

/// The `101` answer to an accepted upgrade.
pub fn switching(accept: &str) -> Response {
    Response {
        status: 101,
        extra: format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
        ),
        content_type: None,
        body: b"",
        close: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[&str]) -> Vec<u8> {
        let mut s = lines.join("\r\n");
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }

    fn req(lines: &[&str]) -> Request {
        parse(&head(lines)).unwrap().unwrap().0
    }

    const UPGRADE: [&str; 7] = [
        "GET /ws HTTP/1.1",
        "Host: chat.example:7667",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Origin: https://Chat.Example:7667",
    ];

    #[test]
    fn heads_parse_incrementally_and_report_their_length() {
        let bytes = head(&[
            "GET /app.js?v=1 HTTP/1.1",
            "Host: x",
            "If-None-Match: \"a\"",
        ]);
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Ok(None), "{cut}");
        }
        let mut more = bytes.clone();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (r, len) = parse(&more).unwrap().unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/app.js");
        assert_eq!(r.host.as_deref(), Some("x"));
        assert_eq!(r.if_none_match.as_deref(), Some("\"a\""));
        assert!(!r.has_body);
    }

    #[test]
    fn oversized_or_malformed_heads_are_refused() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&big), Err(HeadError::TooLarge));
        let many: Vec<String> = (0..=MAX_HEADERS).map(|i| format!("X{i}: y")).collect();
        let mut lines = vec!["GET / HTTP/1.1"];
        lines.extend(many.iter().map(String::as_str));
        assert_eq!(parse(&head(&lines)), Err(HeadError::TooLarge));
        assert_eq!(
            parse(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(parse(b"GET / SPDY/3\r\n\r\n"), Err(HeadError::Malformed));
    }

    #[test]
    fn bodies_and_other_methods_are_refused() {
        let post = req(&["POST / HTTP/1.1", "Host: x"]);
        let Action::Respond(r) = route(&post, false) else {
            panic!()
        };
        assert_eq!((r.status, r.close), (405, true));
        assert!(r.extra.contains("Allow: GET, HEAD"));
        for body in [
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
            "Content-Length: x",
        ] {
            let get = req(&["GET / HTTP/1.1", "Host: x", body]);
            assert!(get.has_body, "{body}");
            let Action::Respond(r) = route(&get, false) else {
                panic!()
            };
            assert_eq!((r.status, r.close), (400, true), "{body}");
        }
        let zero = req(&["GET / HTTP/1.1", "Host: x", "Content-Length: 0"]);
        assert!(!zero.has_body);
        let two_hosts = req(&["GET / HTTP/1.1", "Host: x", "Host: y"]);
        assert!(matches!(route(&two_hosts, false), Action::Respond(r) if r.status == 400));
    }

    #[test]
    fn routes_serve_assets_with_etags_and_404_the_rest() {
        let index = assets::find("/index.html").expect("index.html is embedded");
        let Action::Respond(r) = route(&req(&["GET / HTTP/1.1", "Host: x"]), false) else {
            panic!()
        };
        assert_eq!(r.status, 200);
        assert_eq!(r.body, index.body);
        assert_eq!(r.content_type, Some("text/html; charset=utf-8"));
        assert!(!r.close);
        let bytes = r.render(false);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains(SECURITY_HEADERS));
        assert!(text.contains(&format!("ETag: {}\r\n", index.etag)));
        assert!(text.contains("Cache-Control: no-cache\r\n"));
        assert!(bytes.ends_with(index.body));
        // HEAD: the same head, no body.
        assert_eq!(r.render(true).len(), bytes.len() - index.body.len());

        let cached = req(&[
            "GET / HTTP/1.1",
            "Host: x",
            &format!("If-None-Match: \"old\", W/{}", index.etag),
        ]);
        let Action::Respond(r) = route(&cached, false) else {
            panic!()
        };
        assert_eq!(r.status, 304);
        assert!(!String::from_utf8(r.render(false))
            .unwrap()
            .contains("Content-Length"));

        let missing = req(&["GET /nope HTTP/1.1", "Host: x"]);
        assert!(
            matches!(route(&missing, false), Action::Respond(r) if r.status == 404 && !r.close)
        );
        let old = req(&["GET /nope HTTP/1.0"]);
        assert!(matches!(route(&old, false), Action::Respond(r) if r.status == 404 && r.close));
        let closing = req(&["GET / HTTP/1.1", "Host: x", "Connection: close"]);
        assert!(matches!(route(&closing, false), Action::Respond(r) if r.close));
        assert!(
            matches!(route(&req(&["GET / HTTP/1.1", "Host: x"]), true), Action::Respond(r) if r.close)
        );
    }

    #[test]
    fn accept_encoding_accepts_gzip_unless_refused() {
        for yes in [
            "gzip",
            "gzip, deflate, br, zstd",
            "GZIP;Q=1",
            "br;q=1.0, gzip;q=0.8, *;q=0.1",
            "x-gzip",
            "*",
            "*;q=0.5, identity",
            "gzip;q=0.001",
            "gzip;q=1.000",
            " deflate ,  gzip ; q = 0.5 ",
        ] {
            assert!(accepts_gzip(Some(yes)), "{yes}");
        }
        for no in [
            "",
            "identity",
            "deflate, br",
            "gzip;q=0",
            "gzip;q=0.000",
            "gzip;q=0, *",
            "*, gzip;q=0",
            "gzip, gzip;q=0",
            "*;q=0",
            "*;q=0, identity",
            "gzip;q=",
            "gzip;q",
            "gzip;q=abc",
            "gzip;q=1.5",
            "gzip;q=0.0001",
            "gzip;q=-1",
            "gzipx",
            ";;;,,,==",
            "\u{fffd}gzip",
        ] {
            assert!(!accepts_gzip(Some(no)), "{no}");
        }
        assert!(!accepts_gzip(None));
    }

    /// The response to `lines`, and its rendered head as text.
    fn respond(lines: &[&str]) -> (Response, String) {
        let Action::Respond(r) = route(&req(lines), false) else {
            panic!()
        };
        let bytes = r.render(true);
        (r, String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn the_gzip_form_is_sent_when_accepted_with_its_own_etag() {
        use std::io::Read as _;

        let js = assets::find("/app.js").expect("app.js is embedded");
        let gz = js.gzip.expect("app.js has a gzip form");
        let gzip_etag = js.gzip_etag();

        let (r, head) = respond(&[
            "GET /app.js HTTP/1.1",
            "Host: x",
            "Accept-Encoding: gzip, br",
        ]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, gz);
        assert!(head.contains("Content-Encoding: gzip\r\n"), "{head}");
        assert!(head.contains("Vary: Accept-Encoding\r\n"), "{head}");
        assert!(head.contains(&format!("ETag: {gzip_etag}\r\n")), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", gz.len())),
            "{head}"
        );
        assert!(head.contains("Content-Type: text/javascript; charset=utf-8\r\n"));
        let full = r.render(false);
        assert_eq!(full.len(), head.len() + gz.len());
        assert!(full.ends_with(gz));
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(r.body)
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, js.body);
        // HEAD: the same head.
        let (_, head_of_head) =
            respond(&["HEAD /app.js HTTP/1.1", "Host: x", "Accept-Encoding: gzip"]);
        assert_eq!(head_of_head, head);

        for identity in [
            vec!["GET /app.js HTTP/1.1", "Host: x"],
            vec![
                "GET /app.js HTTP/1.1",
                "Host: x",
                "Accept-Encoding: gzip;q=0",
            ],
            vec![
                "GET /app.js HTTP/1.1",
                "Host: x",
                "Accept-Encoding: identity",
            ],
            vec![
                "GET /app.js HTTP/1.1",
                "Host: x",
                "Accept-Encoding: br, *;q=0",
            ],
        ] {
            let (r, head) = respond(&identity);
            assert_eq!(r.status, 200, "{identity:?}");
            assert_eq!(r.body, js.body, "{identity:?}");
            assert!(!head.contains("Content-Encoding"), "{head}");
            assert!(head.contains("Vary: Accept-Encoding\r\n"), "{head}");
            assert!(head.contains(&format!("ETag: {}\r\n", js.etag)), "{head}");
            assert!(head.contains(&format!("Content-Length: {}\r\n", js.body.len())));
        }

        // If-None-Match: each form's own ETag gives 304 for that form only.
        let inm_gzip = format!("If-None-Match: {gzip_etag}");
        let inm_plain = format!("If-None-Match: {}", js.etag);
        let ask = |inm: &str, gzip: bool| {
            let mut lines = vec!["GET /app.js HTTP/1.1", "Host: x", inm];
            if gzip {
                lines.push("Accept-Encoding: gzip");
            }
            respond(&lines)
        };
        let (r, head) = ask(&inm_gzip, true);
        assert_eq!(r.status, 304);
        assert!(head.contains(&format!("ETag: {gzip_etag}\r\n")), "{head}");
        assert!(head.contains("Vary: Accept-Encoding\r\n"), "{head}");
        assert!(!head.contains("Content-Encoding") && !head.contains("Content-Length"));
        let (r, head) = ask(&inm_plain, false);
        assert_eq!(r.status, 304);
        assert!(head.contains(&format!("ETag: {}\r\n", js.etag)), "{head}");
        assert!(head.contains("Vary: Accept-Encoding\r\n"), "{head}");
        assert_eq!(ask(&inm_plain, true).0.status, 200);
        assert_eq!(ask(&inm_gzip, false).0.status, 200);
    }

    #[test]
    fn a_huge_or_odd_accept_encoding_is_bounded_like_every_header() {
        let js = assets::find("/app.js").expect("app.js is embedded");
        // Over MAX_HEAD: refused before it is read.
        let huge = format!("Accept-Encoding: {}gzip", "x;q=0.5, ".repeat(MAX_HEAD / 9));
        assert_eq!(
            parse(&head(&["GET /app.js HTTP/1.1", "Host: x", &huge])),
            Err(HeadError::TooLarge)
        );
        // Within it: many elements, repeated fields, odd bytes; gzip found where it is.
        let long = format!("Accept-Encoding: {}gzip", "x;q=0.5, ".repeat(700));
        let (r, _) = respond(&[
            "GET /app.js HTTP/1.1",
            "Host: x",
            &long,
            "Accept-Encoding: br",
        ]);
        assert_eq!(r.body, js.gzip.unwrap());
        let mut odd = head(&["GET /app.js HTTP/1.1", "Host: x"]);
        odd.truncate(odd.len() - 2);
        odd.extend_from_slice(b"Accept-Encoding: \xff\xfe;q=;;,=,*;q=0\r\n\r\n");
        let (r, _) = parse(&odd).unwrap().unwrap();
        let Action::Respond(r) = route(&r, false) else {
            panic!()
        };
        assert_eq!((r.status, r.body), (200, js.body));
        let many: Vec<String> = (0..MAX_HEADERS)
            .map(|_| "Accept-Encoding: gzip".into())
            .collect();
        let mut lines = vec!["GET /app.js HTTP/1.1", "Host: x"];
        lines.extend(many.iter().map(String::as_str));
        assert_eq!(parse(&head(&lines)), Err(HeadError::TooLarge));
    }

    #[test]
    fn the_origin_must_be_this_server_over_https() {
        let host = Some("chat.example:7667");
        assert!(origin_allowed(Some("https://chat.example:7667"), host));
        assert!(origin_allowed(Some("HTTPS://CHAT.example:7667"), host));
        for bad in [
            "http://chat.example:7667",
            "https://chat.example",
            "https://evil.example",
            "https://chat.example:7667.evil.example",
            "null",
            "",
            "https://",
        ] {
            assert!(!origin_allowed(Some(bad), host), "{bad}");
        }
        assert!(!origin_allowed(None, host));
        assert!(!origin_allowed(Some("https://"), Some("")));
        assert!(!origin_allowed(Some("https://x"), None));
    }

    #[test]
    fn upgrades_need_every_header_and_the_right_origin() {
        let ok = req(&UPGRADE);
        assert_eq!(
            route(&ok, false),
            Action::Upgrade {
                // RFC 6455 section 1.3's example.
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()
            }
        );
        let status = |lines: &[&str]| match route(&req(lines), false) {
            Action::Respond(r) => r.status,
            Action::Upgrade { .. } => 101,
        };
        let without = |prefix: &str| -> Vec<&str> {
            UPGRADE
                .iter()
                .copied()
                .filter(|l| !l.starts_with(prefix))
                .collect()
        };
        assert_eq!(status(&without("Origin")), 403);
        let mut evil = without("Origin");
        evil.push("Origin: https://evil.example");
        assert_eq!(status(&evil), 403);
        assert_eq!(status(&without("Upgrade")), 400);
        assert_eq!(status(&without("Connection")), 400);
        assert_eq!(status(&without("Sec-WebSocket-Key")), 400);
        let mut v8 = without("Sec-WebSocket-Version");
        v8.push("Sec-WebSocket-Version: 8");
        assert_eq!(status(&v8), 426);
        let text = String::from_utf8(switching("abc").render(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("Sec-WebSocket-Accept: abc\r\n"));
        assert!(!text.contains("Content-Length"));
    }
}
