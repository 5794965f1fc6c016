//! The server's TLS configuration: rustls with the `ring` provider, TLS 1.3 and 1.2 with rustls'
//! safe defaults only, ALPN `mm/1`, and client certificates requested from every client.
//!
//! Client certificates are self-signed: no CA vouches for them, and none needs to. The TLS
//! handshake proves the client holds the certificate's key (its CertificateVerify signature is
//! checked here); the session then treats the certificate's SHA-256 fingerprint as the account
//! (see `session::login`). A client that sends no certificate completes TLS and is refused at
//! login with a clear `certificate-required` error instead of an opaque TLS alert.
//!
//! The server's own certificate is a [`ServerCert`]: one configuration serves every connection,
//! and [`ServerCert::reload`] swaps the certificate it presents to new connections (`mm-server`
//! does that on SIGHUP, and when it renews its certificate: see `renew`) without touching
//! established ones.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use mm_certs::{load_certs, load_key, CertError, SERVER_CERT, SERVER_KEY};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// Why a TLS configuration could not be built.
///
/// Each message says its cause once, in its own text: no variant gives it again as `source()`
/// (which `{:#}`, the server's last line, would print a second time).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate or key file is missing or unreadable.
    #[error(transparent)]
    Files(#[from] CertError),
    /// The key is not the certificate's: the two files are not a pair.
    #[error("{}", key_mismatch(.dir.as_deref()))]
    KeyMismatch {
        /// The TLS directory they were read from (`None` for a chain and key given in memory).
        dir: Option<PathBuf>,
    },
    /// rustls refused the certificate or key otherwise.
    #[error("unusable certificate or key: {0}")]
    Rustls(rustls::Error),
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> TlsError {
        match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch { dir: None }
            }
            e => TlsError::Rustls(e),
        }
    }
}

fn key_mismatch(dir: Option<&Path>) -> String {
    let Some(dir) = dir else {
        return "unusable certificate or key: the private key is not the key of the certificate"
            .into();
    };
    format!(
        "unusable certificate or key: {} is not the key of the certificate in {}: put back the key that was made with that \
         certificate, or make a new pair with `mm-certs --out {}` (mm-server does this by itself \
         at start when that directory holds the {} of the CA that issued the certificate)",
        dir.join(SERVER_KEY).display(),
        dir.join(SERVER_CERT).display(),
        dir.display(),
        mm_certs::CA_KEY,
    )
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a server configuration from a certificate chain (end-entity certificate first) and
/// its key.
///
/// # Errors
/// [`TlsError::Rustls`] if rustls refuses them (e.g. the key does not match the certificate).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(Arc::new(ServerCert::new(chain, key)?))
}

/// Builds a server configuration from `server.pem` and `server.key` in `dir`.
///
/// # Errors
/// [`TlsError`] if the files are missing, unreadable or refused.
pub fn server_config_from_dir(dir: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(Arc::new(ServerCert::load(dir)?))
}

