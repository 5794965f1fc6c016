//! Reaching a server: the address, TCP, TLS (always verified: a CA from `--ca`, or a pinned
//! fingerprint from the known-servers file), and why a connection could not be made, in words.
//! The login that follows is the protocol core's ([`crate::core`]); [`crate::driver`] puts the
//! two together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mm_common::protocol::{ErrorCode, ALPN};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_rustls::client::TlsStream;

use crate::core::{ClientState, LoginError};
use crate::secure::SecureSetup;
use crate::trust::{KnownServers, Observed, PinVerifier, SystemRoots};

/// How the server is to be trusted.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Verify against these CA certificates (from `--ca`).
    Roots(Vec<CertificateDer<'static>>),
    /// Verify against the fingerprint pinned in this file.
    Known(KnownServers),
}

/// How the server of the last successful TLS handshake made with a [`ConnectOptions`] (or a
/// clone) was verified; shared by the clones, so a front end can say it after `connect`.
#[derive(Debug, Clone, Default)]
pub struct LastVerification(Arc<Mutex<Option<Verification>>>);

/// How a server was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Its chain verified against the system's root certificates for this host name.
    SystemRoots {
        /// The name verified (the host of `--server`).
        host: String,
    },
    /// Against the CA from `--ca`.
    Ca,
    /// Against the CA fingerprint pinned in `known_servers`.
    Pinned,
}

impl LastVerification {
    /// How the last handshake's server was verified (`None` before the first).
    pub fn get(&self) -> Option<Verification> {
        self.0.lock().ok().and_then(|v| v.clone())
    }

    fn set(&self, how: Verification) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(how);
        }
    }
}

/// Test-only: `MM_TEST_RESOLVE=NAME=ADDRESS` makes `mm` connect to ADDRESS (an IP address)
/// when `--server` names NAME, while TLS still verifies the server's certificate for NAME. The
/// end-to-end tests use it to reach a local server under a public-looking name (the ACME
/// tests' `chat.mm.test`) without changing the machine's `/etc/hosts`. Not for users.
pub const TEST_RESOLVE_ENV: &str = "MM_TEST_RESOLVE";

/// The address [`TEST_RESOLVE_ENV`] gives for `host`, if it names it.
fn test_resolve(host: &str) -> Option<std::net::IpAddr> {
    let value = std::env::var(TEST_RESOLVE_ENV).ok()?;
    let (name, ip) = value.split_once('=')?;
    if !name.eq_ignore_ascii_case(host) {
        return None;
    }
    ip.trim().parse().ok()
}

/// Everything [`connect`](crate::driver::connect) needs.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port`, `[v6]:port`.
    pub server: String,
    /// The nick to log in with.
    pub nick: String,
    /// How to verify the server.
    pub trust: Trust,
    /// The file the [`Trust::Roots`] certificates were read from (`--ca`), named when the server
    /// turns out not to be signed by them.
    pub ca_file: Option<PathBuf>,
    /// Limit for each of TCP connect, TLS handshake, and hello-to-welcome.
    pub connect_timeout: Duration,
    /// If nothing at all arrives from the server for this long, the connection is considered
    /// dead. The server pings quiet clients every 30 s by default, so a live server is never
    /// silent this long.
    pub read_timeout: Duration,
    /// Identity, pins and tunables for end-to-end sessions.
    pub secure: SecureSetup,
    /// The client certificate presented to the server, which owns our nick there. Without
    /// one, servers that register nicks refuse the login (`certificate-required`).
    pub certificate: Option<mm_certs::ClientIdentity>,
    /// What this process has received (shared by every connection made with these options
    /// or their clones: a reconnect does not show personal lines again).
    pub state: ClientState,
    /// Keep the list of users online the server sends at login ([`crate::Welcome::online`]):
    /// on for front ends that show it; off for load generators, so that 10,000 connections
    /// do not each hold a 10,000-nick list.
    pub user_list: bool,
    /// Reconnect by itself when the connection drops (with backoff: 1, 2, 4 ... 30 s), and
    /// keep the [`crate::Client`] and [`crate::Events`] across connections; see
    /// [`crate::Event::Reconnecting`]. Off by default: a program that wants each connection's
    /// end (a script piping into `mm`) gets it.
    pub reconnect: bool,
    /// How the server was verified at the last handshake (set by every connection made with
    /// these options or their clones).
    pub verified: LastVerification,
}

