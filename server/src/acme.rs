//! Publicly trusted certificates from an ACME server (RFC 8555; Let's Encrypt by default), for
//! `mm-server --acme-domain chat.example.org`.
//!
//! - **Validation** is TLS-ALPN-01 (RFC 8737) on the server's own port: the ACME server connects
//!   to port 443 of the domain (the operator points it at mm-server) and offers only the ALPN
//!   protocol `acme-tls/1`; [`crate::tls::ServerCert`] answers such a handshake, for a name with a
//!   pending challenge, with the self-signed challenge certificate made here
//!   ([`Challenges`]), and the session closes it right after the handshake. Native clients and
//!   browsers are untouched (they never offer `acme-tls/1`).
//! - **Files**, in the TLS directory (0700), each 0600 and replaced atomically:
//!   [`ACCOUNT_FILE`] (the ACME account's key and URL, with the directory it belongs to) and
//!   [`CERT_FILE`] (the chain, end-entity first, and its key: one file, so the two are never
//!   out of step). A restart reuses a stored certificate that is not expired, covers every
//!   domain and came from the same directory: no new order.
//! - **Renewal**: when a third of its lifetime is left ([`renew_at`]), checked at least every
//!   [`CHECK_EVERY`] and exactly then for short-lived certificates; the new certificate is
//!   presented to new connections at once ([`crate::tls::ServerCert::set`]), established ones
//!   keep theirs.
//! - **Until the first certificate arrives** the server presents none: every handshake but the
//!   ACME server's validation is refused (never the self-made certificate under the public
//!   name).
//! - **Failures** are logged with what to do and retried with backoff ([`retry_after`]); the
//!   server keeps serving with the certificate it has.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use tracing::{error, info, warn};

use crate::tls::ServerCert;

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737 section 6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Let's Encrypt's production directory: the default of `--acme-directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The ACME account (its key and URL, and the directory it belongs to), in the TLS directory.
pub const ACCOUNT_FILE: &str = "acme-account.json";

/// The certificate chain and its key, in the TLS directory.
pub const CERT_FILE: &str = "acme.pem";

/// Longest wait between two looks at the certificate.
pub const CHECK_EVERY: Duration = Duration::from_secs(12 * 60 * 60);

/// Longest an attempt to obtain a certificate may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Most domains one certificate covers (Let's Encrypt allows 100 names per certificate).
pub const MAX_DOMAINS: usize = 100;

/// What `--acme-*` configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeOptions {
    /// The names the certificate covers (lower case, at least one).
    pub domains: Vec<String>,
    /// The ACME server's directory URL.
    pub directory: String,
    /// Contact URLs for the account (`mailto:...`), possibly none.
    pub contact: Vec<String>,
    /// A CA certificate (PEM) to trust the ACME server's own HTTPS certificate with, instead of
    /// the system's roots (tests, private ACME servers).
    pub directory_ca: Option<PathBuf>,
}

impl AcmeOptions {
    /// Checks and normalises what was configured.
    ///
    /// # Errors
    /// A domain that is not a DNS name (an IP address, a wildcard, a typo), more than
    /// [`MAX_DOMAINS`], a contact that is not `mailto:`, or a directory that is not `https://`.
    pub fn new(
        domains: &[String],
        directory: Option<String>,
        contact: Vec<String>,
        directory_ca: Option<PathBuf>,
    ) -> anyhow::Result<AcmeOptions> {
        if domains.is_empty() {
            bail!("--acme-domain needs a name, for example --acme-domain chat.example.org");
        }
        if domains.len() > MAX_DOMAINS {
            bail!("at most {MAX_DOMAINS} ACME domains (one certificate covers them all)");
        }
        let mut names: Vec<String> = Vec::new();
        for domain in domains {
            let name = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            let dns = matches!(
                rustls_pki_types::ServerName::try_from(name.as_str()),
                Ok(rustls_pki_types::ServerName::DnsName(_))
            );
            if !dns || !name.contains('.') || name.contains('*') {
                bail!(
                    "{domain:?} is not a domain name a public certificate can cover: give the \
                     server's name as clients type it, for example --acme-domain chat.example.org \
                     (no IP address, no wildcard)"
                );
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let directory = directory.unwrap_or_else(|| LETS_ENCRYPT.to_owned());
        if !directory.starts_with("https://") {
            bail!("--acme-directory must be an https:// URL (the ACME server's directory), not {directory:?}");
        }
        for c in &contact {
            if !c.starts_with("mailto:") || c.len() <= "mailto:".len() {
                bail!("--acme-contact takes mailto:ADDRESS, for example mailto:ops@example.org, not {c:?}");
            }
        }
        Ok(AcmeOptions {
            domains: names,
            directory,
            contact,
            directory_ca,
        })
    }
}

/// The challenge certificates of pending TLS-ALPN-01 validations, by domain (lower case).
#[derive(Default)]
pub struct Challenges {
    by_name: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: never keys.
        let names: Vec<String> = self
            .by_name
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Challenges")
            .field("pending", &names)
            .finish()
    }
}

