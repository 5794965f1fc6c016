//! Certificate lifetimes: server certificates are valid at most 397 days; the server renews its
//! own from `ca.key` (at start, and periodically while it runs, without dropping anyone) and
//! warns when it cannot; `mm-certs` issues from the existing CA so that clients keep trusting
//! the server.

use std::time::Duration;

use mm_certs::{CertInfo, Issue, Names, CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY};
use mm_client::trust::KnownServers;
use mm_client::{ConnectOptions, Trust};
use mm_server::Limits;
use mm_tests::{identity_for, presented, ServerProcess, TestClient, TestServer, WAIT};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use tokio::process::Command;

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");
const MM_CERTS: &str = env!("CARGO_BIN_EXE_e2e-mm-certs");

fn info(der: &CertificateDer<'_>) -> CertInfo {
    CertInfo::parse(der, std::path::Path::new("presented")).unwrap()
}

/// CA and server certificate in `dir`, the server certificate issued now and valid for
/// `validity` (from a day back).
fn generate(dir: &std::path::Path, names: &Names, validity: time::Duration) {
    let issue = Issue {
        now: OffsetDateTime::now_utc(),
        server_validity: validity,
    };
    mm_certs::generate_at(dir, names, false, issue).unwrap();
}

/// CA and server certificate in `dir`, the server certificate issued now and running out in
/// `days_left` days.
fn short_lived(dir: &std::path::Path, names: &Names, days_left: i64) {
    // Its notBefore is a day back.
    generate(dir, names, time::Duration::days(days_left + 1));
}

/// CA and server certificate in `dir`, the server certificate valid five years (what an older
/// version made).
fn five_years(dir: &std::path::Path, names: &Names) {
    generate(dir, names, time::Duration::days(1825));
}

/// The CA certificates and the server certificate in `tls`.
fn ca_and_server(tls: &std::path::Path) -> (Vec<CertificateDer<'static>>, CertificateDer<'static>) {
    let ca = mm_certs::load_certs(&tls.join(CA_CERT)).unwrap();
    let server = mm_certs::load_certs(&tls.join(SERVER_CERT))
        .unwrap()
        .remove(0);
    (ca, server)
}