impl ConnectOptions {
    /// Options with default timeouts (10 s to connect, 3 min of server silence), a fresh
    /// in-memory end-to-end identity with no pins, and a fresh in-memory client certificate (so
    /// a new account: `mm` keeps both in its home directory instead).
    pub fn new(server: impl Into<String>, nick: impl Into<String>, trust: Trust) -> Self {
        ConnectOptions {
            server: server.into(),
            nick: nick.into(),
            trust,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(180),
            secure: SecureSetup::ephemeral(),
            // Generation only fails if the system RNG does; the server then says a certificate
            // is required, which is the truth.
            certificate: mm_certs::ClientIdentity::generate().ok(),
            state: ClientState::new(),
            user_list: true,
            reconnect: false,
            verified: LastVerification::default(),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// `--server` is not `HOST` or `HOST:PORT` (see [`server_address`]).
    #[error("'{0}' is not a server address: give HOST or HOST:PORT, for example chat.example.org or 192.168.1.20:7667")]
    BadAddress(String),
    /// The host name could not be looked up.
    #[error("cannot reach {server}: the name {host} could not be looked up ({}); check the name in --server, and that this computer is online", lookup_words(.cause))]
    UnknownHost {
        /// The server.
        server: String,
        /// The host part.
        host: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// TCP connect failed.
    #[error("cannot reach {server}: {}", crate::explain::unreachable(.cause))]
    Unreachable {
        /// The server.
        server: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// A step took longer than the connect timeout.
    #[error("{}", timeout_words(.server, .step))]
    Timeout {
        /// The server.
        server: String,
        /// Which step.
        step: &'static str,
    },
    /// No pin and no CA: the user must decide whether to trust this fingerprint.
    #[error("{server} is not a known server (CA fingerprint {fingerprint})")]
    UnknownServer {
        /// The server.
        server: String,
        /// SHA-256 fingerprint of the CA certificate it presented.
        fingerprint: String,
    },
    /// The server presented a different certificate than the pinned one: possibly an attack.
    #[error("{}", changed_words(.server, .expected, .found, .trust_presented, *.publicly_trusted))]
    ServerKeyChanged {
        /// The server.
        server: String,
        /// The pinned fingerprint.
        expected: String,
        /// What it presented.
        found: String,
        /// The file holding the pin.
        known_file: PathBuf,
        /// The command that trusts the presented CA instead (`mm trust add HOST:PORT FINGERPRINT`,
        /// with the options that find this file), or, when the presented chain is publicly
        /// trusted, the one that forgets the pin (`mm trust forget HOST:PORT`).
        trust_presented: String,
        /// Whether the presented chain verifies against the system's root certificates for
        /// the name (the pin was kept; this changes only the advice).
        publicly_trusted: bool,
    },
    /// TLS failed for another reason (e.g. the certificate does not cover this name, or the
    /// server does not speak TLS); said in plain words with what to do.
    #[error("{}", crate::explain::handshake(.server, .cause, .verified))]
    Tls {
        /// The server.
        server: String,
        /// The cause.
        cause: std::io::Error,
        /// How the server was to be verified (for the advice).
        verified: crate::explain::Verified,
    },
    /// The server refused the login.
    #[error("server refused the login: {detail} ({code})")]
    Refused {
        /// Error code.
        code: ErrorCode,
        /// Detail from the server.
        detail: String,
    },
    /// The server broke the protocol or closed the connection during login.
    #[error("login failed: {0}")]
    Protocol(String),
    /// Reading the known-servers file failed.
    #[error(transparent)]
    KnownServers(#[from] crate::trust::KnownServersError),
    /// The TLS configuration could not be built (said in full).
    #[error("{0}")]
    Config(String),
}

impl ConnectError {
    /// Whether trying again later may work: not after a refusal retrying cannot change (a
    /// changed or unknown server certificate, a refused login other than "busy" or "shutting
    /// down", a damaged configuration).
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::ServerKeyChanged { .. }
            | ConnectError::UnknownServer { .. }
            | ConnectError::BadAddress(_)
            | ConnectError::KnownServers(_)
            | ConnectError::Config(_) => false,
            ConnectError::Refused { code, .. } => {
                *code == ErrorCode::SHUTTING_DOWN || *code == ErrorCode::BUSY
            }
            // The certificate does not verify (a new CA, not the --ca given, a name it does
            // not cover): the same answer every time, and maybe an attack.
            ConnectError::Tls { cause, .. } => !matches!(
                cause
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
                Some(rustls::Error::InvalidCertificate(_))
            ),
            _ => true,
        }
    }
}

/// How [`ConnectError::ServerKeyChanged`] reads.
fn changed_words(
    server: &str,
    expected: &str,
    found: &str,
    trust_presented: &str,
    publicly_trusted: bool,
) -> String {
    let head = format!(
        "the certificate of {server} has CHANGED since you trusted it\n  trusted:   {expected}\n  presented: {found}\n"
    );
    if publicly_trusted {
        format!(
            "{head}The presented certificate is publicly trusted (the system's root certificates vouch for this name), as after a move to a certificate from a public CA (mm-server --acme-domain); but it may also be an attack by someone who obtained a certificate for the name.\nAsk the operator whether the server moved. If it did, stop pinning its old CA with\n  {trust_presented}\nthen connect again (/reconnect in the terminal UI): from then on the system's root certificates verify it."
        )
    } else {
        format!(
            "{head}This may be an attack (someone between you and the server), or its operator made a new CA.\nAsk the operator which fingerprint is right. If it is the presented one, trust it instead with\n  {trust_presented}\nthen connect again (/reconnect in the terminal UI)."
        )
    }
}

/// A failed name lookup in words: the resolver's own, without its preamble and number.
fn lookup_words(e: &std::io::Error) -> String {
    let words = crate::explain::io_words(e);
    words
        .strip_prefix("failed to lookup address information: ")
        .map_or(words.clone(), |w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_lowercase().chain(chars).collect())
                .unwrap_or_default()
        })
}

/// A connection step that took too long, in words.
fn timeout_words(server: &str, step: &str) -> String {
    match step {
        "TCP connect" => format!(
            "{server} did not answer (no connection within the time allowed): a firewall, or the wrong address in --server?"
        ),
        "TLS handshake" => format!(
            "{server} took the connection but did not set up a secure connection in time: it may not be a Multi-Messenger server (check --server), or it is overloaded (try again later)"
        ),
        "login" => format!(
            "{server} did not answer the login in time: it may be overloaded; try again later"
        ),
        other => format!("{server} did not answer in time ({other})"),
    }
}

impl From<LoginError> for ConnectError {
    fn from(e: LoginError) -> ConnectError {
        match e {
            LoginError::Refused { code, detail } => ConnectError::Refused { code, detail },
            LoginError::Protocol(why) => ConnectError::Protocol(why),
            LoginError::Timeout => ConnectError::Timeout {
                server: String::new(),
                step: "login",
            },
        }
    }
}

/// The canonical `HOST:PORT` form of a server address as a user types it: `chat.example.org`,
/// `chat.example.org:7667`, `192.168.1.20`, `192.168.1.20:7667`, `::1`, `[::1]` or `[::1]:7667`.
/// Without a port, [`DEFAULT_PORT`](mm_common::protocol::DEFAULT_PORT); IPv6 addresses come back
/// in brackets. `None` for anything else (an empty host, a port that is not 1–65535, spaces).
/// Known servers are remembered under this form, so `localhost` and `localhost:7667` are one.
pub fn server_address(input: &str) -> Option<String> {
    let (host, port) = split_host_port(input)?;
    Some(match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    })
}

