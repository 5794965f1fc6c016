//! ACME on a cluster (CLUSTER.md, "Certificates"): every node presents the same publicly
//! trusted certificate, and any node answers the ACME server's TLS-ALPN-01 validation (behind
//! a load balancer it may reach any of them).
//!
//! Each node with `--acme-domain` runs [`maintain`], which every [`WATCH_EVERY`] reads the
//! challenges posted in the store (by whichever node is ordering) into its own
//! [`Challenges`], and every [`SYNC_EVERY`] presents the certificate stored for the cluster if
//! it is newer than its own (also written to its TLS directory, as on one server). When the
//! certificate is due (none yet, or a third of its lifetime left), the node that takes the
//! order in the store (`Membership::acme_claim`: one at a time, freed when its node dies)
//! orders it, posts its challenges for every node, stores the result for the others, and
//! presents it.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::lease::Membership;
use crate::acme::{self, AcmeOptions, ChallengeBoard, Challenges};
use crate::tls::ServerCert;

/// How often a node reads the challenges posted in the store.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How often a node looks for a newer certificate in the store.
pub const SYNC_EVERY: Duration = Duration::from_secs(5);

/// A node's ACME setup, made at start ([`crate::Operations::acme`]) and run once the node
/// joined the cluster.
#[derive(Debug)]
pub struct AcmeSetup {
    /// What `--acme-*` configure.
    pub opts: AcmeOptions,
    /// The TLS directory (the ACME account and the certificate file).
    pub tls_dir: PathBuf,
    /// What the node presents.
    pub cert: Arc<ServerCert>,
    /// The challenges the node answers.
    pub challenges: Arc<Challenges>,
}

/// Posts challenges in the store and waits until every node read them.
struct Board<'a> {
    membership: &'a Membership,
    /// Whether a challenge was posted (the ACME server was asked to validate).
    posted: std::sync::atomic::AtomicBool,
}

impl ChallengeBoard for Board<'_> {
    async fn post(&self, domain: &str, digest: &[u8]) -> anyhow::Result<()> {
        self.membership.acme_post(domain, digest).await?;
        self.posted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // Every node reads them every WATCH_EVERY: two reads, before the ACME server connects.
        tokio::time::sleep(WATCH_EVERY * 2 + Duration::from_millis(200)).await;
        Ok(())
    }
}

