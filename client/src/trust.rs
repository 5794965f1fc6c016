//! How the client decides to trust a server. There is no "insecure" mode: every connection is
//! verified, either
//!
//! * against a CA certificate file (`--ca`): standard WebPKI verification, server name included;
//!   or
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

/// The `known_servers` file: lines of `host:port FINGERPRINT`, `#` comments allowed.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
}

/// A pinned entry found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The fingerprint.
    pub fingerprint: String,
    /// 1-based line number, for error messages.
    pub line: usize,
}

impl KnownServers {
    /// The file in `home`.
    pub fn in_home(home: &Path) -> KnownServers {
        KnownServers {
            path: home.join(KNOWN_SERVERS),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pin for `server` (`host:port`, host compared case-insensitively), if any.
    ///
    /// # Errors
    /// I/O errors other than a missing file.
    pub fn lookup(&self, server: &str) -> Result<Option<Pin>, KnownServersError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KnownServersError::Io {
                    path: self.path.clone(),
                    cause: source,
                })
            }
        };
        let wanted = server.to_ascii_lowercase();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            if let (Some(name), Some(fp)) = (parts.next(), parts.next()) {
                if name.to_ascii_lowercase() == wanted {
                    return Ok(Some(Pin {
                        fingerprint: fp.to_ascii_uppercase(),
                        line: i + 1,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Appends a pin for `server`. The home directory is created (0700) if needed and the file
    /// is kept private (0600): it tells which servers the user talks to.
    ///
    /// # Errors
    /// I/O errors.
    pub fn add(&self, server: &str, fingerprint: &str) -> Result<(), KnownServersError> {
        use std::io::Write;
        let io = |source| KnownServersError::Io {
            path: self.path.clone(),
            cause: source,
        };
        if let Some(dir) = self.path.parent() {
            mm_certs::create_private_dir(dir).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&self.path).map_err(io)?;
        writeln!(file, "{} {}", server.to_ascii_lowercase(), fingerprint).map_err(io)?;
        file.sync_all().map_err(io)
    }
}

/// What the pinning verifier saw, for the caller to report after a failed handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// No pin existed; this is the fingerprint the server presented.
    Unknown(String),
    /// The server presented this fingerprint, which is not the pinned one.
    Changed {
        /// The pinned fingerprint.
        expected: String,
        /// What the server presented.
        found: String,
    },
}

/// Verifies a server against a pinned fingerprint (see the module docs).
pub struct PinVerifier {
    pin: Option<String>,
    provider: Arc<CryptoProvider>,
    observed: Arc<Mutex<Option<Observed>>>,
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
        let observed = Arc::new(Mutex::new(None));
        (
            Arc::new(PinVerifier {
                pin,
                provider,
                observed: Arc::clone(&observed),
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
        let anchor = intermediates.last().unwrap_or(end_entity);
        let found = mm_certs::fingerprint(anchor);
        let Some(expected) = &self.pin else {
            self.observe(Observed::Unknown(found));
            return Err(rustls::Error::General("server not known yet".into()));
        };
        if *expected != found {
            self.observe(Observed::Changed {
                expected: expected.clone(),
                found,
            });
            return Err(rustls::Error::General("server certificate changed".into()));
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
}