impl Challenges {
    /// The challenge certificate for `name`, if a validation for it is pending.
    pub fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        map.get(&name.to_ascii_lowercase()).cloned()
    }

    fn insert(&self, name: &str, key: Arc<CertifiedKey>) {
        let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        map.insert(name.to_ascii_lowercase(), key);
    }

    /// Sets the challenges posted by other nodes of a cluster: `posted` (domain → its
    /// challenge certificate) replaces what was there.
    pub fn replace(&self, posted: HashMap<String, Arc<CertifiedKey>>) {
        *self.by_name.write().unwrap_or_else(|p| p.into_inner()) = posted;
    }

    fn clear(&self) {
        self.by_name
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// The self-signed certificate of a TLS-ALPN-01 challenge for `domain` (RFC 8737 section 3):
/// `domain` as its only name, and the `acmeIdentifier` extension holding the SHA-256 digest of
/// the key authorization.
///
/// # Errors
/// If rcgen or rustls refuse (they do not for a valid name and a 32-byte digest).
pub fn challenge_cert(domain: &str, digest: &[u8]) -> anyhow::Result<Arc<CertifiedKey>> {
    if digest.len() != 32 {
        bail!("a key authorization digest of {} bytes", digest.len());
    }
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = rustls::crypto::ring::default_provider();
    // Not `CertifiedKey::from_der`: its check that the key matches parses the certificate with
    // webpki, which refuses the critical acmeIdentifier extension it does not know.
    let signing_key = provider.key_provider.load_private_key(key_der)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    )))
}

/// When a certificate valid from `not_before` to `not_after` is renewed: when a third of its
/// lifetime is left.
pub fn renew_at(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    not_after - (not_after - not_before) / 3
}

/// How long to wait after the `failures`-th failure in a row (1 for the first): a minute,
/// doubling, at most six hours (Let's Encrypt limits failed validations per hour, and a cause
/// like DNS or a firewall takes a person to fix).
pub fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    Duration::from_secs(60)
        .saturating_mul(1 << doublings)
        .min(Duration::from_secs(6 * 60 * 60))
}

/// The account file: the credentials with the directory they are for.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// A certificate read back from [`CERT_FILE`].
pub struct Stored {
    /// The chain, end-entity first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its key.
    pub key: PrivateKeyDer<'static>,
    /// Its dates and names.
    pub info: mm_certs::CertInfo,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("chain_len", &self.chain.len())
            .field("not_after", &self.info.not_after)
            .finish_non_exhaustive()
    }
}

