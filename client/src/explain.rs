//! What went wrong with the network or TLS, in plain words with what to do next.
//!
//! rustls and the OS describe failures for programmers: `received corrupt message of type
//! InvalidContentType`, `invalid peer certificate: BadSignature`, `peer closed connection
//! without sending TLS close_notify: https://docs.rs/...`, `Connection refused (os error 111)`.
//! Everything `mm` says about a connection goes through here instead: one sentence per cause,
//! in words a user knows, naming what to check or do. No library's type names and no
//! documentation links reach the user ([`scrub`] is the last guard for text from elsewhere).

use std::borrow::Cow;
use std::io::ErrorKind;
use std::path::PathBuf;

use rustls::{AlertDescription as Alert, CertificateError};

/// How the server was to be verified, for the advice when it could not be.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verified {
    /// Against CA certificates, read from this file (`--ca`) when known.
    Ca(Option<PathBuf>),
    /// Against the fingerprint the user accepted before, kept in this file (`known_servers`).
    Pin(PathBuf),
}

/// The rustls error inside an I/O error from tokio-rustls, if there is one.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The host part of `host:port` (`[v6]:port` included).
fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A time from a certificate check, as `YYYY-MM-DD HH:MM UTC`.
fn utc(t: rustls::pki_types::UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => "an impossible date".into(),
    }
}

/// The names a certificate covers, from rustls' list (`DnsName("localhost")`,
/// `IpAddress(0::1)`), as a user writes them (`localhost`, `::1`).
fn names(presented: &[String]) -> String {
    let names: Vec<String> = presented
        .iter()
        .filter_map(|p| {
            if let Some(dns) = p
                .strip_prefix("DnsName(\"")
                .and_then(|s| s.strip_suffix("\")"))
            {
                return Some(dns.to_owned());
            }
            let ip = p.strip_prefix("IpAddress(")?.strip_suffix(')')?;
            Some(
                ip.parse::<std::net::IpAddr>()
                    .map_or_else(|_| ip.to_owned(), |ip| ip.to_string()),
            )
        })
        .collect();
    if names.is_empty() {
        "no name mm can use".into()
    } else {
        names.join(", ")
    }
}

/// What to say about an alert the server sent while refusing the handshake (or, with TLS 1.3,
/// right after it, when it refuses our client certificate).
fn refused_by_server(server: &str, alert: Alert) -> String {
    match alert {
        Alert::BadCertificate
        | Alert::UnknownCA
        | Alert::CertificateRequired
        | Alert::UnsupportedCertificate
        | Alert::CertificateUnknown
        | Alert::CertificateRevoked
        | Alert::CertificateExpired
        | Alert::AccessDenied
        | Alert::DecryptError => format!(
            "{server} refused mm's client certificate (the key that owns your nick; TLS alert: {}): a Multi-Messenger server accepts any, so it may be another kind of server; check --server, or ask its operator",
            mm_common::text::words(&format!("{alert:?}"))
        ),
        Alert::HandshakeFailure | Alert::ProtocolVersion | Alert::InsufficientSecurity => format!(
            "{server} and mm have no TLS version or encryption in common (mm needs TLS 1.2 or 1.3): it is not a Multi-Messenger server, or a very old one; check --server"
        ),
        Alert::NoApplicationProtocol => format!(
            "{server} speaks TLS but not the Multi-Messenger protocol (a web server?); check the port in --server (mm-server listens on 7667 unless told otherwise)"
        ),
        other => format!(
            "{server} ended the secure connection (TLS alert: {}): it may not be a Multi-Messenger server; check --server, or ask its operator",
            mm_common::text::words(&format!("{other:?}"))
        ),
    }
}

/// Why the TLS handshake with `server` failed (the pin checks aside: a server not known yet,
/// or a changed certificate, are said by their own errors).
pub fn handshake(server: &str, e: &std::io::Error, verified: &Verified) -> String {
    let Some(tls) = rustls_error(e) else {
        return match e.kind() {
            ErrorKind::UnexpectedEof => format!(
                "{server} closed the connection before a secure connection was set up: it may not be a Multi-Messenger server (check --server), or it is overloaded or stopping (try again later)"
            ),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => format!(
                "{server} cut the connection (reset) before a secure connection was set up: it may not be a Multi-Messenger server (check --server), or it is overloaded or stopping (try again later)"
            ),
            _ => format!(
                "the connection to {server} failed while setting up a secure connection: {}",
                io_words(e)
            ),
        };
    };
    match tls {
        rustls::Error::InvalidMessage(_) => format!(
            "{server} is not a Multi-Messenger server: it does not answer with TLS as mm-server does (another program on that port, a web server?); check the port in --server (mm-server listens on 7667 unless told otherwise)"
        ),
        rustls::Error::AlertReceived(alert) => refused_by_server(server, *alert),
        rustls::Error::PeerIncompatible(_) => refused_by_server(server, Alert::HandshakeFailure),
        rustls::Error::InvalidCertificate(cert) => certificate(server, cert, verified),
        other => format!(
            "the secure connection with {server} broke off ({}): it may not be a Multi-Messenger server, or something between here and there interferes; check --server, or ask its operator",
            mm_common::text::words(&format!("{other:?}"))
        ),
    }
}