/// Builds a server configuration that presents whatever `cert` holds at each handshake, so
/// that [`ServerCert::reload`] applies to every later connection.
///
/// # Errors
/// [`TlsError::Rustls`] if rustls refuses the protocol versions (it does not with its defaults).
pub fn server_config_with(cert: Arc<ServerCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(SelfSignedClients {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![mm_common::protocol::ALPN.to_vec()];
    if cert.is_acme() {
        // Chosen only by a client that offers it: the ACME server's validation, which the
        // session closes after the handshake.
        config
            .alpn_protocols
            .push(crate::acme::ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}

/// The ALPN protocol name of HTTPS (RFC 7301): what browsers offer.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The TLS configuration for browsers (ALPN `http/1.1`, see PROTOCOL.md "The web"), made from
/// the native one: the same protocol versions, cipher suites and certificate resolver (so a
/// [`ServerCert::reload`] or renewal applies to both), but no client certificate request at all
/// and ALPN `http/1.1` only.
///
/// # Errors
/// [`TlsError::Rustls`] if rustls refuses the protocol versions (it does not with its defaults).
pub fn web_config(native: &ServerConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::clone(native.crypto_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&native.cert_resolver));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Which of the server's two TLS configurations a connection gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The native protocol (ALPN `mm/1`, or no ALPN): a client certificate is requested.
    Native,
    /// HTTPS and WebSocket for browsers (ALPN `http/1.1` offered, `mm/1` not).
    Web,
}

/// Chooses the configuration from the ALPN protocols a ClientHello offers (`None`: no ALPN
/// extension): [`Flavor::Web`] if `http/1.1` is offered and `mm/1` is not, else
/// [`Flavor::Native`] (which refuses any other protocol at the handshake).
pub fn flavor<'a>(alpn: Option<impl Iterator<Item = &'a [u8]>>) -> Flavor {
    let (mut http, mut mm) = (false, false);
    for proto in alpn.into_iter().flatten() {
        http |= proto == ALPN_HTTP1;
        mm |= proto == mm_common::protocol::ALPN;
    }
    if http && !mm {
        Flavor::Web
    } else {
        Flavor::Native
    }
}

/// The certificate chain and key the server presents, replaceable while it runs.
///
/// Every TLS handshake takes the current one (a lock held only to clone an `Arc`, never across
/// an await); [`ServerCert::reload`] replaces it only with a chain and key that load and match,
/// so a failed reload leaves the server presenting what it presented before.
///
/// With ACME (`crate::acme`) it may present nothing yet (every handshake is refused until the
/// first certificate arrives), and it answers the ACME server's TLS-ALPN-01 validations: a
/// ClientHello offering ALPN `acme-tls/1` gets the challenge certificate for its SNI name, or
/// nothing (a refused handshake) when no validation for that name is pending.
#[derive(Debug)]
pub struct ServerCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    challenges: Option<Arc<crate::acme::Challenges>>,
}

/// What a [`ServerCert`] presents, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// SHA-256 fingerprint of the end-entity certificate (colon-separated uppercase hex, see
    /// `mm_certs::fingerprint`).
    pub fingerprint: String,
    /// Certificates in the chain, the end-entity one included.
    pub chain_len: usize,
}

impl ServerCert {
    /// Checks a chain (end-entity certificate first) and its key.
    ///
    /// # Errors
    /// [`TlsError::Rustls`] if the chain is empty, the end-entity certificate does not parse,
    /// the key is not usable, or it does not match the certificate.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ServerCert, TlsError> {
        Ok(ServerCert {
            current: RwLock::new(Some(certified_key(chain, key)?)),
            challenges: None,
        })
    }

    /// A certificate that presents nothing until [`ServerCert::set`], and answers the
    /// TLS-ALPN-01 validations pending in `challenges` (see the type's docs).
    pub fn for_acme(challenges: Arc<crate::acme::Challenges>) -> ServerCert {
        ServerCert {
            current: RwLock::new(None),
            challenges: Some(challenges),
        }
    }

    /// Presents `chain` (end-entity certificate first) and `key` from the next handshake on,
    /// if they match.
    ///
    /// # Errors
    /// As [`ServerCert::new`]; what was presented so far stays in use.
    pub fn set(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<CertSummary, TlsError> {
        let new = certified_key(chain, key)?;
        let summary = summarize(&new);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(new);
        Ok(summary)
    }

    /// Whether it answers ACME validations (the certificate comes from an ACME server).
    pub fn is_acme(&self) -> bool {
        self.challenges.is_some()
    }

    /// Loads `server.pem` (chain) and `server.key` from `dir`.
    ///
    /// # Errors
    /// [`TlsError::Files`] if a file is missing, unreadable or holds no PEM certificate/key;
    /// otherwise as [`ServerCert::new`].
    pub fn load(dir: &Path) -> Result<ServerCert, TlsError> {
        Ok(ServerCert {
            current: RwLock::new(Some(load_certified_key(dir)?)),
            challenges: None,
        })
    }

    /// Reads `server.pem` and `server.key` from `dir` again and, if they load and match,
    /// presents them from the next handshake on. Blocking file I/O (two small files).
    ///
    /// # Errors
    /// As [`ServerCert::load`]; the certificate presented so far stays in use.
    pub fn reload(&self, dir: &Path) -> Result<CertSummary, TlsError> {
        let new = load_certified_key(dir)?;
        let summary = summarize(&new);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(new);
        Ok(summary)
    }

    /// What is presented now (an empty fingerprint and no chain while there is nothing yet).
    pub fn summary(&self) -> CertSummary {
        self.get().map_or(
            CertSummary {
                fingerprint: String::new(),
                chain_len: 0,
            },
            |key| summarize(&key),
        )
    }

    /// The end-entity certificate presented now (for its dates and names: see `renew`).
    pub fn end_entity(&self) -> Option<CertificateDer<'static>> {
        self.get().and_then(|key| key.cert.first().cloned())
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Arc::clone)
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(challenges) = &self.challenges {
            let validation = client_hello
                .alpn()
                .is_some_and(|mut offered| offered.any(|p| p == crate::acme::ACME_TLS_ALPN));
            if validation {
                return client_hello
                    .server_name()
                    .and_then(|name| challenges.get(name));
            }
        }
        self.get()
    }
}

