//! The server renews its own certificate.
//!
//! Server certificates are valid 397 days (`mm_certs::SERVER_VALIDITY`), so that browsers and
//! scanners accept them; a server that runs for years must not stop working when one runs out.
//! [`check`] runs at start and then daily ([`renew_daily`]): when the certificate presented
//! has fewer than 30 days left (`mm_certs::RENEW_BEFORE`) and the CA that issued it is in the
//! TLS directory with its key (`ca.pem`, `ca.key`: the server made them, or `mm-certs` did), it
//! issues a new one for the same names and addresses from that CA, writes it, and presents it
//! to new connections through the same reload as SIGHUP (established connections keep theirs
//! and are not dropped). Clients trust the CA, so they notice nothing.
//!
//! A certificate valid longer than 397 days in all (`notAfter - notBefore`; versions before
//! 397-day certificates made five-year ones, and an upgrade keeps them) is replaced the same
//! way, at start and daily, with the reason logged: browsers refuse such certificates.
//!
//! When it cannot renew — no `ca.key` (certificates supplied by the operator, or the CA key
//! moved offline), or a certificate the CA there did not issue — it warns instead, at start and
//! daily, with the expiry date (or the validity) and what to do.
//!
//! At start, before the certificate is loaded, [`finish_pending`] completes or rolls back a
//! replacement of `server.key` and `server.pem` that was interrupted (the rule is at
//! `mm_certs::finish_pending`), and [`load_at_start`] heals a pair that still does not match —
//! a key that is not the certificate's, left by an older version's interrupted renewal, a crash
//! or a hand edit — by issuing a new certificate and key from the CA, as a renewal would, when
//! `ca.key` is there and issued the certificate; otherwise the server refuses to start and
//! says what to do.
//!
//! Time is a parameter, so that tests can be "a year later" without waiting.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mm_certs::{date, CertInfo, Issue, Renewal, CA_CERT, CA_KEY, SERVER_CERT};
use time::OffsetDateTime;
use tracing::{error, info, warn};

use crate::tls::{ServerCert, TlsError};

/// How often a running server checks its certificate.
pub const CHECK_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// What [`check`] found or did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// More than `RENEW_BEFORE` left: nothing to do.
    Valid {
        /// When the certificate presented runs out.
        not_after: OffsetDateTime,
    },
    /// A new certificate was issued from the CA and is presented from now on.
    Renewed {
        /// Why.
        why: Renewal,
        /// When the previous one ran out.
        previous: OffsetDateTime,
        /// When the new one runs out.
        not_after: OffsetDateTime,
        /// SHA-256 fingerprint of the new certificate.
        fingerprint: String,
    },
    /// Due (or expired, or valid too long), and this server cannot renew it: the operator must.
    CannotRenew {
        /// Why it should be renewed.
        why: Renewal,
        /// When the certificate presented runs out.
        not_after: OffsetDateTime,
        /// Why, and what to do.
        reason: String,
    },
    /// Due, but renewing failed (see `error`); the certificate presented is unchanged, and the
    /// next check tries again.
    Failed {
        /// When the certificate presented runs out.
        not_after: Option<OffsetDateTime>,
        /// What went wrong.
        error: String,
    },
}