/// The stored certificate in `tls_dir`, if it can be used for `opts` at `now`: it loads, its key
/// matches, it covers every domain, it is not expired, and the account file says it came from
/// the same directory. Otherwise `None`, with the reason logged (except for no file at all).
/// Blocking file I/O.
pub fn load_stored(tls_dir: &Path, opts: &AcmeOptions, now: OffsetDateTime) -> Option<Stored> {
    let path = tls_dir.join(CERT_FILE);
    if !path.exists() {
        return None;
    }
    let unusable = |why: &str| {
        warn!(file = %path.display(), "not using the stored ACME certificate: {why}; a new one is ordered");
        None
    };
    match read_account(tls_dir) {
        Some(account) if account.directory == opts.directory => {}
        _ => return unusable("it came from another ACME directory (or the account file is gone)"),
    }
    let (chain, key) = match (mm_certs::load_certs(&path), mm_certs::load_key(&path)) {
        (Ok(chain), Ok(key)) => (chain, key),
        (Err(e), _) | (_, Err(e)) => return unusable(&e.to_string()),
    };
    let Some(end) = chain.first() else {
        return unusable("no certificate in it");
    };
    let info = match mm_certs::CertInfo::parse(end, &path) {
        Ok(info) => info,
        Err(e) => return unusable(&e.to_string()),
    };
    if let Err(e) = ServerCert::new(chain.clone(), key.clone_key()) {
        return unusable(&e.to_string());
    }
    if let Some(missing) = opts
        .domains
        .iter()
        .find(|d| !info.names.dns.iter().any(|n| n.eq_ignore_ascii_case(d)))
    {
        return unusable(&format!("it does not cover {missing}"));
    }
    if info.not_after <= now {
        return unusable(&format!("it expired on {}", mm_certs::date(info.not_after)));
    }
    Some(Stored { chain, key, info })
}

fn read_account(tls_dir: &Path) -> Option<StoredAccount> {
    let bytes = mm_certs::read_limited(&tls_dir.join(ACCOUNT_FILE), 64 * 1024).ok()?;
    let bytes = zeroize::Zeroizing::new(bytes);
    serde_json::from_slice(&bytes).ok()
}

/// The account for `opts.directory`: the stored one, or a new one registered now and stored.
async fn account(opts: &AcmeOptions, tls_dir: &Path) -> anyhow::Result<Account> {
    let builder = || match &opts.directory_ca {
        Some(ca) => Account::builder_with_root(ca)
            .with_context(|| format!("cannot use {} (--acme-directory-ca)", ca.display())),
        None => Account::builder().context("cannot read the system's root certificates"),
    };
    if let Some(stored) = read_account(tls_dir).filter(|a| a.directory == opts.directory) {
        return builder()?
            .from_credentials(stored.credentials)
            .await
            .context("cannot use the stored ACME account");
    }
    let contact: Vec<&str> = opts.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            opts.directory.clone(),
            None,
        )
        .await
        .context("cannot register an ACME account")?;
    let stored = StoredAccount {
        directory: opts.directory.clone(),
        credentials,
    };
    let json = zeroize::Zeroizing::new(serde_json::to_vec(&stored)?);
    mm_certs::write_secret(&tls_dir.join(ACCOUNT_FILE), &json)?;
    info!(directory = %opts.directory, file = %tls_dir.join(ACCOUNT_FILE).display(), "registered an ACME account");
    Ok(account)
}

