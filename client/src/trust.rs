//! How the client decides to trust a server. There is no "insecure" mode: every connection is
//! verified, either
//!
//! * against a CA certificate file (`--ca`): standard WebPKI verification, server name included;
//!   or
//! * without `--ca`, first against the system's root certificates ([`SystemRoots`]: the
//!   distribution's bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set), server name
//!   included: a server with a publicly trusted certificate (`mm-server --acme-domain`) is
//!   accepted with nothing pinned, since such chains change intermediates and roots over time;
//!   and when that does not verify,
//! * against a fingerprint the user accepted before, kept in `known_servers` in the client's home
//!   (like SSH's `known_hosts`). The pinned fingerprint is that of the CA certificate the server
//!   presents at the end of its chain; the rest of the chain must verify against it, server name
//!   included, and the TLS handshake signature is checked as usual. A server presenting a lone
//!   self-signed certificate is pinned on that exact certificate.
//!
//! An unknown server, or one whose fingerprint changed, fails the handshake; the fingerprint it
//! presented is reported so that the user can compare it (first contact) or be warned (change).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Largest known_servers file read (a line is ~120 bytes: tens of thousands of servers).
const MAX_FILE: u64 = 4 * 1024 * 1024;
/// File in the client home holding accepted server fingerprints.
pub const KNOWN_SERVERS: &str = "known_servers";

/// Errors reading or writing the known-servers file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KnownServersError {
    /// I/O on the file.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
}

/// The `known_servers` file: lines of `host:port FINGERPRINT [DATE]` (the date the server was
/// trusted, `YYYY-MM-DD`, since `mm trust` shows it; older lines have none, and older versions
/// read only the first two words), `#` comments allowed. Rewritten whole and atomically (a
/// temporary file renamed over it, 0600 from the start) whenever it changes.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
    /// The options `mm trust` needs to find this same file (`--home DIR`, `--nick NICK`, or
    /// nothing for the default), for the commands named in messages.
    options: String,
}

/// A pinned entry found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The fingerprint.
    pub fingerprint: String,
    /// 1-based line number, for error messages.
    pub line: usize,
}

/// One trusted server, as `mm trust list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `host:port` as trusted (host in lower case).
    pub server: String,
    /// The CA fingerprint (SHA-256, colon-separated upper-case hex).
    pub fingerprint: String,
    /// When it was trusted (`YYYY-MM-DD`, UTC), if the line says.
    pub added: Option<String>,
}

/// Parses a line of the file; `None` for comments, blank and damaged lines.
fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (server, fingerprint) = (parts.next()?, parts.next()?);
    // A line spoiled by bytes that were not UTF-8 (read as U+FFFD) names no server.
    if !server.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(Entry {
        server: server.to_ascii_lowercase(),
        fingerprint: fingerprint.to_ascii_uppercase(),
        added: parts.next().map(str::to_owned),
    })
}

/// A SHA-256 fingerprint as `mm` writes it (`AB:CD:...`, 32 bytes), from what a user may type:
/// any case, with or without colons (or spaces). `None` if it is not 64 hex digits.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let upper = hex.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..32)
        .filter_map(|i| upper.get(2 * i..2 * i + 2))
        .collect();
    Some(pairs.join(":"))
}

impl KnownServers {
    /// The file in `home`.
    pub fn in_home(home: &Path) -> KnownServers {
        KnownServers {
            path: home.join(KNOWN_SERVERS),
            options: String::new(),
        }
    }

    /// The same, naming `options` (e.g. `--nick bob` or `--home DIR`) in the `mm trust`
    /// commands its messages suggest, so that they act on this file.
    #[must_use]
    pub fn with_options(mut self, options: impl Into<String>) -> KnownServers {
        self.options = options.into();
        self
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The command line for `mm trust ARGS` on this file: `mm trust forget host:7667 --nick bob`.
    pub fn command(&self, args: &str) -> String {
        if self.options.is_empty() {
            format!("mm trust {args}")
        } else {
            format!("mm trust {args} {}", self.options)
        }
    }

    fn io(&self) -> impl Fn(std::io::Error) -> KnownServersError + '_ {
        |cause| KnownServersError::Io {
            path: self.path.clone(),
            cause,
        }
    }

