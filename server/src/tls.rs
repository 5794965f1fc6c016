//! The server's TLS configuration: rustls with the `ring` provider, TLS 1.3 and 1.2 with rustls'
//! safe defaults only, ALPN `mm/1`.

use std::path::Path;
use std::sync::Arc;

use mm_certs::{load_certs, load_key, CertError, SERVER_CERT, SERVER_KEY};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
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