fn load_certified_key(dir: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs(&dir.join(SERVER_CERT))?;
    let key = load_key(&dir.join(SERVER_KEY))?;
    certified_key(chain, key).map_err(|e| match e {
        TlsError::KeyMismatch { .. } => TlsError::KeyMismatch {
            dir: Some(dir.to_path_buf()),
        },
        e => e,
    })
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    if chain.is_empty() {
        return Err(rustls::Error::NoCertificatesPresented.into());
    }
    let certified = CertifiedKey::from_der(chain, key, &provider())?;
    // from_der lets a key whose public half it cannot tell through; insist, so that a
    // mismatched pair is refused here rather than failing every handshake later.
    certified.keys_match()?;
    Ok(Arc::new(certified))
}

fn summarize(key: &CertifiedKey) -> CertSummary {
    CertSummary {
        fingerprint: key
            .cert
            .first()
            .map(|c| mm_certs::fingerprint(c))
            .unwrap_or_default(),
        chain_len: key.cert.len(),
    }
}

/// Why a client's TLS handshake failed, in plain words for the log (the rustls error names,
/// `InvalidContentType`, `UnknownCA`..., say little to someone who runs a chat server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// One short sentence.
    pub why: String,
    /// The client refused this server's certificate: the operator can do something about it
    /// (hand out ca.pem or its fingerprint, add a name, renew), so it is logged at info level.
    pub certificate_refused: bool,
}