/// Checks the certificate `cert` presents and renews it from the CA in `tls_dir` if fewer than
/// `mm_certs::RENEW_BEFORE` remain at `now`, or if it is valid longer than
/// `mm_certs::SERVER_VALIDITY` in all (`mm_certs::CertInfo::renewal`); see the module docs.
/// Blocking file I/O (a few small files, and only when due).
pub fn check(tls_dir: &Path, cert: &ServerCert, now: OffsetDateTime) -> Outcome {
    let Some(der) = cert.end_entity() else {
        return Outcome::Failed {
            not_after: None,
            error: "no certificate is presented".into(),
        };
    };
    let cert_path = tls_dir.join(SERVER_CERT);
    let current = match CertInfo::parse(&der, &cert_path) {
        Ok(info) => info,
        Err(e) => {
            return Outcome::Failed {
                not_after: None,
                error: e.to_string(),
            }
        }
    };
    let Some(why) = current.renewal(now) else {
        return Outcome::Valid {
            not_after: current.not_after,
        };
    };
    let cannot = |reason: String| Outcome::CannotRenew {
        why,
        not_after: current.not_after,
        reason,
    };
    let (ca_path, key_path) = (tls_dir.join(CA_CERT), tls_dir.join(CA_KEY));
    if !key_path.exists() {
        return cannot(format!(
            "{} is not there (certificates supplied by the operator, or the CA key kept \
             offline): put a new {} and server.key in {} and send SIGHUP, or run \
             `mm-certs --out {}` where ca.key is",
            key_path.display(),
            SERVER_CERT,
            tls_dir.display(),
            tls_dir.display()
        ));
    }
    let ca = match mm_certs::load_certs(&ca_path) {
        Ok(certs) => certs,
        Err(e) => return cannot(format!("cannot read the CA: {e}")),
    };
    if !ca.first().is_some_and(|ca| mm_certs::issued_by(&der, ca)) {
        return cannot(format!(
            "the certificate presented was not issued by the CA in {}; renew it where it came \
             from, put it in {} and send SIGHUP",
            ca_path.display(),
            tls_dir.display()
        ));
    }
    let issue = Issue {
        now,
        server_validity: mm_certs::SERVER_VALIDITY,
    };
    let failed = |error: String| Outcome::Failed {
        not_after: Some(current.not_after),
        error,
    };
    if let Err(e) = mm_certs::renew_server_at(tls_dir, &current.names, issue) {
        return failed(e.to_string());
    }
    match cert.reload(tls_dir) {
        Ok(summary) => {
            let not_after = cert
                .end_entity()
                .and_then(|der| CertInfo::parse(&der, &cert_path).ok())
                .map_or(now + mm_certs::SERVER_VALIDITY, |info| info.not_after);
            Outcome::Renewed {
                why,
                previous: current.not_after,
                not_after,
                fingerprint: summary.fingerprint,
            }
        }
        Err(e) => failed(format!("the new certificate did not load: {e}")),
    }
}

/// Logs what [`check`] found: a line when it renewed, a warning when it is due and cannot be
/// renewed here, an error when renewing failed; nothing when all is well.
pub fn log(outcome: &Outcome, dir: &Path) {
    let dir = dir.display();
    match outcome {
        Outcome::Valid { .. } => {}
        Outcome::Renewed {
            why,
            previous,
            not_after,
            fingerprint,
        } => info!(
            %dir,
            %fingerprint,
            expires = %date(*not_after),
            previous_expiry = %date(*previous),
            reason = %why,
            "TLS certificate renewed from the CA (same names and addresses); new connections get it, established ones keep theirs"
        ),
        Outcome::CannotRenew {
            why: Renewal::Expiring,
            not_after,
            reason,
        } => warn!(
            %dir,
            expires = %date(*not_after),
            "the TLS certificate expires on {} and cannot be renewed here: {reason}",
            date(*not_after)
        ),
        Outcome::CannotRenew {
            why,
            not_after,
            reason,
        } => warn!(
            %dir,
            expires = %date(*not_after),
            "the TLS certificate is {why}; it cannot be re-issued here: {reason}"
        ),
        Outcome::Failed { not_after, error } => error!(
            %dir,
            expires = %not_after.map(date).unwrap_or_else(|| "unknown".into()),
            %error,
            "renewing the TLS certificate failed; still using the current one, trying again at the next check"
        ),
    }
}