/// Why the server's certificate was not accepted.
fn certificate(server: &str, e: &CertificateError, verified: &Verified) -> String {
    let host = host_of(server);
    match e {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => match verified {
            Verified::Ca(Some(file)) => format!(
                "the certificate of {server} is not signed by the CA in {} — is --ca the right file? It must be the ca.pem of that server (in its TLS directory; mm-server logs its fingerprint at start): ask its operator",
                file.display()
            ),
            Verified::Ca(None) => format!(
                "the certificate of {server} is not signed by the CA mm was given: it must be the ca.pem of that server (in its TLS directory): ask its operator"
            ),
            Verified::Pin(_) => format!(
                "the certificates of {server} do not belong together: the CA matches the fingerprint you trusted, but it did not sign the server's certificate; someone may be intercepting the connection: ask the server's operator"
            ),
        },
        CertificateError::ExpiredContext { time, not_after } => format!(
            "the certificate of {server} expired on {} (this computer's clock says {}): the server's operator must renew it (mm-server does at start when its TLS directory holds ca.key; or mm-certs, then restart mm-server); if this computer's date is wrong, correct it",
            utc(*not_after),
            utc(*time)
        ),
        CertificateError::Expired => format!(
            "the certificate of {server} has expired: the server's operator must renew it (mm-server does at start when its TLS directory holds ca.key; or mm-certs, then restart mm-server); if this computer's date is wrong, correct it"
        ),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "the certificate of {server} is not valid before {} and this computer's clock says {}: one of the two clocks is wrong (this computer's, or the server's when it made the certificate); correct it and try again",
            utc(*not_before),
            utc(*time)
        ),
        CertificateError::NotValidYet => format!(
            "the certificate of {server} is not valid yet: this computer's clock or the server's is wrong; correct it and try again"
        ),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "the certificate of {server} does not cover the name {host} (it covers {}): connect with one of those in --server, or ask the operator to add {host} (mm-certs --name NAME or --ip ADDR, then restart mm-server)",
            names(presented)
        ),
        CertificateError::NotValidForName => format!(
            "the certificate of {server} does not cover the name {host}: connect with a name it covers in --server, or ask the operator to add {host} (mm-certs --name NAME or --ip ADDR, then restart mm-server)"
        ),
        other => format!(
            "the certificate of {server} cannot be used ({}): ask the server's operator",
            mm_common::text::words(&format!("{other:?}"))
                .split(" context")
                .next()
                .unwrap_or_default()
        ),
    }
}

/// Why a TCP connection to `server` could not be made.
pub fn unreachable(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => {
            "nothing is listening there (is mm-server running, and is the port in --server right?)"
                .into()
        }
        ErrorKind::TimedOut => "no answer (a firewall, or the wrong address in --server?)".into(),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
            "no route to it (is this computer online, and is the address in --server right?)".into()
        }
        ErrorKind::PermissionDenied => {
            "this computer does not allow the connection (a firewall rule?)".into()
        }
        _ => io_words(e),
    }
}

/// Why an established connection ended with an error (before or after the login).
pub fn lost(e: &std::io::Error) -> String {
    if let Some(rustls::Error::AlertReceived(alert)) = rustls_error(e) {
        return match alert {
            // TLS 1.3: a refused client certificate is only seen at the first read.
            Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateRequired
            | Alert::UnsupportedCertificate
            | Alert::CertificateUnknown
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::AccessDenied
            | Alert::DecryptError => refused_by_server("the server", *alert),
            other => format!(
                "the server ended the secure connection (TLS alert: {})",
                mm_common::text::words(&format!("{other:?}"))
            ),
        };
    }
    match e.kind() {
        // rustls' "peer closed connection without sending TLS close_notify".
        ErrorKind::UnexpectedEof => "the server closed the connection without saying goodbye: it stopped or crashed, or the network cut the connection".into(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
            "the connection was cut off (reset): the server stopped, or the network dropped it".into()
        }
        ErrorKind::TimedOut => "the network stopped answering".into(),
        ErrorKind::BrokenPipe => "the connection was closed while mm was sending".into(),
        _ => format!("the connection failed: {}", io_words(e)),
    }
}

