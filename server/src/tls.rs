//! The server's TLS configuration: rustls with the `ring` provider, TLS 1.3 and 1.2 with rustls'
//! safe defaults only, ALPN `mm/1`, and client certificates requested from every client.
//!
//! Client certificates are self-signed: no CA vouches for them, and none needs to. The TLS
//! handshake proves the client holds the certificate's key (its CertificateVerify signature is
//! checked here); the session then treats the certificate's SHA-256 fingerprint as the account
//! (see `session::login`). A client that sends no certificate completes TLS and is refused at
//! login with a clear `certificate-required` error instead of an opaque TLS alert.

use std::path::Path;
use std::sync::Arc;

use mm_certs::{load_certs, load_key, CertError, SERVER_CERT, SERVER_KEY};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate or key file is missing or unreadable.
    #[error(transparent)]
    Files(#[from] CertError),
    /// rustls refused the certificate/key pair (e.g. they do not match).
    #[error("unusable certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds a server configuration from a certificate chain and its key.
///
/// # Errors
/// [`TlsError::Rustls`] if rustls refuses them.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(SelfSignedClients {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![mm_common::protocol::ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Builds a server configuration from `server.pem` and `server.key` in `dir`.
///
/// # Errors
/// [`TlsError`] if the files are missing, unreadable or refused.
pub fn server_config_from_dir(dir: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    server_config(
        load_certs(&dir.join(SERVER_CERT))?,
        load_key(&dir.join(SERVER_KEY))?,
    )
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