/// Keeps the cluster's certificate presented on this node and answers the posted challenges,
/// until `cancel` (see the module's docs).
pub async fn maintain(setup: AcmeSetup, membership: Arc<Membership>, cancel: CancellationToken) {
    let names = setup.opts.domains.join(", ");
    let mut posted: HashMap<String, Vec<u8>> = HashMap::new();
    let mut failures = 0u32;
    let mut next_order = Instant::now();
    let mut last_sync: Option<Instant> = None;
    let mut refused_pem: Option<u64> = None;
    // A certificate this node obtained but could not store yet: stored at the next turns.
    let mut unstored: Option<zeroize::Zeroizing<String>> = None;
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = cancel.cancelled() => return,
        }
        match membership.acme_challenges().await {
            Ok(list) => {
                let now: HashMap<String, Vec<u8>> = list.into_iter().collect();
                if now != posted {
                    let mut certs = HashMap::new();
                    for (domain, digest) in &now {
                        match acme::challenge_cert(domain, digest) {
                            Ok(key) => {
                                certs.insert(domain.to_ascii_lowercase(), key);
                            }
                            Err(e) => {
                                warn!(error = %e, "a posted ACME challenge cannot be answered")
                            }
                        }
                    }
                    if !now.is_empty() {
                        info!(
                            domains = now.len(),
                            "answering the ACME challenges posted for the cluster"
                        );
                    }
                    setup.challenges.replace(certs);
                    posted = now;
                }
            }
            Err(e) => debug!(error = %e, "the posted ACME challenges not read"),
        }
        if let Some(pem) = &unstored {
            match membership.acme_store(&setup.opts.directory, pem).await {
                Ok(()) => unstored = None,
                Err(e) => {
                    debug!(error = %e, "the new certificate not stored for the other nodes yet")
                }
            }
        }
        if last_sync.is_none_or(|t| t.elapsed() >= SYNC_EVERY) {
            last_sync = Some(Instant::now());
            adopt(&setup, &membership, &mut refused_pem).await;
        }
        let current = current_info(&setup);
        let due = current
            .as_ref()
            .is_none_or(|i| acme::renew_at(i.not_before, i.not_after) <= OffsetDateTime::now_utc());
        if !due || Instant::now() < next_order {
            continue;
        }
        match membership.acme_claim().await {
            Ok(true) => {}
            // Another node orders: its certificate comes through the store.
            Ok(false) => continue,
            Err(e) => {
                warn!(error = %e, "the cluster's ACME order could not be taken");
                continue;
            }
        }
        // Another node may have stored a new one just before this node took the order.
        if adopt(&setup, &membership, &mut refused_pem).await {
            let _ = membership.acme_release().await;
            continue;
        }
        info!(domains = %names, "ordering a certificate for the cluster (this node holds the order)");
        let board = Board {
            membership: &membership,
            posted: std::sync::atomic::AtomicBool::new(false),
        };
        let result = acme::attempt(&setup.opts, &setup.tls_dir, &setup.challenges, &board).await;
        if let Err(e) = membership.acme_clear().await {
            debug!(error = %e, "this node's ACME challenges not cleared (other nodes drop them with its lease)");
        }
        posted.clear();
        let installed = result.and_then(|pem| {
            let stored = acme::install(&setup.tls_dir, &pem, &setup.cert)?;
            Ok((stored, zeroize::Zeroizing::new(pem)))
        });
        match installed {
            Ok((stored, pem)) => {
                failures = 0;
                if let Err(e) = membership.acme_store(&setup.opts.directory, &pem).await {
                    warn!(error = %e, "the new certificate could not be stored for the other nodes yet; trying again each second");
                    unstored = Some(pem);
                }
                if !acme::obtained(&names, &stored, current.as_ref()) {
                    next_order = Instant::now() + acme::retry_after(1);
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = acme::retry_after(failures);
                acme::failed(&setup.opts, &e, current.as_ref(), wait);
                next_order = Instant::now() + wait;
                // A validation that failed (challenges were posted) would fail from any node:
                // the cluster backs off, the order stays held until then (freed at once if this
                // node dies). A failure before that (this node could not reach the ACME
                // server) is this node's own: another node may try now.
                if board.posted.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Err(e) = membership.acme_hold(wait).await {
                        debug!(error = %e, "the ACME order not held for the backoff");
                    }
                    continue;
                }
            }
        }
        if let Err(e) = membership.acme_release().await {
            debug!(error = %e, "the ACME order not given up (it ends by itself)");
        }
    }
}

/// The certificate this node presents, if any.
fn current_info(setup: &AcmeSetup) -> Option<mm_certs::CertInfo> {
    setup
        .cert
        .end_entity()
        .and_then(|der| mm_certs::CertInfo::parse(&der, &setup.tls_dir.join(acme::CERT_FILE)).ok())
}

/// Presents the certificate stored for the cluster if it is usable and runs out later than
/// the one presented. Returns whether it did. A stored certificate that cannot be used is
/// logged once (`refused`: which one).
async fn adopt(setup: &AcmeSetup, membership: &Membership, refused: &mut Option<u64>) -> bool {
    let pem = match membership.acme_stored(&setup.opts.directory).await {
        Ok(Some(pem)) => zeroize::Zeroizing::new(pem),
        Ok(None) => return false,
        Err(e) => {
            debug!(error = %e, "the cluster's certificate not read");
            return false;
        }
    };
    let stored = match acme::check_pem(&pem, &setup.opts, OffsetDateTime::now_utc()) {
        Ok(stored) => stored,
        Err(e) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            pem.hash(&mut h);
            if refused.replace(h.finish()) != Some(h.finish()) {
                warn!(error = %format!("{e:#}"), "the certificate stored for the cluster cannot be used here");
            }
            return false;
        }
    };
    if current_info(setup).is_some_and(|c| c.not_after >= stored.info.not_after) {
        return false;
    }
    match acme::install(&setup.tls_dir, &pem, &setup.cert) {
        Ok(stored) => {
            info!(
                domains = %setup.opts.domains.join(", "),
                expires = %mm_certs::date(stored.info.not_after),
                "using the certificate another node of the cluster obtained; new connections get it"
            );
            true
        }
        Err(e) => {
            warn!(error = %format!("{e:#}"), "the cluster's certificate could not be presented");
            false
        }
    }
}