    /// The file's text; empty if it does not exist. Bytes that are not UTF-8 spoil only their
    /// line (it no longer parses and is skipped, as junk lines are), so `mm trust` can still
    /// repair the file.
    fn read(&self) -> Result<String, KnownServersError> {
        match mm_certs::read_limited(&self.path, MAX_FILE) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(self.io()(e)),
        }
    }

    /// Holds `known_servers.lock` (beside the file) until dropped, so that two `mm trust` (or a
    /// `mm` accepting a server) changing the file at once do not lose each other's change.
    fn lock(&self) -> Result<std::fs::File, KnownServersError> {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let path = self.path.with_file_name(name);
        if let Some(dir) = self.path.parent() {
            mm_certs::create_private_dir(dir).map_err(self.io())?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(self.io())?;
        file.lock().map_err(self.io())?;
        Ok(file)
    }

    /// Replaces the file with `text`, atomically and private (0600); the home directory is
    /// created (0700) if needed: the file tells which servers the user talks to.
    fn write(&self, text: &str) -> Result<(), KnownServersError> {
        if let Some(dir) = self.path.parent() {
            mm_certs::create_private_dir(dir).map_err(self.io())?;
        }
        mm_certs::write_secret(&self.path, text.as_bytes()).map_err(|e| match e {
            mm_certs::CertError::Io { error, .. } => self.io()(error),
            other => self.io()(std::io::Error::other(other.to_string())),
        })
    }

    /// The pin for `server` (`host:port`, host compared case-insensitively), if any.
    ///
    /// # Errors
    /// I/O errors other than a missing file.
    pub fn lookup(&self, server: &str) -> Result<Option<Pin>, KnownServersError> {
        let text = self.read()?;
        let wanted = server.to_ascii_lowercase();
        Ok(text.lines().enumerate().find_map(|(i, line)| {
            parse_line(line)
                .filter(|e| e.server == wanted)
                .map(|e| Pin {
                    fingerprint: e.fingerprint,
                    line: i + 1,
                })
        }))
    }

    /// Every trusted server, in the file's order (the first line for a server is the one that
    /// counts; later ones for the same server are not listed).
    ///
    /// # Errors
    /// I/O errors other than a missing file.
    pub fn list(&self) -> Result<Vec<Entry>, KnownServersError> {
        let mut entries: Vec<Entry> = Vec::new();
        for entry in self.read()?.lines().filter_map(parse_line) {
            if !entries.iter().any(|e| e.server == entry.server) {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Trusts `server` with `fingerprint` from today, replacing what was trusted for it; returns
    /// the entry it replaced. The rest of the file (comments included) stays as it was.
    ///
    /// # Errors
    /// I/O errors.
    pub fn add(&self, server: &str, fingerprint: &str) -> Result<Option<Entry>, KnownServersError> {
        let _lock = self.lock()?;
        let (mut text, old) = self.without(server)?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let today = jiff::Timestamp::now().strftime("%Y-%m-%d");
        text.push_str(&format!(
            "{} {} {today}\n",
            server.to_ascii_lowercase(),
            fingerprint.to_ascii_uppercase()
        ));
        self.write(&text)?;
        Ok(old)
    }

    /// Forgets `server`: the next connection to it asks again whether to trust it (or needs
    /// `--ca`). Returns what was trusted for it, `None` (and the file untouched) if nothing was.
    ///
    /// # Errors
    /// I/O errors.
    pub fn forget(&self, server: &str) -> Result<Option<Entry>, KnownServersError> {
        let _lock = self.lock()?;
        let (text, old) = self.without(server)?;
        if old.is_some() {
            self.write(&text)?;
        }
        Ok(old)
    }

    /// The file's text without the lines for `server`, and the first of them.
    fn without(&self, server: &str) -> Result<(String, Option<Entry>), KnownServersError> {
        let wanted = server.to_ascii_lowercase();
        let mut kept = String::new();
        let mut old = None;
        for line in self.read()?.lines() {
            match parse_line(line) {
                Some(entry) if entry.server == wanted => {
                    old.get_or_insert(entry);
                }
                _ => {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
        }
        Ok((kept, old))
    }
}

/// What the pinning verifier saw, for the caller to report after a failed handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// No pin existed; this is the fingerprint the server presented.
    Unknown(String),
    /// The server's chain verified against the system's root certificates for this name
    /// (the handshake went on; nothing was pinned).
    SystemRoots,
    /// The server presented this fingerprint, which is not the pinned one.
    Changed {
        /// The pinned fingerprint.
        expected: String,
        /// What the server presented.
        found: String,
        /// Whether its chain verifies against the system's roots for the name (a pin wins
        /// over them; this only changes the advice).
        publicly_trusted: bool,
    },
}

/// The system's root certificates, as a verifier of server certificates (WebPKI with the
/// server name checked). Read with `rustls-native-certs`: `SSL_CERT_FILE` and `SSL_CERT_DIR`
/// when set, else the system's bundle (on Debian `/etc/ssl/certs`).
#[derive(Debug, Clone)]
pub struct SystemRoots {
    verifier: Arc<WebPkiServerVerifier>,
}

impl SystemRoots {
    /// Loads the roots; `None` when there are none (no bundle installed, or none readable):
    /// then only `--ca` and pinned servers can be reached, as before.
    pub fn load(provider: &Arc<CryptoProvider>) -> Option<SystemRoots> {
        SystemRoots::from_certs(rustls_native_certs::load_native_certs().certs, provider)
    }

    /// The same from root certificates given (`None` for none usable).
    pub fn from_certs(
        certs: Vec<CertificateDer<'static>>,
        provider: &Arc<CryptoProvider>,
    ) -> Option<SystemRoots> {
        let mut roots = RootCertStore::empty();
        // Certificates the bundle holds that webpki cannot use are skipped, as browsers do.
        let (_added, _skipped) = roots.add_parsable_certificates(certs);
        if roots.is_empty() {
            return None;
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                .build()
                .ok()?;
        Some(SystemRoots { verifier })
    }
}

/// Verifies a server against the system's roots, else a pinned fingerprint (see the module
/// docs).
pub struct PinVerifier {
    pin: Option<String>,
    provider: Arc<CryptoProvider>,
    observed: Arc<Mutex<Option<Observed>>>,
    system: Option<SystemRoots>,
}

impl fmt::Debug for PinVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinVerifier")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl PinVerifier {
    /// A verifier expecting `pin` (or none: every server is then unknown and refused).
    pub fn new(
        pin: Option<String>,
        provider: Arc<CryptoProvider>,
    ) -> (Arc<Self>, Arc<Mutex<Option<Observed>>>) {
        PinVerifier::with_system_roots(pin, provider, None)
    }

    /// A verifier that accepts a server whose chain verifies against `system` for the name
    /// connected to, and otherwise expects `pin` as [`PinVerifier::new`].
    pub fn with_system_roots(
        pin: Option<String>,
        provider: Arc<CryptoProvider>,
        system: Option<SystemRoots>,
    ) -> (Arc<Self>, Arc<Mutex<Option<Observed>>>) {
        let observed = Arc::new(Mutex::new(None));
        (
            Arc::new(PinVerifier {
                pin,
                provider,
                observed: Arc::clone(&observed),
                system,
            }),
            observed,
        )
    }

    fn observe(&self, what: Observed) {
        if let Ok(mut slot) = self.observed.lock() {
            *slot = Some(what);
        }
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let publicly_trusted = self.system.as_ref().and_then(|system| {
            system
                .verifier
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .ok()
        });
        // A pin, where the user made one, wins over the system's roots: a server pinned on a
        // self-made CA that turns up with a publicly trusted chain is a change, said as one
        // (its operator may have moved to ACME; or someone obtained a certificate for the
        // name), never accepted silently.
        if self.pin.is_none() {
            if let Some(verified) = publicly_trusted {
                self.observe(Observed::SystemRoots);
                return Ok(verified);
            }
        }
        let anchor = intermediates.last().unwrap_or(end_entity);
        let found = mm_certs::fingerprint(anchor);
        let Some(expected) = &self.pin else {
            self.observe(Observed::Unknown(found));
            // Said to the server as "unknown CA", which its log words as a client that does
            // not trust it (yet).
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        };
        if *expected != found {
            self.observe(Observed::Changed {
                expected: expected.clone(),
                found,
                publicly_trusted: publicly_trusted.is_some(),
            });
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        }
        if intermediates.is_empty() {
            // A lone self-signed certificate, pinned exactly (the handshake signature is still
            // checked against it below).
            return Ok(ServerCertVerified::assertion());
        }
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        let webpki = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a chain (server certificate, CA) for `name`, as mm-certs makes them.
    fn chain_for(name: &str) -> (CertificateDer<'static>, Vec<CertificateDer<'static>>) {
        let dir = tempfile::tempdir().unwrap();
        let names = mm_certs::Names {
            dns: vec![name.into()],
            ips: Vec::new(),
        };
        mm_certs::generate(dir.path(), &names, false).unwrap();
        let ca = mm_certs::load_certs(&dir.path().join(mm_certs::CA_CERT)).unwrap();
        let chain = mm_certs::load_certs(&dir.path().join(mm_certs::SERVER_CERT)).unwrap();
        (ca[0].clone(), chain)
    }

    fn verify(
        pin: Option<String>,
        system: Option<SystemRoots>,
        chain: &[CertificateDer<'static>],
        name: &str,
    ) -> (bool, Option<Observed>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (verifier, seen) = PinVerifier::with_system_roots(pin, provider, system);
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let ok = verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .is_ok();
        let seen = seen.lock().unwrap().take();
        (ok, seen)
    }

    #[test]
    fn the_system_roots_vouch_for_their_names_only_and_pins_work_as_before() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (public_ca, public) = chain_for("chat.example.org");
        let system = || SystemRoots::from_certs(vec![public_ca.clone()], &provider);
        assert!(SystemRoots::from_certs(Vec::new(), &provider).is_none());
        // Verified by the system's roots for the name typed: accepted, nothing to pin.
        assert_eq!(
            verify(None, system(), &public, "chat.example.org"),
            (true, Some(Observed::SystemRoots))
        );
        // Another name: the system's roots do not vouch, and an unknown server is refused
        // exactly as before, with the fingerprint to compare.
        let fingerprint = mm_certs::fingerprint(&public_ca);
        assert_eq!(
            verify(None, system(), &public, "other.example.org"),
            (false, Some(Observed::Unknown(fingerprint.clone())))
        );
        // Without the system's roots it is an unknown server too.
        assert_eq!(
            verify(None, None, &public, "chat.example.org"),
            (false, Some(Observed::Unknown(fingerprint)))
        );
        // A self-made CA, pinned: accepted by the pin as before, whatever the system trusts.
        let (own_ca, own) = chain_for("chat.example.org");
        let own_fingerprint = mm_certs::fingerprint(&own_ca);
        let pin = Some(own_fingerprint.clone());
        assert_eq!(
            verify(pin.clone(), system(), &own, "chat.example.org"),
            (true, None)
        );
        // ...and a different pin with a chain the system does not vouch for: changed.
        let (other_ca, _) = chain_for("chat.example.org");
        let wrong = Some(mm_certs::fingerprint(&other_ca));
        let (ok, seen) = verify(wrong, system(), &own, "chat.example.org");
        assert!(!ok);
        assert!(
            matches!(
                seen,
                Some(Observed::Changed {
                    publicly_trusted: false,
                    ..
                })
            ),
            "{seen:?}"
        );
        // A pinned server that now presents a publicly trusted chain: the pin wins, and the
        // change is said (with what the system's roots make of it), not accepted silently.
        let (ok, seen) = verify(pin, system(), &public, "chat.example.org");
        assert!(!ok);
        assert_eq!(
            seen,
            Some(Observed::Changed {
                expected: own_fingerprint,
                found: mm_certs::fingerprint(&public_ca),
                publicly_trusted: true,
            })
        );
    }

    #[test]
    fn known_servers_round_trip_case_insensitive_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let known = KnownServers::in_home(&home);
        assert_eq!(known.lookup("localhost:7667").unwrap(), None);
        known.add("LocalHost:7667", "AA:BB").unwrap();
        known.add("other:1", "CC:DD").unwrap();
        assert_eq!(
            known.lookup("localhost:7667").unwrap(),
            Some(Pin {
                fingerprint: "AA:BB".into(),
                line: 1
            })
        );
        assert_eq!(
            known.lookup("OTHER:1").unwrap().unwrap().fingerprint,
            "CC:DD"
        );
        assert_eq!(known.lookup("other:2").unwrap(), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(known.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn trusted_servers_are_listed_forgotten_and_replaced_keeping_the_rest_of_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let known = KnownServers::in_home(&home);
        assert!(known.list().unwrap().is_empty());
        assert_eq!(known.forget("a:1").unwrap(), None);
        assert!(!known.path().exists(), "forgetting nothing writes nothing");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            known.path(),
            "# mine\nold:1 AA:BB\nnew:2 cc:dd 2026-01-02\nOLD:1 EE:FF\n",
        )
        .unwrap();
        let entry = |server: &str, fp: &str, added: Option<&str>| Entry {
            server: server.into(),
            fingerprint: fp.into(),
            added: added.map(str::to_owned),
        };
        assert_eq!(
            known.list().unwrap(),
            vec![
                entry("old:1", "AA:BB", None),
                entry("new:2", "CC:DD", Some("2026-01-02"))
            ]
        );
        // Forgetting removes every line of that server, and only those.
        assert_eq!(
            known.forget("Old:1").unwrap(),
            Some(entry("old:1", "AA:BB", None))
        );
        assert_eq!(
            std::fs::read_to_string(known.path()).unwrap(),
            "# mine\nnew:2 cc:dd 2026-01-02\n"
        );
        // Trusting again replaces, with today's date.
        let replaced = known.add("new:2", "11:22").unwrap();
        assert_eq!(replaced, Some(entry("new:2", "CC:DD", Some("2026-01-02"))));
        let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
        assert_eq!(
            known.list().unwrap(),
            vec![entry("new:2", "11:22", Some(&today))]
        );
        assert_eq!(known.lookup("NEW:2").unwrap().unwrap().fingerprint, "11:22");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(known.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
            let mut leftovers: Vec<_> = std::fs::read_dir(&home)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            leftovers.sort();
            // No temporary file left; the lock file that serializes changes stays.
            assert_eq!(leftovers, ["known_servers", "known_servers.lock"]);
        }
    }

    #[test]
    fn fingerprints_are_taken_as_people_type_them() {
        let fp = "AB:".repeat(31) + "AB";
        for typed in [
            fp.clone(),
            fp.to_lowercase(),
            fp.replace(':', ""),
            fp.replace(':', " "),
        ] {
            assert_eq!(
                normalize_fingerprint(&typed).as_deref(),
                Some(fp.as_str()),
                "{typed}"
            );
        }
        for bad in ["", "AB:CD", &"AB:".repeat(33), &"ZZ".repeat(32)] {
            assert_eq!(normalize_fingerprint(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_commands_in_messages_carry_the_options_that_find_the_file() {
        let known = KnownServers::in_home(Path::new("/h"));
        assert_eq!(known.command("forget a:1"), "mm trust forget a:1");
        let known = known.with_options("--nick bob");
        assert_eq!(
            known.command("forget a:1"),
            "mm trust forget a:1 --nick bob"
        );
    }

    #[test]
    fn comments_and_junk_lines_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join(KNOWN_SERVERS),
            "# comment\n\njunk\nhost:1 ab:cd\n",
        )
        .unwrap();
        let known = KnownServers::in_home(tmp.path());
        assert_eq!(
            known.lookup("host:1").unwrap(),
            Some(Pin {
                fingerprint: "AB:CD".into(),
                line: 4
            })
        );
    }

    /// Thirty `mm trust add` at once kept 5 entries: read, change and rename with no lock.
    #[test]
    fn changes_made_at_once_are_all_kept() {
        let home = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..30)
            .map(|i| {
                let home = home.path().to_path_buf();
                std::thread::spawn(move || {
                    KnownServers::in_home(&home)
                        .add(&format!("host{i}:7667"), "AB:CD")
                        .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(KnownServers::in_home(home.path()).list().unwrap().len(), 30);
    }

    /// One byte that is not UTF-8 made every connection and every `mm trust` fail, so the file
    /// could not be repaired with the tool meant for it.
    #[test]
    fn a_line_that_is_not_utf8_spoils_only_itself() {
        let home = tempfile::tempdir().unwrap();
        let known = KnownServers::in_home(home.path());
        known.add("good:1", "AB:CD").unwrap();
        let mut bytes = std::fs::read(known.path()).unwrap();
        bytes.extend_from_slice(b"bad\xff:1 AB:CD\n");
        std::fs::write(known.path(), bytes).unwrap();
        assert_eq!(known.list().unwrap().len(), 1);
        assert!(known.lookup("good:1").unwrap().is_some());
        known.add("new:1", "EF:01").unwrap();
        assert_eq!(known.list().unwrap().len(), 2);
    }
}