/// Says why a TLS handshake with a client failed (see [`HandshakeFailure`]).
pub fn handshake_failure(e: &std::io::Error) -> HandshakeFailure {
    use rustls::AlertDescription as Alert;
    let plain = |why: &str| HandshakeFailure {
        why: why.to_owned(),
        certificate_refused: false,
    };
    let refused = |why: &str| HandshakeFailure {
        why: why.to_owned(),
        certificate_refused: true,
    };
    let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                plain("the client closed the connection during the TLS handshake")
            }
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                plain("the client reset the connection during the TLS handshake")
            }
            _ => plain("the connection failed during the TLS handshake"),
        };
    };
    match tls {
        rustls::Error::InvalidMessage(_) => {
            plain("the client does not speak TLS (a plain-TCP or HTTP client on the TLS port?)")
        }
        rustls::Error::NoApplicationProtocol => plain(
            "the client asked for a protocol this server does not speak (neither mm/1 nor http/1.1)",
        ),
        rustls::Error::PeerIncompatible(_) => {
            plain("the client has no TLS version or cipher in common with this server")
        }
        rustls::Error::AlertReceived(Alert::UnknownCA | Alert::DecryptError) => refused(
            "the client did not accept this server's CA: normal on first contact while its user compares the CA fingerprint, or from a browser that does not trust the CA yet; otherwise it was given another ca.pem or pinned another fingerprint (give its user this server's ca.pem or the CA fingerprint logged at start)",
        ),
        rustls::Error::AlertReceived(Alert::BadCertificate) => refused(
            "the client refused this server's certificate (it does not cover the name or address the client used? add it with mm-certs --name or --ip)",
        ),
        rustls::Error::AlertReceived(Alert::CertificateExpired) => refused(
            "the client says this server's certificate is expired or not valid yet (check this machine's clock and the client's)",
        ),
        rustls::Error::AlertReceived(alert) => plain(&format!(
            "the client ended the TLS handshake ({})",
            mm_common::text::words(&format!("{alert:?}"))
        )),
        other => plain(&format!(
            "the TLS handshake failed ({})",
            mm_common::text::words(&format!("{other:?}"))
        )),
    }
}