/// Where a pending TLS-ALPN-01 challenge is posted besides this server's own [`Challenges`]:
/// nowhere on one server; on a cluster, the store, for every node to answer (the ACME server's
/// validation may reach any node behind the load balancer).
pub trait ChallengeBoard: Sync {
    /// Makes the challenge for `domain` (`digest`: SHA-256 of the key authorization) answered
    /// wherever the validation may connect; returns once it is.
    fn post(
        &self,
        domain: &str,
        digest: &[u8],
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

/// One server: its own [`Challenges`] are enough.
impl ChallengeBoard for () {
    async fn post(&self, _domain: &str, _digest: &[u8]) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Orders a certificate for `opts.domains`, answers the TLS-ALPN-01 challenges through
/// `challenges` (and `board`) while the ACME server validates. Returns the chain and key (PEM
/// text of both).
pub(crate) async fn obtain<B: ChallengeBoard>(
    opts: &AcmeOptions,
    tls_dir: &Path,
    challenges: &Challenges,
    board: &B,
) -> anyhow::Result<String> {
    let account = account(opts, tls_dir).await?;
    let identifiers: Vec<Identifier> = opts
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .context("the ACME server refused the order")?;
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.context("cannot read an authorization")?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => bail!("an authorization is {other:?}"),
        }
        let name = authz.identifier().to_string();
        let mut challenge = authz
            .challenge(ChallengeType::TlsAlpn01)
            .ok_or_else(|| anyhow!("the ACME server offers no TLS-ALPN-01 challenge for {name}"))?;
        let digest = challenge.key_authorization().digest();
        challenges.insert(&name, challenge_cert(&name, digest.as_ref())?);
        board
            .post(&name, digest.as_ref())
            .await
            .context("the challenge could not be posted for the other nodes")?;
        challenge
            .set_ready()
            .await
            .context("the ACME server did not take the challenge")?;
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(120));
    let status = order
        .poll_ready(&retries)
        .await
        .context("waiting for the validation")?;
    if status != OrderStatus::Ready {
        let mut why = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(authz)) = authorizations.next().await {
            for c in &authz.challenges {
                if let Some(problem) = &c.error {
                    why.push(format!("{}: {problem}", authz.identifier()));
                }
            }
        }
        bail!(
            "the ACME server could not validate the domain ({}): {}",
            format!("{status:?}").to_lowercase(),
            if why.is_empty() {
                "no reason given".to_owned()
            } else {
                why.join("; ")
            }
        );
    }
    let key_pem = zeroize::Zeroizing::new(order.finalize().await.context("finalizing the order")?);
    let chain_pem = order
        .poll_certificate(&retries)
        .await
        .context("downloading the certificate")?;
    let mut both = zeroize::Zeroizing::new(chain_pem);
    if !both.ends_with('\n') {
        both.push('\n');
    }
    both.push_str(&key_pem);
    Ok(both.to_string())
}

/// The chain and key in `pem` (a certificate another node of a cluster obtained), if they
/// can be presented for `opts` at `now`: they parse, the key matches, every domain is
/// covered, not expired. Otherwise why not.
///
/// # Errors
/// As above, in words.
pub fn check_pem(pem: &str, opts: &AcmeOptions, now: OffsetDateTime) -> anyhow::Result<Stored> {
    use rustls_pki_types::pem::PemObject as _;
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| anyhow!("not a readable PEM certificate chain"))?;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| anyhow!("no usable private key"))?;
    let end = chain
        .first()
        .ok_or_else(|| anyhow!("no certificate in it"))?;
    let info = mm_certs::CertInfo::parse(end, Path::new("the cluster's certificate"))?;
    ServerCert::new(chain.clone(), key.clone_key())?;
    if let Some(missing) = opts
        .domains
        .iter()
        .find(|d| !info.names.dns.iter().any(|n| n.eq_ignore_ascii_case(d)))
    {
        bail!("it does not cover {missing}");
    }
    if info.not_after <= now {
        bail!("it expired on {}", mm_certs::date(info.not_after));
    }
    Ok(Stored { chain, key, info })
}

/// Writes `pem` (chain and key) to [`CERT_FILE`], reads it back as a [`Stored`], and presents it.
pub(crate) fn install(tls_dir: &Path, pem: &str, cert: &ServerCert) -> anyhow::Result<Stored> {
    let path = tls_dir.join(CERT_FILE);
    mm_certs::write_secret(&path, pem.as_bytes())?;
    let chain = mm_certs::load_certs(&path)?;
    let key = mm_certs::load_key(&path)?;
    let end = chain
        .first()
        .ok_or_else(|| anyhow!("the ACME server sent no certificate"))?;
    let info = mm_certs::CertInfo::parse(end, &path)?;
    cert.set(chain.clone(), key.clone_key())?;
    Ok(Stored { chain, key, info })
}