/// Starts `mm-server` on `data` and reads what it logs at start; returns it, that log as one
/// text, and the certificate it presents to a client that trusts `ca`.
async fn start_and_present(
    data: tempfile::TempDir,
    ca: &[CertificateDer<'static>],
) -> (ServerProcess, String, CertificateDer<'static>) {
    let mut server = ServerProcess::start_in(MM_SERVER, "", data).await;
    server.read_log(Duration::from_millis(100)).await;
    let log = server.log.join("\n");
    let presented = presented(&server.addr, ca, "localhost").await.unwrap();
    (server, log, presented)
}

#[tokio::test]
async fn mm_server_renews_a_certificate_about_to_run_out_at_start_and_clients_keep_trusting_it() {
    let data = tempfile::tempdir().unwrap();
    let tls = data.path().join("tls");
    let names = Names {
        dns: vec!["chat.example.test".into()],
        ips: vec!["192.0.2.5".parse().unwrap()],
    };
    short_lived(&tls, &names, 10);
    let (ca, old) = ca_and_server(&tls);

    let (server, log, now) = start_and_present(data, &ca).await;
    assert_ne!(now, old, "a new certificate is presented:\n{log}");
    let renewed = info(&now);
    assert!(
        renewed.not_after - OffsetDateTime::now_utc() > time::Duration::days(390),
        "{renewed:?}"
    );
    assert!(renewed.not_after - renewed.not_before <= time::Duration::days(397));
    assert!(mm_certs::issued_by(&now, &ca[0]), "by the same CA");
    assert!(renewed.names.dns.contains(&"chat.example.test".to_string()));
    assert!(renewed.names.ips.contains(&"192.0.2.5".parse().unwrap()));
    assert!(
        server
            .log
            .iter()
            .any(|l| l.contains("TLS certificate renewed")
                && l.contains(&format!("expires={}", mm_certs::date(renewed.not_after)))),
        "the renewal and the new expiry date are logged:\n{log}"
    );
    // On disk too (for the next start), private.
    assert_eq!(
        mm_certs::load_certs(&tls.join(SERVER_CERT)).unwrap()[0],
        now
    );
    #[cfg(unix)]
    for f in [SERVER_CERT, SERVER_KEY] {
        assert_eq!(mm_tests::mode(&tls.join(f)), 0o600, "{f}");
    }

    // Clients that trust the CA — by file, or by the fingerprint they accepted — connect.
    let mut alice = TestClient::connect(&server.options("alice")).await;
    let home = tempfile::tempdir().unwrap();
    let known = KnownServers::in_home(home.path());
    known
        .add(&server.addr, &mm_certs::fingerprint(&ca[0]))
        .unwrap();
    let mut opts = ConnectOptions::new(server.addr.clone(), "bob", Trust::Known(known));
    opts.certificate = Some(identity_for("bob"));
    let mut bob = TestClient::connect(&opts).await;
    alice.chat_to(&mut bob, "same CA, new certificate").await;
}

#[tokio::test]
async fn mm_server_warns_when_it_cannot_renew() {
    let data = tempfile::tempdir().unwrap();
    let tls = data.path().join("tls");
    short_lived(&tls, &Names::default(), 10);
    // Operator-supplied certificates: no CA key here.
    std::fs::remove_file(tls.join(CA_KEY)).unwrap();
    let (ca, old) = ca_and_server(&tls);
    let (server, log, now) = start_and_present(data, &ca).await;
    let expiry = mm_certs::date(info(&old).not_after);
    assert!(
        server.log.iter().any(|l| l.contains("WARN")
            && l.contains(&format!("expires on {expiry} and cannot be renewed here"))
            && l.contains("ca.key")),
        "{log}"
    );
    assert_eq!(now, old);
}

#[tokio::test]
async fn a_running_server_renews_its_certificate_without_dropping_anyone() {
    let tls = tempfile::tempdir().unwrap();
    short_lived(tls.path(), &Names::default(), 20);
    let server = TestServer::start_in(tls, Limits::default()).await;
    let old = server.cert.end_entity().unwrap();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.chat_to(&mut bob, "before").await;

    // The periodic check, every 50 ms instead of daily.
    let checker = tokio::spawn(mm_server::renew::renew_every(
        server.tls.path().to_path_buf(),
        std::sync::Arc::clone(&server.cert),
        Duration::from_millis(50),
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    let new = loop {
        let now = presented(&server.server(), &server.ca, "localhost")
            .await
            .unwrap();
        if now != old {
            break now;
        }
        assert!(tokio::time::Instant::now() < deadline, "never renewed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    checker.abort();
    assert!(info(&new).not_after - OffsetDateTime::now_utc() > time::Duration::days(390));
    assert_eq!(server.cert.end_entity().unwrap(), new);

    // Those connected before kept their connections; those who come now get the new one.
    alice.chat_to(&mut bob, "after").await;
    bob.chat_to(&mut alice, "still here").await;
    let mut carol = server.client("carol").await;
    carol.chat_to(&mut alice, "new connection, same CA").await;
}

/// Runs `mm-certs` with `args`; returns stdout, stderr and success.
async fn mm_certs(args: &[&str], out: &std::path::Path) -> (String, String, bool) {
    let output = Command::new(MM_CERTS)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}

#[tokio::test]
async fn mm_certs_issues_from_the_existing_ca_and_makes_a_new_one_only_when_asked() {
    // The server made its own CA on first start.
    let server = ServerProcess::start(MM_SERVER, "").await;
    let ca = server.ca();
    let data = server.stop_keeping_data().await;
    let tls = data.path().join("tls");
    let first = mm_certs::load_certs(&tls.join(SERVER_CERT))
        .unwrap()
        .remove(0);
    assert!(info(&first).not_after - info(&first).not_before <= time::Duration::days(397));

    // mm-certs for a LAN address: same CA, a new server certificate.
    let (stdout, stderr, ok) = mm_certs(&["--ip", "192.168.7.10"], &tls).await;
    assert!(ok, "{stderr}");
    assert_eq!(mm_certs::load_certs(&tls.join(CA_CERT)).unwrap(), ca);
    assert!(stdout.contains(&mm_certs::fingerprint(&ca[0])), "{stdout}");
    assert!(
        stdout.contains("issued by the CA already there"),
        "{stdout}"
    );
    assert!(stdout.contains("valid until"), "{stdout}");
    // How to make browsers trust the CA (the web client), naming this CA's file.
    assert!(
        stdout.contains("Browsers (the web client")
            && stdout.contains(&tls.join(CA_CERT).display().to_string())
            && [
                "Firefox",
                "certutil",
                "add-trusted-cert",
                "update-ca-certificates",
                "Android",
                "iPhone"
            ]
            .iter()
            .all(|step| stdout.contains(step)),
        "{stdout}"
    );
    // certutil on a profile that never ran the browser: the database is made first (else the
    // import fails), and how to compare the fingerprint is said.
    assert!(
        stdout.contains("certutil -d sql:$HOME/.pki/nssdb -N --empty-password")
            && stdout.contains("openssl x509 -in ca.pem -noout -fingerprint -sha256"),
        "{stdout}"
    );
    let second = mm_certs::load_certs(&tls.join(SERVER_CERT))
        .unwrap()
        .remove(0);
    assert_ne!(second, first);
    assert!(mm_certs::issued_by(&second, &ca[0]));
    assert!(info(&second)
        .names
        .ips
        .contains(&"192.168.7.10".parse().unwrap()));
    // Without the address again: it says what the new one no longer covers.
    let (stdout, _, ok) = mm_certs(&[], &tls).await;
    assert!(ok);
    assert!(stdout.contains("also covered 192.168.7.10"), "{stdout}");
    assert_eq!(mm_certs::load_certs(&tls.join(CA_CERT)).unwrap(), ca);
    // The server's CA may vouch only for its own and LAN names: a public name needs a new
    // CA, said before anything is written.
    let files: Vec<Vec<u8>> = mm_certs::TLS_FILES
        .iter()
        .map(|f| std::fs::read(tls.join(f)).unwrap())
        .collect();
    let (_, stderr, ok) =
        mm_certs(&["--name", "chat.example.org", "--ip", "203.0.113.9"], &tls).await;
    assert!(!ok);
    assert!(
        stderr.contains("may not vouch for chat.example.org, 203.0.113.9")
            && stderr.contains("mm-certs --new-ca")
            && stderr.contains("must then trust the new one"),
        "{stderr}"
    );
    let after: Vec<Vec<u8>> = mm_certs::TLS_FILES
        .iter()
        .map(|f| std::fs::read(tls.join(f)).unwrap())
        .collect();
    assert_eq!(after, files, "nothing written");
    assert!(!stdout.contains("no name constraints"), "{stdout}");

    // The server uses it and clients that trusted the CA still connect.
    let server = ServerProcess::start_in(MM_SERVER, "", data).await;
    assert_eq!(server.ca(), ca);
    let _alice = TestClient::connect(&server.options("alice")).await;
    let data = server.stop_keeping_data().await;
    let tls = data.path().join("tls");

    // A new CA only when asked, with a warning.
    let (stdout, stderr, ok) = mm_certs(&["--new-ca"], &tls).await;
    assert!(ok, "{stderr}");
    let new_ca = mm_certs::load_certs(&tls.join(CA_CERT)).unwrap();
    assert_ne!(new_ca, ca);
    assert!(stdout.contains("WARNING: this is a NEW CA"), "{stdout}");
    assert!(
        stdout.contains("the CA may vouch only for: DNS names localhost, local, lan"),
        "{stdout}"
    );

    // Without ca.key it cannot issue, and says so rather than making a new CA.
    std::fs::remove_file(tls.join(CA_KEY)).unwrap();
    let before = std::fs::read(tls.join(SERVER_CERT)).unwrap();
    let (_, stderr, ok) = mm_certs(&["--ip", "192.0.2.11"], &tls).await;
    assert!(!ok);
    assert!(
        stderr.contains("ca.key") && stderr.contains("--new-ca"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(tls.join(SERVER_CERT)).unwrap(), before);
}

/// Copies the four TLS files of `tls` into a new directory and issues a new server certificate
/// and key there from the same CA: a pair that belongs to the CA in `tls` but not to its
/// `server.pem` or `server.key`.
fn other_pair_from_the_same_ca(tls: &std::path::Path) -> tempfile::TempDir {
    let other = tempfile::tempdir().unwrap();
    for f in mm_certs::TLS_FILES {
        std::fs::copy(tls.join(f), other.path().join(f)).unwrap();
    }
    mm_certs::renew_server(other.path(), &Names::default()).unwrap();
    other
}

/// Whether `server.pem` and `server.key` in `tls` load as a pair, as the server loads them.
fn pair_on_disk_matches(tls: &std::path::Path) -> bool {
    mm_server::tls::ServerCert::load(tls).is_ok()
}

/// Asserts that an error line says each cause once: no "X: X" (the cause printed again by an
/// error chain).
fn says_each_cause_once(stderr: &str) {
    let parts: Vec<&str> = stderr.trim().split(": ").collect();
    for pair in parts.windows(2) {
        assert_ne!(pair[0], pair[1], "a cause printed twice: {stderr}");
    }
}

#[tokio::test]
async fn mm_server_reissues_a_certificate_valid_longer_than_397_days_at_start() {
    // What an older version made: a server certificate valid five years, from the same CA.
    let data = tempfile::tempdir().unwrap();
    let tls = data.path().join("tls");
    let names = Names {
        dns: vec!["old.example.test".into()],
        ips: vec!["192.0.2.6".parse().unwrap()],
    };
    five_years(&tls, &names);
    let (ca, old) = ca_and_server(&tls);

    let (server, log, now) = start_and_present(data, &ca).await;
    assert_ne!(now, old, "re-issued:\n{log}");
    let new = info(&now);
    assert!(
        new.not_after - new.not_before <= time::Duration::days(397),
        "{new:?}"
    );
    assert!(mm_certs::issued_by(&now, &ca[0]), "by the same CA");
    assert_eq!(new.names, info(&old).names, "same names and addresses");
    assert!(
        server
            .log
            .iter()
            .any(|l| l.contains("TLS certificate renewed")
                && l.contains("valid longer than 397 days; browsers refuse such certificates")),
        "the reason is logged:\n{log}"
    );
    assert_eq!(
        mm_certs::load_certs(&tls_of(&server).join(SERVER_CERT)).unwrap()[0],
        now,
        "on disk too"
    );
    let _alice = TestClient::connect(&server.options("alice")).await;
}

fn tls_of(server: &ServerProcess) -> std::path::PathBuf {
    server.data.path().join("tls")
}

#[tokio::test]
async fn mm_server_warns_about_a_certificate_valid_longer_than_397_days_without_ca_key() {
    let data = tempfile::tempdir().unwrap();
    let tls = data.path().join("tls");
    five_years(&tls, &Names::default());
    // Operator-supplied: no CA key here.
    std::fs::remove_file(tls.join(CA_KEY)).unwrap();
    let (ca, old) = ca_and_server(&tls);
    let (server, log, now) = start_and_present(data, &ca).await;
    assert!(
        server.log.iter().any(|l| l.contains("WARN")
            && l.contains("valid longer than 397 days; browsers refuse such certificates")
            && l.contains("ca.key")),
        "{log}"
    );
    assert_eq!(now, old, "kept: nothing here can replace it");
}

#[tokio::test]
async fn a_renewal_that_fails_half_way_leaves_the_certificate_and_key_a_pair() {
    let data = tempfile::tempdir().unwrap();
    let tls = data.path().join("tls");
    short_lived(&tls, &Names::default(), 10);
    let (ca, old) = ca_and_server(&tls);

    // Writing the new certificate fails (its temporary file cannot be created: a directory is
    // in the way, under the names this and older versions use), after the key could be written.
    let script = format!(
        "mkdir '{0}/.server.pem.tmp'$$ '{0}/.server.pem.new.tmp'$$ && exec \"$0\" \"$@\"",
        tls.display()
    );
    let args: Vec<std::ffi::OsString> = vec![
        "-c".into(),
        script.into(),
        MM_SERVER.into(),
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--data".into(),
        data.path().into(),
    ];
    let mut server = ServerProcess::start_with_args("sh", &args, data).await;
    server.read_log(Duration::from_millis(100)).await;
    let log = server.log.join("\n");
    assert!(
        server
            .log
            .iter()
            .any(|l| l.contains("renewing the TLS certificate failed")),
        "{log}"
    );
    assert_eq!(
        presented(&server.addr, &ca, "localhost").await.unwrap(),
        old,
        "still presenting the certificate it had"
    );
    let data = server.stop_keeping_data().await;
    assert!(
        pair_on_disk_matches(&tls),
        "server.key and server.pem on disk still belong together:\n{log}"
    );

    // The next start (the obstacle gone) renews.
    for entry in std::fs::read_dir(&tls).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir(path).unwrap();
        }
    }
    let server = ServerProcess::start_in(MM_SERVER, "", data).await;
    let now = presented(&server.addr, &ca, "localhost").await.unwrap();
    assert_ne!(now, old);
    assert!(pair_on_disk_matches(&tls));
}

#[tokio::test]
async fn a_crash_between_the_renames_is_completed_at_the_next_start() {
    // A renewal that got as far as renaming the new key into place, and no further: the new
    // certificate still under its pending name. No ca.key, so nothing could re-issue it.
    let data = tempfile::tempdir().unwrap();
    let tls = data.path().join("tls");
    short_lived(&tls, &Names::default(), 10);
    let other = other_pair_from_the_same_ca(&tls);
    std::fs::copy(other.path().join(SERVER_KEY), tls.join(SERVER_KEY)).unwrap();
    std::fs::copy(other.path().join(SERVER_CERT), tls.join("server.pem.new")).unwrap();
    std::fs::remove_file(tls.join(CA_KEY)).unwrap();
    let ca = mm_certs::load_certs(&tls.join(CA_CERT)).unwrap();
    let new = mm_certs::load_certs(&other.path().join(SERVER_CERT))
        .unwrap()
        .remove(0);

    let (server, log, now) = start_and_present(data, &ca).await;
    assert_eq!(now, new, "the interrupted renewal was completed:\n{log}");
    assert!(!tls.join("server.pem.new").exists());
    assert!(pair_on_disk_matches(&tls));
    assert!(server.log.iter().any(|l| l.contains("completed")), "{log}");
}

#[tokio::test]
async fn a_key_that_does_not_belong_to_the_certificate_is_reissued_from_the_ca_or_explained() {
    // The state older versions left after a failed renewal: a new key next to the old
    // certificate.
    let data = tempfile::tempdir().unwrap();
    let tls = data.path().join("tls");
    let names = Names {
        dns: vec!["chat.example.test".into()],
        ips: vec![],
    };
    short_lived(&tls, &names, 100);
    let other = other_pair_from_the_same_ca(&tls);
    std::fs::copy(other.path().join(SERVER_KEY), tls.join(SERVER_KEY)).unwrap();
    let (ca, old) = ca_and_server(&tls);

    // With ca.key: healed at start, a fresh certificate for the same names.
    let (server, log, now) = start_and_present(data, &ca).await;
    assert_ne!(now, old, "{log}");
    assert!(mm_certs::issued_by(&now, &ca[0]));
    assert!(info(&now)
        .names
        .dns
        .contains(&"chat.example.test".to_string()));
    assert!(
        server
            .log
            .iter()
            .any(|l| l.contains("WARN") && l.contains("server.key") && l.contains("issued")),
        "{log}"
    );
    let data = server.stop_keeping_data().await;
    assert!(pair_on_disk_matches(&tls));

    // Without ca.key: refused, saying what is wrong once and what to do.
    std::fs::copy(other.path().join(SERVER_KEY), tls.join(SERVER_KEY)).unwrap();
    std::fs::remove_file(tls.join(CA_KEY)).unwrap();
    let stderr = mm_tests::server_refuses_to_start(MM_SERVER, data.path()).await;
    assert!(!stderr.contains("KeyMismatch"), "plain words: {stderr}");
    assert!(
        stderr.contains("server.key") && stderr.contains("server.pem"),
        "{stderr}"
    );
    assert!(stderr.contains("mm-certs --out"), "what to do: {stderr}");
    says_each_cause_once(&stderr);

    // Other unreadable files: each cause once too.
    std::fs::remove_file(tls.join(SERVER_CERT)).unwrap();
    std::fs::create_dir(tls.join(SERVER_CERT)).unwrap();
    let stderr = mm_tests::server_refuses_to_start(MM_SERVER, data.path()).await;
    assert!(stderr.contains("server.pem"), "{stderr}");
    says_each_cause_once(&stderr);
}

/// Writes into `tls` a CA as versions before name constraints made it (no nameConstraints: it
/// may vouch for any name) and a server certificate for the default names issued from it.
fn unconstrained_ca(tls: &std::path::Path) {
    std::fs::create_dir_all(tls).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Multi-Messenger CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = params.self_signed(&key).unwrap();
    mm_certs::write_secret(&tls.join(CA_KEY), key.serialize_pem().as_bytes()).unwrap();
    mm_certs::write_secret(&tls.join(CA_CERT), ca.pem().as_bytes()).unwrap();
    mm_certs::renew_server(tls, &Names::default()).unwrap();
}

#[tokio::test]
async fn a_ca_without_name_constraints_is_warned_about_and_kept() {
    let data = tempfile::tempdir().unwrap();
    let tls = data.path().join("tls");
    unconstrained_ca(&tls);
    let ca = mm_certs::load_certs(&tls.join(CA_CERT)).unwrap();

    // mm-server says so at start, and how to make a constrained one; it keeps serving with
    // the CA clients pinned.
    let (server, log, presented) = start_and_present(data, &ca).await;
    assert!(
        server.log.iter().any(|l| l.contains("WARN")
            && l.contains("no name constraints")
            && l.contains("ANY website")
            && l.contains("mm-certs --new-ca")
            && l.contains("trust the new")),
        "{log}"
    );
    assert!(mm_certs::issued_by(&presented, &ca[0]));
    let data = server.stop_keeping_data().await;
    let tls = data.path().join("tls");
    assert_eq!(
        mm_certs::load_certs(&tls.join(CA_CERT)).unwrap(),
        ca,
        "not replaced"
    );

    // mm-certs issues from it as before, and its browser steps lead with the warning.
    let (stdout, stderr, ok) = mm_certs(&["--name", "chat.example.org"], &tls).await;
    assert!(ok, "{stderr}");
    let browsers = stdout.find("Browsers (the web client").unwrap();
    let warning = stdout.find("WARNING: ").unwrap();
    assert!(warning < browsers, "{stdout}");
    assert!(
        stdout[warning..browsers].contains("no name constraints")
            && stdout[warning..browsers].contains("mm-certs --new-ca"),
        "{stdout}"
    );
    assert_eq!(mm_certs::load_certs(&tls.join(CA_CERT)).unwrap(), ca);

    // A server with a CA of its own making says nothing of the kind.
    let mut fresh = ServerProcess::start(MM_SERVER, "").await;
    fresh.read_log(Duration::from_millis(100)).await;
    assert!(
        !fresh.log.iter().any(|l| l.contains("no name constraints")),
        "{}",
        fresh.log.join("\n")
    );
}