/// Warns (a WARN log line) when the CA in `tls_dir` (`ca.pem`) has no name constraints: a CA
/// made by a version before they were written, which once imported into a browser or an
/// operating system (README, "Browsers: trust the server's CA") lets its key, kept here for
/// renewal, vouch for any website. Says how to make a new, constrained one. Never replaces it
/// by itself: every client pins the CA, and a new one must be trusted anew. Nothing is said
/// when there is no `ca.pem` (operator-supplied certificates) or it cannot be read (loading
/// the certificate says so). Returns whether it warned. Blocking file I/O (one small file).
pub fn warn_if_ca_unlimited(tls_dir: &Path) -> bool {
    let ca = tls_dir.join(CA_CERT);
    if !ca.is_file() || !matches!(mm_certs::ca_is_limited(&ca), Ok(false)) {
        return false;
    }
    warn!(
        ca = %ca.display(),
        "{}",
        mm_certs::UNLIMITED_CA_WARNING
    );
    true
}

/// Completes or rolls back an interrupted replacement of `server.key` and `server.pem` in
/// `tls_dir` (`mm_certs::finish_pending`, where the rule is) and logs what it did. Called at
/// start, before the files are read.
///
/// # Errors
/// I/O errors renaming or removing the pending files.
pub fn finish_pending(tls_dir: &Path) -> Result<(), mm_certs::CertError> {
    let dir = tls_dir.display();
    match mm_certs::finish_pending(tls_dir)? {
        mm_certs::Pending::Completed => warn!(
            %dir,
            "completed a replacement of server.key and server.pem that was interrupted (a crash or a failed write); the new pair is in place"
        ),
        mm_certs::Pending::RolledBack => warn!(
            %dir,
            "removed {} left by a replacement of server.key and server.pem that was interrupted before its certificate was written; the previous pair stays",
            mm_certs::SERVER_KEY_PENDING
        ),
        mm_certs::Pending::Discarded => warn!(
            %dir,
            "removed {} that belonged to no key here",
            mm_certs::SERVER_CERT_PENDING
        ),
        _ => {}
    }
    Ok(())
}

/// Loads `server.pem` and `server.key` from `tls_dir` at start. If the key is not the
/// certificate's (an older version's interrupted renewal, a crash, a hand edit) and the CA in
/// `tls_dir` issued the certificate and its key `ca.key` is there, issues a new certificate and
/// key from it for the same names and addresses, as a renewal would (clients trust the same
/// CA, so they notice nothing), logs a warning, and loads them. Blocking file I/O.
///
/// # Errors
/// [`TlsError::KeyMismatch`] (saying what to do) when the pair does not match and cannot be
/// re-issued here; otherwise as [`ServerCert::load`].
pub fn load_at_start(tls_dir: &Path, now: OffsetDateTime) -> Result<ServerCert, TlsError> {
    let mismatch = match ServerCert::load(tls_dir) {
        Err(e @ TlsError::KeyMismatch { .. }) => e,
        loaded => return loaded,
    };
    let cert_path = tls_dir.join(SERVER_CERT);
    let Some(names) = mm_certs::load_certs(&cert_path)
        .ok()
        .and_then(|chain| chain.into_iter().next())
        .filter(|der| {
            tls_dir.join(CA_KEY).is_file()
                && mm_certs::load_certs(&tls_dir.join(CA_CERT))
                    .ok()
                    .and_then(|ca| ca.into_iter().next())
                    .is_some_and(|ca| mm_certs::issued_by(der, &ca))
        })
        .and_then(|der| CertInfo::parse(&der, &cert_path).ok())
        .map(|info| info.names)
    else {
        // Not ours to replace (no ca.key, or the certificate came from elsewhere).
        return Err(mismatch);
    };
    let issue = Issue {
        now,
        server_validity: mm_certs::SERVER_VALIDITY,
    };
    if let Err(e) = mm_certs::renew_server_at(tls_dir, &names, issue) {
        error!(dir = %tls_dir.display(), error = %e, "could not issue a new server certificate and key from the CA");
        return Err(mismatch);
    }
    let cert = ServerCert::load(tls_dir)?;
    warn!(
        dir = %tls_dir.display(),
        fingerprint = %cert.summary().fingerprint,
        "server.key was not the key of the certificate in server.pem (an interrupted write by an older version, a crash, or a file replaced by hand); issued a new server certificate and key from the CA for the same names and addresses"
    );
    Ok(cert)
}