/// What `mm-server` logs when it starts with `--acme-domain`: the stored certificate is
/// presented, or none yet.
pub fn start(tls_dir: &Path, opts: &AcmeOptions, cert: &ServerCert) {
    let names = opts.domains.join(", ");
    match load_stored(tls_dir, opts, OffsetDateTime::now_utc()) {
        Some(stored) => match cert.set(stored.chain, stored.key) {
            Ok(summary) => info!(
                domains = %names,
                fingerprint = %summary.fingerprint,
                expires = %mm_certs::date(stored.info.not_after),
                file = %tls_dir.join(CERT_FILE).display(),
                "using the stored ACME certificate"
            ),
            Err(e) => {
                warn!(error = %e, "the stored ACME certificate cannot be used; a new one is ordered")
            }
        },
        None => warn!(
            domains = %names,
            directory = %opts.directory,
            "no ACME certificate yet: ordering one; until it arrives every TLS connection is refused (only the ACME server's validation is answered)"
        ),
    }
}

/// Keeps a certificate from the ACME server presented: orders one when there is none, renews it
/// when a third of its lifetime is left, retries failures with backoff ([`retry_after`]).
/// Runs until aborted.
pub async fn maintain(
    opts: AcmeOptions,
    tls_dir: PathBuf,
    cert: Arc<ServerCert>,
    challenges: Arc<Challenges>,
) {
    let names = opts.domains.join(", ");
    let mut failures = 0u32;
    loop {
        let now = OffsetDateTime::now_utc();
        let current = cert
            .end_entity()
            .and_then(|der| mm_certs::CertInfo::parse(&der, &tls_dir.join(CERT_FILE)).ok());
        if let Some(info) = &current {
            let due = renew_at(info.not_before, info.not_after);
            if due > now {
                let wait = Duration::try_from(due - now).unwrap_or(CHECK_EVERY);
                tokio::time::sleep(wait.min(CHECK_EVERY)).await;
                continue;
            }
        }
        let result = attempt(&opts, &tls_dir, &challenges, &()).await;
        // One small file written, once per renewal.
        let installed = result.and_then(|pem| install(&tls_dir, &pem, &cert));
        match installed {
            Ok(stored) => {
                failures = 0;
                if !obtained(&names, &stored, current.as_ref()) {
                    tokio::time::sleep(retry_after(1)).await;
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = retry_after(failures);
                failed(&opts, &e, current.as_ref(), wait);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One attempt of [`obtain`], bounded by 5 minutes; the challenges are cleared after it.
pub(crate) async fn attempt<B: ChallengeBoard>(
    opts: &AcmeOptions,
    tls_dir: &Path,
    challenges: &Challenges,
    board: &B,
) -> anyhow::Result<String> {
    let result = tokio::time::timeout(ATTEMPT_TIMEOUT, obtain(opts, tls_dir, challenges, board))
        .await
        .unwrap_or_else(|_| {
            Err(anyhow!(
                "no certificate within {} s",
                ATTEMPT_TIMEOUT.as_secs()
            ))
        });
    challenges.clear();
    result
}

/// Logs a certificate just obtained (`previous`: the one it replaces). Returns `false` if it
/// is already due for renewal (a wrong clock here or at the ACME server): the next order must
/// wait a minute.
pub(crate) fn obtained(
    names: &str,
    stored: &Stored,
    previous: Option<&mm_certs::CertInfo>,
) -> bool {
    let fingerprint = stored
        .chain
        .first()
        .map(|c| mm_certs::fingerprint(c))
        .unwrap_or_default();
    match previous {
        None => info!(
            domains = %names,
            %fingerprint,
            expires = %mm_certs::date(stored.info.not_after),
            "obtained a certificate from the ACME server; serving with it"
        ),
        Some(previous) => info!(
            domains = %names,
            %fingerprint,
            expires = %mm_certs::date(stored.info.not_after),
            previous_expiry = %mm_certs::date(previous.not_after),
            "renewed the certificate from the ACME server; new connections get it, established ones keep theirs"
        ),
    }
    if renew_at(stored.info.not_before, stored.info.not_after) <= OffsetDateTime::now_utc() {
        // Never an order after an order without a pause: a certificate due as it arrives
        // means a wrong clock here or there.
        warn!(
            not_before = %stored.info.not_before,
            not_after = %stored.info.not_after,
            "the new certificate is already due for renewal (is this machine's clock right?); the next order waits a minute"
        );
        return false;
    }
    true
}

/// Logs a failed attempt to obtain a certificate (`current`: the one still presented) and
/// when the next one is (`wait`).
pub(crate) fn failed(
    opts: &AcmeOptions,
    e: &anyhow::Error,
    current: Option<&mm_certs::CertInfo>,
    wait: Duration,
) {
    let serving = match current {
        Some(info) => format!(
            "still serving with the current certificate (expires {})",
            mm_certs::date(info.not_after)
        ),
        None => "no certificate yet: TLS connections are refused until one arrives".to_owned(),
    };
    error!(
        domains = %opts.domains.join(", "),
        directory = %opts.directory,
        error = %format!("{e:#}"),
        retry_in_s = wait.as_secs(),
        "obtaining a certificate from the ACME server failed; {serving}. Check that each domain resolves to this server's public address and that its port 443 reaches this server (TLS-ALPN-01 validation connects there), and that this machine reaches the ACME directory"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_take_domain_names_only_and_normalise_them() {
        let o = AcmeOptions::new(
            &["Chat.Example.org.".into(), "chat.example.org".into()],
            None,
            vec!["mailto:ops@example.org".into()],
            None,
        )
        .unwrap();
        assert_eq!(o.domains, ["chat.example.org"]);
        assert_eq!(o.directory, LETS_ENCRYPT);
        for bad in ["192.0.2.1", "*.example.org", "localhost", "a b.org", ""] {
            assert!(
                AcmeOptions::new(&[bad.into()], None, Vec::new(), None).is_err(),
                "{bad}"
            );
        }
        assert!(AcmeOptions::new(&[], None, Vec::new(), None).is_err());
        assert!(AcmeOptions::new(
            &["a.example".into()],
            Some("http://acme.example/dir".into()),
            Vec::new(),
            None
        )
        .is_err());
        assert!(AcmeOptions::new(
            &["a.example".into()],
            None,
            vec!["ops@example.org".into()],
            None
        )
        .is_err());
    }

    #[test]
    fn renewal_is_due_with_a_third_of_the_lifetime_left_and_retries_back_off() {
        let start = OffsetDateTime::UNIX_EPOCH;
        let end = start + time::Duration::days(90);
        assert_eq!(renew_at(start, end), start + time::Duration::days(60));
        assert_eq!(retry_after(1), Duration::from_secs(60));
        assert_eq!(retry_after(2), Duration::from_secs(120));
        assert_eq!(retry_after(5), Duration::from_secs(960));
        assert_eq!(retry_after(50), Duration::from_secs(6 * 3600));
    }

    #[test]
    fn a_challenge_certificate_names_the_domain_and_carries_the_digest() {
        let digest = [7u8; 32];
        let key = challenge_cert("chat.example.org", &digest).unwrap();
        let der = key.cert[0].as_ref();
        let (_, parsed) = x509_parser::parse_x509_certificate(der).unwrap();
        let ext = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical, "RFC 8737: the extension is critical");
        // DER OCTET STRING of the 32-byte digest.
        assert_eq!(ext.value[..2], [0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
        let names = mm_certs::CertInfo::parse(der, Path::new("x"))
            .unwrap()
            .names;
        assert_eq!(names.dns, ["chat.example.org"]);
        assert!(challenge_cert("chat.example.org", &[0; 31]).is_err());
        let challenges = Challenges::default();
        challenges.insert("Chat.Example.org", key);
        assert!(challenges.get("chat.example.ORG").is_some());
        assert!(!format!("{challenges:?}").contains("key"));
        challenges.clear();
        assert!(challenges.get("chat.example.org").is_none());
    }
}