/// An I/O error as a short phrase: the OS's words without its error number (`Connection
/// refused (os error 111)`: `connection refused`), and never a library's link.
pub fn io_words(e: &std::io::Error) -> String {
    if let Some(tls) = rustls_error(e) {
        return format!("TLS error: {}", mm_common::text::words(&format!("{tls:?}")));
    }
    scrub(&mm_common::text::os_words(e)).into_owned()
}

/// Removes documentation links (`https://docs.rs/...`, rustls' advice for programmers) and
/// the `: ` before them from text bound for the user.
pub fn scrub(text: &str) -> Cow<'_, str> {
    const LINK: &str = "https://docs.rs";
    if !text.contains(LINK) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(LINK) {
        let before = rest[..at].trim_end();
        let before = before.strip_suffix(':').unwrap_or(before).trim_end();
        out.push_str(before);
        let after = &rest[at..];
        let end = after
            .find(|c: char| c.is_whitespace() || c == ')')
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::UnixTime;
    use std::time::Duration;

    const SERVER: &str = "127.0.0.1:7667";

    fn tls(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(ErrorKind::InvalidData, e)
    }

    fn ca() -> Verified {
        Verified::Ca(Some(PathBuf::from("/home/al/ca.pem")))
    }

    /// No rustls type name, no link, no OS error number: what users met before.
    fn assert_plain(said: &str) {
        for jargon in [
            "InvalidContentType",
            "BadSignature",
            "UnknownIssuer",
            "NotValidForName",
            "Expired",
            "AlertReceived",
            "BadCertificate",
            "DnsName",
            "IpAddress",
            "close_notify",
            "docs.rs",
            "https://",
            "os error",
            "corrupt message",
            "tls handshake eof",
            "invalid peer certificate",
        ] {
            assert!(!said.contains(jargon), "{jargon:?} in {said:?}");
        }
    }

    #[test]
    fn a_server_that_does_not_speak_tls_is_said_to_be_no_multi_messenger_server() {
        for e in [
            rustls::InvalidMessage::InvalidContentType,
            rustls::InvalidMessage::UnknownProtocolVersion,
        ] {
            let said = handshake(SERVER, &tls(rustls::Error::InvalidMessage(e)), &ca());
            assert_eq!(
                said,
                "127.0.0.1:7667 is not a Multi-Messenger server: it does not answer with TLS as mm-server does (another program on that port, a web server?); check the port in --server (mm-server listens on 7667 unless told otherwise)"
            );
            assert_plain(&said);
        }
    }

    #[test]
    fn a_certificate_from_another_ca_names_the_ca_file() {
        for e in [
            CertificateError::BadSignature,
            CertificateError::UnknownIssuer,
        ] {
            let said = handshake(
                SERVER,
                &tls(rustls::Error::InvalidCertificate(e.clone())),
                &ca(),
            );
            assert_eq!(
                said,
                "the certificate of 127.0.0.1:7667 is not signed by the CA in /home/al/ca.pem — is --ca the right file? It must be the ca.pem of that server (in its TLS directory; mm-server logs its fingerprint at start): ask its operator"
            );
            assert_plain(&said);
            let pinned = handshake(
                SERVER,
                &tls(rustls::Error::InvalidCertificate(e)),
                &Verified::Pin(PathBuf::from("known_servers")),
            );
            assert!(pinned.contains("may be intercepting"), "{pinned}");
            assert_plain(&pinned);
        }
    }

    #[test]
    fn certificate_dates_are_said_with_the_dates_and_the_clock() {
        let at = |secs: u64| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let expired = CertificateError::ExpiredContext {
            time: at(1_800_000_000),
            not_after: at(1_700_000_000),
        };
        let said = handshake(
            SERVER,
            &tls(rustls::Error::InvalidCertificate(expired)),
            &ca(),
        );
        assert_eq!(
            said,
            "the certificate of 127.0.0.1:7667 expired on 2023-11-14 22:13 UTC (this computer's clock says 2027-01-15 08:00 UTC): the server's operator must renew it (mm-server does at start when its TLS directory holds ca.key; or mm-certs, then restart mm-server); if this computer's date is wrong, correct it"
        );
        assert_plain(&said);
        let early = CertificateError::NotValidYetContext {
            time: at(1_700_000_000),
            not_before: at(1_800_000_000),
        };
        let said = handshake(
            SERVER,
            &tls(rustls::Error::InvalidCertificate(early)),
            &ca(),
        );
        assert_eq!(
            said,
            "the certificate of 127.0.0.1:7667 is not valid before 2027-01-15 08:00 UTC and this computer's clock says 2023-11-14 22:13 UTC: one of the two clocks is wrong (this computer's, or the server's when it made the certificate); correct it and try again"
        );
        assert_plain(&said);
        for e in [CertificateError::Expired, CertificateError::NotValidYet] {
            assert_plain(&handshake(
                SERVER,
                &tls(rustls::Error::InvalidCertificate(e)),
                &ca(),
            ));
        }
    }

    #[test]
    fn a_certificate_for_other_names_lists_the_names_it_covers() {
        let e = CertificateError::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("127.0.0.2")
                .unwrap()
                .to_owned(),
            presented: vec![
                "DnsName(\"localhost\")".into(),
                "IpAddress(127.0.0.1)".into(),
                "IpAddress(0::1)".into(),
            ],
        };
        let said = handshake(
            "127.0.0.2:7667",
            &tls(rustls::Error::InvalidCertificate(e)),
            &ca(),
        );
        assert_eq!(
            said,
            "the certificate of 127.0.0.2:7667 does not cover the name 127.0.0.2 (it covers localhost, 127.0.0.1, ::1): connect with one of those in --server, or ask the operator to add 127.0.0.2 (mm-certs --name NAME or --ip ADDR, then restart mm-server)"
        );
        assert_plain(&said);
        assert_plain(&handshake(
            "[::1]:7667",
            &tls(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            )),
            &ca(),
        ));
    }

    #[test]
    fn a_server_that_closes_or_resets_during_the_handshake_is_said_so() {
        let eof = std::io::Error::new(ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(
            handshake(SERVER, &eof, &ca()),
            "127.0.0.1:7667 closed the connection before a secure connection was set up: it may not be a Multi-Messenger server (check --server), or it is overloaded or stopping (try again later)"
        );
        let reset = std::io::Error::from(ErrorKind::ConnectionReset);
        let said = handshake(SERVER, &reset, &ca());
        assert!(
            said.starts_with("127.0.0.1:7667 cut the connection (reset)"),
            "{said}"
        );
        assert_plain(&said);
    }

    #[test]
    fn a_refused_client_certificate_is_said_whenever_it_shows() {
        let e = tls(rustls::Error::AlertReceived(Alert::BadCertificate));
        let said = handshake(SERVER, &e, &ca());
        assert_eq!(
            said,
            "127.0.0.1:7667 refused mm's client certificate (the key that owns your nick; TLS alert: bad certificate): a Multi-Messenger server accepts any, so it may be another kind of server; check --server, or ask its operator"
        );
        assert_plain(&said);
        // With TLS 1.3 it arrives at the first read, after the handshake.
        let said = lost(&tls(rustls::Error::AlertReceived(
            Alert::CertificateRequired,
        )));
        assert_eq!(
            said,
            "the server refused mm's client certificate (the key that owns your nick; TLS alert: certificate required): a Multi-Messenger server accepts any, so it may be another kind of server; check --server, or ask its operator"
        );
        for alert in [
            Alert::HandshakeFailure,
            Alert::NoApplicationProtocol,
            Alert::InternalError,
            Alert::Unknown(200),
        ] {
            assert_plain(&handshake(
                SERVER,
                &tls(rustls::Error::AlertReceived(alert)),
                &ca(),
            ));
        }
    }

    #[test]
    fn a_lost_connection_says_how_without_the_tls_librarys_link() {
        // What rustls says when the server goes away without close_notify.
        let eof = std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
        );
        assert_eq!(
            lost(&eof),
            "the server closed the connection without saying goodbye: it stopped or crashed, or the network cut the connection"
        );
        let said = lost(&std::io::Error::from_raw_os_error(104));
        assert_eq!(
            said,
            "the connection was cut off (reset): the server stopped, or the network dropped it"
        );
        assert_plain(&lost(&std::io::Error::other(
            "strange: https://docs.rs/x/y#z",
        )));
    }

    #[test]
    fn an_unreachable_server_is_said_without_the_os_error_number() {
        let said = unreachable(&std::io::Error::from_raw_os_error(111));
        assert_eq!(
            said,
            "nothing is listening there (is mm-server running, and is the port in --server right?)"
        );
        assert_eq!(
            io_words(&std::io::Error::from_raw_os_error(13)),
            "permission denied"
        );
    }

    #[test]
    fn documentation_links_never_reach_the_user() {
        assert_eq!(
            scrub("peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof"),
            "peer closed connection without sending TLS close_notify"
        );
        assert_eq!(scrub("a (see https://docs.rs/x) b"), "a (see) b");
        assert_eq!(scrub("nothing to do"), "nothing to do");
    }
}