/// Runs [`check`] every [`CHECK_EVERY`] (the first one after a full period: the caller checks
/// at start) and logs each outcome. Runs until aborted.
pub async fn renew_daily(tls_dir: PathBuf, cert: Arc<ServerCert>) {
    renew_every(tls_dir, cert, CHECK_EVERY).await;
}

/// [`renew_daily`], checking every `every` (tests use a short period).
pub async fn renew_every(tls_dir: PathBuf, cert: Arc<ServerCert>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    loop {
        ticks.tick().await;
        let (dir, cert) = (tls_dir.clone(), Arc::clone(&cert));
        // File I/O: off the async workers.
        let done = tokio::task::spawn_blocking(move || {
            let outcome = check(&dir, &cert, OffsetDateTime::now_utc());
            log(&outcome, &dir);
        })
        .await;
        if let Err(e) = done {
            error!(error = %e, "the certificate check failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mm_certs::{generate_at, Names};

    fn issue(now: OffsetDateTime, days: i64) -> Issue {
        Issue {
            now,
            server_validity: time::Duration::days(days),
        }
    }

    #[test]
    fn renews_from_the_ca_keeping_names_only_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let names = Names {
            dns: vec!["chat.example.test".into()],
            ips: vec!["192.0.2.9".parse().unwrap()],
        };
        // Expires in 40 days (41 from its notBefore, a day back).
        generate_at(dir.path(), &names, false, issue(now, 41)).unwrap();
        let cert = ServerCert::load(dir.path()).unwrap();
        let first = cert.summary();
        assert!(matches!(
            check(dir.path(), &cert, now),
            Outcome::Valid { .. }
        ));
        assert_eq!(cert.summary(), first);

        // Eleven days later fewer than 30 remain: renewed, for a year, same names.
        let later = now + time::Duration::days(11);
        let outcome = check(dir.path(), &cert, later);
        let Outcome::Renewed {
            not_after,
            fingerprint,
            ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_ne!(fingerprint, first.fingerprint);
        assert_eq!(cert.summary().fingerprint, fingerprint);
        let info = CertInfo::parse(&cert.end_entity().unwrap(), dir.path()).unwrap();
        assert_eq!(info.not_after, not_after);
        assert_eq!(info.not_after - info.not_before, mm_certs::SERVER_VALIDITY);
        for name in ["chat.example.test", "localhost"] {
            assert!(info.names.dns.contains(&name.to_string()), "{info:?}");
        }
        assert!(info.names.ips.contains(&"192.0.2.9".parse().unwrap()));
        let ca = mm_certs::load_certs(&dir.path().join(CA_CERT)).unwrap();
        assert!(mm_certs::issued_by(&cert.end_entity().unwrap(), &ca[0]));
        // And not again the next day.
        assert!(matches!(
            check(dir.path(), &cert, later + time::Duration::days(1)),
            Outcome::Valid { .. }
        ));
    }

    #[test]
    fn the_daily_check_reissues_a_certificate_valid_longer_than_397_days_or_warns() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let names = Names {
            dns: vec!["old.example.test".into()],
            ips: vec![],
        };
        // Made by an older version: five years, years left.
        generate_at(dir.path(), &names, false, issue(now, 1825)).unwrap();
        let cert = ServerCert::load(dir.path()).unwrap();
        let first = cert.summary();

        // Without ca.key: a warning with the reason, and the certificate kept.
        let ca_key = std::fs::read(dir.path().join(CA_KEY)).unwrap();
        std::fs::remove_file(dir.path().join(CA_KEY)).unwrap();
        let outcome = check(dir.path(), &cert, now + time::Duration::days(1));
        assert!(
            matches!(&outcome, Outcome::CannotRenew { why: Renewal::TooLong { days: 1825 }, reason, .. } if reason.contains("ca.key")),
            "{outcome:?}"
        );
        assert_eq!(cert.summary(), first);

        // With it (the next day's check): re-issued, 397 days, same names and CA.
        std::fs::write(dir.path().join(CA_KEY), ca_key).unwrap();
        let outcome = check(dir.path(), &cert, now + time::Duration::days(2));
        assert!(
            matches!(
                &outcome,
                Outcome::Renewed {
                    why: Renewal::TooLong { .. },
                    ..
                }
            ),
            "{outcome:?}"
        );
        let info = CertInfo::parse(&cert.end_entity().unwrap(), dir.path()).unwrap();
        assert_eq!(info.not_after - info.not_before, mm_certs::SERVER_VALIDITY);
        assert!(info.names.dns.contains(&"old.example.test".to_string()));
        let ca = mm_certs::load_certs(&dir.path().join(CA_CERT)).unwrap();
        assert!(mm_certs::issued_by(&cert.end_entity().unwrap(), &ca[0]));
        assert!(matches!(
            check(dir.path(), &cert, now + time::Duration::days(3)),
            Outcome::Valid { .. }
        ));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_healed_only_from_the_ca_that_issued_it() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        generate_at(dir.path(), &Names::default(), false, issue(now, 200)).unwrap();
        let old = mm_certs::load_certs(&dir.path().join(SERVER_CERT)).unwrap();
        let foreign = tempfile::tempdir().unwrap();
        mm_certs::generate(foreign.path(), &Names::default(), false).unwrap();
        let server_key = dir.path().join(mm_certs::SERVER_KEY);
        std::fs::copy(foreign.path().join(mm_certs::SERVER_KEY), &server_key).unwrap();

        let cert = load_at_start(dir.path(), now).unwrap();
        let new = cert.end_entity().unwrap();
        assert_ne!(new, old[0]);
        assert!(mm_certs::issued_by(&new, &old[1]), "from the same CA");

        // A certificate another CA issued (an operator's own) is never replaced: refused,
        // saying what to do.
        for f in [SERVER_CERT, mm_certs::SERVER_KEY] {
            std::fs::copy(foreign.path().join(f), dir.path().join(f)).unwrap();
        }
        let other_key = tempfile::tempdir().unwrap();
        mm_certs::generate(other_key.path(), &Names::default(), false).unwrap();
        std::fs::copy(other_key.path().join(mm_certs::SERVER_KEY), &server_key).unwrap();
        let before = std::fs::read(dir.path().join(SERVER_CERT)).unwrap();
        let err = load_at_start(dir.path(), now).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("mm-certs --out"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(SERVER_CERT)).unwrap(), before);
    }

    #[test]
    fn without_the_ca_key_or_with_another_ca_it_warns_and_keeps_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        generate_at(dir.path(), &Names::default(), false, issue(now, 10)).unwrap();
        let cert = ServerCert::load(dir.path()).unwrap();
        let before = cert.summary();
        std::fs::remove_file(dir.path().join(CA_KEY)).unwrap();
        let outcome = check(dir.path(), &cert, now);
        assert!(
            matches!(&outcome, Outcome::CannotRenew { reason, .. } if reason.contains("ca.key")),
            "{outcome:?}"
        );
        // Another CA's files in the directory: never used to replace this certificate.
        let other = tempfile::tempdir().unwrap();
        mm_certs::generate(other.path(), &Names::default(), false).unwrap();
        for f in [CA_CERT, CA_KEY] {
            std::fs::copy(other.path().join(f), dir.path().join(f)).unwrap();
        }
        let outcome = check(dir.path(), &cert, now);
        assert!(
            matches!(&outcome, Outcome::CannotRenew { reason, .. } if reason.contains("not issued by")),
            "{outcome:?}"
        );
        assert_eq!(cert.summary(), before);
    }
}