/// Accepts any client certificate whose key signs the handshake; see the module docs.
#[derive(Debug)]
struct SelfSignedClients {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for SelfSignedClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false // refused at login instead, with a message the user can read
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Identity is the fingerprint, not a chain to a CA; possession of the key is proven by
        // the signature checks below, which also fail for a certificate that does not parse.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_chooses_web_only_for_http1_without_mm() {
        let web: [&[u8]; 2] = [b"h2", b"http/1.1"];
        assert_eq!(flavor(Some(web.into_iter())), Flavor::Web);
        let both: [&[u8]; 2] = [b"http/1.1", b"mm/1"];
        assert_eq!(flavor(Some(both.into_iter())), Flavor::Native);
        let mm: [&[u8]; 1] = [b"mm/1"];
        assert_eq!(flavor(Some(mm.into_iter())), Flavor::Native);
        let other: [&[u8]; 1] = [b"h2"];
        assert_eq!(flavor(Some(other.into_iter())), Flavor::Native);
        assert_eq!(flavor(None::<std::iter::Empty<&[u8]>>), Flavor::Native);
    }

    #[test]
    fn the_web_config_asks_no_client_certificate_and_shares_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        mm_certs::generate(dir.path(), &mm_certs::Names::default(), false).unwrap();
        let native = server_config_from_dir(dir.path()).unwrap();
        let web = web_config(&native).unwrap();
        assert_eq!(web.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(Arc::ptr_eq(&web.cert_resolver, &native.cert_resolver));
    }

    #[test]
    fn a_failed_handshake_is_said_in_plain_words() {
        use rustls::{AlertDescription, InvalidMessage};
        let tls = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        for (e, why, refused) in [
            (
                tls(rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType)),
                "the client does not speak TLS (a plain-TCP or HTTP client on the TLS port?)",
                false,
            ),
            (
                tls(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
                "the client did not accept this server's CA: normal on first contact while its user compares the CA fingerprint, or from a browser that does not trust the CA yet; otherwise it was given another ca.pem or pinned another fingerprint (give its user this server's ca.pem or the CA fingerprint logged at start)",
                true,
            ),
            (
                tls(rustls::Error::AlertReceived(AlertDescription::DecryptError)),
                "the client did not accept this server's CA: normal on first contact while its user compares the CA fingerprint, or from a browser that does not trust the CA yet; otherwise it was given another ca.pem or pinned another fingerprint (give its user this server's ca.pem or the CA fingerprint logged at start)",
                true,
            ),
            (
                tls(rustls::Error::AlertReceived(AlertDescription::BadCertificate)),
                "the client refused this server's certificate (it does not cover the name or address the client used? add it with mm-certs --name or --ip)",
                true,
            ),
            (
                tls(rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)),
                "the client ended the TLS handshake (protocol version)",
                false,
            ),
            (
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "tls handshake eof"),
                "the client closed the connection during the TLS handshake",
                false,
            ),
            (
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
                "the client reset the connection during the TLS handshake",
                false,
            ),
        ] {
            let failure = handshake_failure(&e);
            assert_eq!(failure.why, why, "{e}");
            assert_eq!(failure.certificate_refused, refused, "{e}");
        }
    }

    #[test]
    fn an_acme_certificate_starts_empty_offers_acme_tls_and_takes_only_matching_pairs() {
        let cert = Arc::new(ServerCert::for_acme(Arc::default()));
        assert!(cert.is_acme());
        assert_eq!(cert.summary().chain_len, 0);
        assert!(cert.end_entity().is_none());
        let config = server_config_with(Arc::clone(&cert)).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"mm/1".to_vec(), b"acme-tls/1".to_vec()]
        );
        // Browsers are never offered acme-tls/1.
        assert_eq!(
            web_config(&config).unwrap().alpn_protocols,
            vec![b"http/1.1".to_vec()]
        );
        let dir = tempfile::tempdir().unwrap();
        mm_certs::generate(dir.path(), &mm_certs::Names::default(), false).unwrap();
        let chain = load_certs(&dir.path().join(SERVER_CERT)).unwrap();
        let other = tempfile::tempdir().unwrap();
        mm_certs::generate(other.path(), &mm_certs::Names::default(), false).unwrap();
        let wrong_key = load_key(&other.path().join(SERVER_KEY)).unwrap();
        assert!(cert.set(chain.clone(), wrong_key).is_err());
        assert!(
            cert.end_entity().is_none(),
            "a mismatched pair is not presented"
        );
        let key = load_key(&dir.path().join(SERVER_KEY)).unwrap();
        let summary = cert.set(chain.clone(), key).unwrap();
        assert_eq!(summary.fingerprint, mm_certs::fingerprint(&chain[0]));
        assert_eq!(cert.end_entity(), Some(chain[0].clone()));
        // A self-made certificate offers only mm/1.
        let own = server_config_from_dir(dir.path()).unwrap();
        assert_eq!(own.alpn_protocols, vec![b"mm/1".to_vec()]);
    }

    #[test]
    fn reload_swaps_only_to_a_loadable_matching_pair() {
        let dir = tempfile::tempdir().unwrap();
        mm_certs::generate(dir.path(), &mm_certs::Names::default(), false).unwrap();
        let cert = ServerCert::load(dir.path()).unwrap();
        let first = cert.summary();
        assert_eq!(first.chain_len, 2);
        assert_eq!(
            cert.reload(dir.path()).unwrap(),
            first,
            "same files, same cert"
        );

        let other = tempfile::tempdir().unwrap();
        mm_certs::generate(other.path(), &mm_certs::Names::default(), false).unwrap();
        // A certificate with someone else's key: refused, the old one stays.
        std::fs::copy(other.path().join(SERVER_CERT), dir.path().join(SERVER_CERT)).unwrap();
        let err = cert.reload(dir.path()).unwrap_err();
        assert!(
            matches!(err, TlsError::KeyMismatch { dir: Some(_) }),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_none(), "said once");
        assert_eq!(cert.summary(), first);
        std::fs::remove_file(dir.path().join(SERVER_KEY)).unwrap();
        assert!(matches!(cert.reload(dir.path()), Err(TlsError::Files(_))));
        assert_eq!(cert.summary(), first);

        // Both files replaced: the new pair is presented.
        std::fs::copy(other.path().join(SERVER_KEY), dir.path().join(SERVER_KEY)).unwrap();
        let second = cert.reload(dir.path()).unwrap();
        assert_ne!(second, first);
        assert_eq!(cert.summary(), second);
        let der = mm_certs::load_certs(&other.path().join(SERVER_CERT)).unwrap();
        assert_eq!(second.fingerprint, mm_certs::fingerprint(&der[0]));
    }
}