/// `(host, port)` of a server address in any form [`server_address`] takes; IPv6 without
/// brackets.
pub(crate) fn split_host_port(server: &str) -> Option<(String, u16)> {
    const DEFAULT: u16 = mm_common::protocol::DEFAULT_PORT;
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return (addr.port() != 0).then(|| (addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = server.parse::<std::net::IpAddr>() {
        return Some((ip.to_string(), DEFAULT));
    }
    if let Some(v6) = server.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let ip = v6.parse::<std::net::Ipv6Addr>().ok()?;
        return Some((ip.to_string(), DEFAULT));
    }
    let (host, port) = match server.rsplit_once(':') {
        // Digits only: `+80` and ` 80` are not ports, whatever `u16::from_str` takes.
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, port.parse::<u16>().ok().filter(|p| *p != 0)?)
        }
        Some(_) => return None,
        None => (server, DEFAULT),
    };
    // A name TLS can check a certificate against (RFC 1035 labels, not all digits: `127.1`
    // and `a..b` are refused here, not after the home was made).
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if host.is_empty()
        || !host.chars().all(valid)
        || !matches!(
            rustls_pki_types::ServerName::try_from(host),
            Ok(rustls_pki_types::ServerName::DnsName(_))
        )
    {
        return None;
    }
    Some((host.to_owned(), port))
}

/// Connects to `opts.server` and sets up TLS, verifying the server; returns the stream and the
/// server's address in its canonical form ([`server_address`]).
///
/// # Errors
/// [`ConnectError`] says which step failed; [`ConnectError::UnknownServer`] and
/// [`ConnectError::ServerKeyChanged`] carry the fingerprint the server presented.
pub(crate) async fn tls_connect(
    opts: &ConnectOptions,
) -> Result<(TlsStream<TcpStream>, String), ConnectError> {
    let server = server_address(&opts.server)
        .ok_or_else(|| ConnectError::BadAddress(opts.server.clone()))?;
    let (host, port) =
        split_host_port(&server).ok_or_else(|| ConnectError::BadAddress(server.clone()))?;
    let server_name =
        ServerName::try_from(host.clone()).map_err(|_| ConnectError::BadAddress(server.clone()))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    let mut observed: Option<Arc<Mutex<Option<Observed>>>> = None;
    let mut known_pins: Option<&KnownServers> = None;
    let builder = match &opts.trust {
        Trust::Roots(certs) => {
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert.clone()).map_err(|_| {
                    ConnectError::Config(match &opts.ca_file {
                        Some(file) => format!(
                            "{} does not hold a certificate mm can check servers with (a damaged file?); --ca takes the server's ca.pem",
                            file.display()
                        ),
                        None => "a CA certificate mm was given is damaged".into(),
                    })
                })?;
            }
            builder.with_root_certificates(roots)
        }
        Trust::Known(known) => {
            let pin = known.lookup(&server)?.map(|p| p.fingerprint);
            let system = SystemRoots::load(&provider);
            let (verifier, seen) =
                PinVerifier::with_system_roots(pin, Arc::clone(&provider), system);
            observed = Some(seen);
            known_pins = Some(known);
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
    };
    let mut config = match &opts.certificate {
        Some(id) => builder
            .with_client_auth_cert(vec![id.cert.clone()], id.key())
            .map_err(|e| {
                ConnectError::Config(format!(
                    "your client certificate (client.pem and client.key in your home) cannot be used: {e}"
                ))
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let deadline = Instant::now() + opts.connect_timeout;
    let lookup = async {
        match test_resolve(&host) {
            Some(ip) => Ok(vec![SocketAddr::new(ip, port)]),
            None => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(Iterator::collect),
        }
    };
    let addrs: Vec<SocketAddr> = match tokio::time::timeout_at(deadline, lookup).await {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(cause)) => {
            return Err(ConnectError::UnknownHost {
                server,
                host: host.clone(),
                cause,
            })
        }
        Err(_) => {
            return Err(ConnectError::Timeout {
                server,
                step: "TCP connect",
            })
        }
    };
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(&addrs[..])).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => {
            return Err(ConnectError::Unreachable {
                server,
                cause: source,
            })
        }
        Err(_) => {
            return Err(ConnectError::Timeout {
                server,
                step: "TCP connect",
            })
        }
    };
    let _ = tcp.set_nodelay(true);
    let tls = match timeout(opts.connect_timeout, connector.connect(server_name, tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(source)) => {
            let seen = observed
                .as_ref()
                .and_then(|o| o.lock().ok().and_then(|mut s| s.take()));
            return Err(match seen {
                Some(Observed::Unknown(fingerprint)) => ConnectError::UnknownServer {
                    server,
                    fingerprint,
                },
                Some(Observed::Changed {
                    expected,
                    found,
                    publicly_trusted,
                }) => ConnectError::ServerKeyChanged {
                    trust_presented: {
                        let args = if publicly_trusted {
                            format!("forget {server}")
                        } else {
                            format!("add {server} {found}")
                        };
                        known_pins.map_or_else(|| format!("mm trust {args}"), |k| k.command(&args))
                    },
                    publicly_trusted,
                    server,
                    expected,
                    found,
                    known_file: known_pins
                        .map(|k| k.path().to_path_buf())
                        .unwrap_or_default(),
                },
                // Verified (by the system's roots or not at all), then failed otherwise.
                Some(Observed::SystemRoots) | None => ConnectError::Tls {
                    verified: match known_pins {
                        Some(k) => crate::explain::Verified::Pin(k.path().to_path_buf()),
                        None => crate::explain::Verified::Ca(opts.ca_file.clone()),
                    },
                    server,
                    cause: source,
                },
            });
        }
        Err(_) => {
            return Err(ConnectError::Timeout {
                server,
                step: "TLS handshake",
            })
        }
    };

    let seen = observed
        .as_ref()
        .and_then(|o| o.lock().ok().and_then(|mut s| s.take()));
    opts.verified.set(match (&opts.trust, seen) {
        (Trust::Roots(_), _) => Verification::Ca,
        (Trust::Known(_), Some(Observed::SystemRoots)) => Verification::SystemRoots { host },
        (Trust::Known(_), _) => Verification::Pinned,
    });
    Ok((tls, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reconnecting stops at a certificate that does not verify (a server with a new CA, not
    /// the one in --ca): it was retried every 30 s for ever.
    #[test]
    fn a_certificate_that_does_not_verify_is_not_retried_and_a_reset_is() {
        let tls = |cause: std::io::Error| ConnectError::Tls {
            server: "h:1".into(),
            cause,
            verified: crate::explain::Verified::Ca(None),
        };
        let bad_cert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(!tls(bad_cert).is_retryable());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(tls(reset).is_retryable());
        let refused = ConnectError::Unreachable {
            server: "h:1".into(),
            cause: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(refused.is_retryable());
    }

    #[test]
    fn a_connect_error_says_its_cause_once() {
        let cause =
            || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        for (e, words) in [
            (
                ConnectError::Unreachable {
                    server: "localhost:7667".into(),
                    cause: cause(),
                },
                "nothing is listening there",
            ),
            (
                ConnectError::Tls {
                    server: "localhost:7667".into(),
                    cause: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                    ),
                    verified: crate::explain::Verified::Ca(None),
                },
                "is not a Multi-Messenger server",
            ),
        ] {
            // As mm prints it (anyhow's alternate form shows the chain of sources).
            let shown = format!("{:#}", anyhow::Error::from(e));
            assert_eq!(shown.matches(words).count(), 1, "{shown}");
            assert!(
                !shown.contains("os error") && !shown.contains("InvalidContentType"),
                "{shown}"
            );
        }
    }

    #[test]
    fn timeouts_and_failed_lookups_say_which_step_in_words() {
        let timeout = |step| ConnectError::Timeout {
            server: "h:1".into(),
            step,
        };
        assert_eq!(
            timeout("TCP connect").to_string(),
            "h:1 did not answer (no connection within the time allowed): a firewall, or the wrong address in --server?"
        );
        assert_eq!(
            timeout("TLS handshake").to_string(),
            "h:1 took the connection but did not set up a secure connection in time: it may not be a Multi-Messenger server (check --server), or it is overloaded (try again later)"
        );
        let lookup = ConnectError::UnknownHost {
            server: "nowhere.invalid:1".into(),
            host: "nowhere.invalid".into(),
            cause: std::io::Error::other(
                "failed to lookup address information: Name or service not known",
            ),
        };
        assert_eq!(
            lookup.to_string(),
            "cannot reach nowhere.invalid:1: the name nowhere.invalid could not be looked up (name or service not known); check the name in --server, and that this computer is online"
        );
    }

    #[test]
    fn a_changed_server_certificate_names_both_fingerprints_and_the_command_that_trusts_the_new_one(
    ) {
        let e = ConnectError::ServerKeyChanged {
            server: "127.0.0.1:7667".into(),
            expected: "AA:AA".into(),
            found: "BB:BB".into(),
            known_file: PathBuf::from("/h/known_servers"),
            trust_presented: "mm trust add 127.0.0.1:7667 BB:BB --nick bob".into(),
            publicly_trusted: false,
        };
        assert_eq!(
            e.to_string(),
            "the certificate of 127.0.0.1:7667 has CHANGED since you trusted it\n  trusted:   AA:AA\n  presented: BB:BB\nThis may be an attack (someone between you and the server), or its operator made a new CA.\nAsk the operator which fingerprint is right. If it is the presented one, trust it instead with\n  mm trust add 127.0.0.1:7667 BB:BB --nick bob\nthen connect again (/reconnect in the terminal UI)."
        );
    }

    #[test]
    fn a_pinned_server_now_publicly_trusted_is_a_change_with_the_command_that_forgets_the_pin() {
        let e = ConnectError::ServerKeyChanged {
            server: "chat.example.org:7667".into(),
            expected: "AA:AA".into(),
            found: "CC:CC".into(),
            known_file: PathBuf::from("/h/known_servers"),
            trust_presented: "mm trust forget chat.example.org:7667".into(),
            publicly_trusted: true,
        };
        let words = e.to_string();
        assert!(
            words.starts_with("the certificate of chat.example.org:7667 has CHANGED since you trusted it\n  trusted:   AA:AA\n  presented: CC:CC\nThe presented certificate is publicly trusted"),
            "{words}"
        );
        assert!(words.contains("may also be an attack"), "{words}");
        assert!(
            words.contains("\n  mm trust forget chat.example.org:7667\nthen connect again"),
            "{words}"
        );
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("localhost:7667"),
            Some(("localhost".into(), 7667))
        );
        assert_eq!(
            split_host_port("192.168.1.5:1"),
            Some(("192.168.1.5".into(), 1))
        );
        assert_eq!(split_host_port("[::1]:7667"), Some(("::1".into(), 7667)));
        assert_eq!(split_host_port(":7667"), None);
        assert_eq!(split_host_port("host:99999"), None);
        assert_eq!(split_host_port("host:0"), None);
        assert_eq!(split_host_port("host:"), None);
        assert_eq!(split_host_port("two words"), None);
        assert_eq!(split_host_port("a:b:c"), None);
        assert_eq!(split_host_port(""), None);
    }

    /// A host without a port takes the default port (`mm --server localhost` was refused), and
    /// every spelling of one address is one known server.
    #[test]
    fn server_addresses_default_the_port_and_have_one_form() {
        for (typed, canonical) in [
            ("localhost", "localhost:7667"),
            ("localhost:7667", "localhost:7667"),
            ("chat.example.org", "chat.example.org:7667"),
            ("chat.example.org:443", "chat.example.org:443"),
            ("192.168.1.20", "192.168.1.20:7667"),
            ("192.168.1.20:9000", "192.168.1.20:9000"),
            ("::1", "[::1]:7667"),
            ("[::1]", "[::1]:7667"),
            ("[::1]:7667", "[::1]:7667"),
            ("[0:0::1]:8000", "[::1]:8000"),
        ] {
            assert_eq!(server_address(typed).as_deref(), Some(canonical), "{typed}");
        }
        for bad in [
            "127.1",
            "2130706433",
            "a..b",
            "1.2.3.4.5",
            "999.1.1.1",
            "host:+80",
            "host: 80",
            "-",
            "",
            ":7667",
            "host:",
            "host:0",
            "host:x",
            "[::1",
            "a b",
            "::1:7667:x",
        ] {
            assert_eq!(server_address(bad), None, "{bad:?}");
        }
    }
}
