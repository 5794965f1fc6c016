//! The client always verifies the server: by CA file or by a pinned fingerprint.

use mm_client::trust::KnownServers;
use mm_client::{connect, ConnectError, ConnectOptions, Trust};
use mm_server::Limits;
use mm_tests::TestServer;

#[tokio::test]
async fn a_client_given_the_wrong_ca_refuses_to_connect() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let opts = ConnectOptions::new(server.server(), "alice", Trust::Roots(other.ca.clone()));
    match connect(&opts).await {
        Err(ConnectError::Tls { cause: source, .. }) => {
            assert!(
                source.to_string().to_lowercase().contains("certificate"),
                "{source}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("connected to a server signed by another CA"),
    }
}

#[tokio::test]
async fn first_contact_reports_the_fingerprint_and_a_pin_then_connects() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let known = KnownServers::in_home(home.path());
    let opts = ConnectOptions::new(server.server(), "alice", Trust::Known(known.clone()));
    let expected = mm_certs::fingerprint(&server.ca[0]);
    match connect(&opts).await {
        Err(ConnectError::UnknownServer { fingerprint, .. }) => assert_eq!(fingerprint, expected),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("connected to an unknown server"),
    }
    known.add(&server.server(), &expected).unwrap();
    let (_client, _events, welcome) = connect(&opts).await.unwrap();
    assert_eq!(welcome.nick, "alice");
}

#[tokio::test]
async fn a_changed_server_certificate_is_refused_loudly() {
    let server = TestServer::start().await;
    let impostor = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let known = KnownServers::in_home(home.path());
    // The pin for the impostor's address is the real server's fingerprint.
    known
        .add(&impostor.server(), &mm_certs::fingerprint(&server.ca[0]))
        .unwrap();
    let opts = ConnectOptions::new(impostor.server(), "alice", Trust::Known(known));
    match connect(&opts).await {
        Err(e @ ConnectError::ServerKeyChanged { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("CHANGED") && text.contains(&mm_certs::fingerprint(&impostor.ca[0])),
                "{text}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("connected to a server with a changed certificate"),
    }
}

#[tokio::test]
async fn copying_the_pinned_ca_into_a_forged_chain_does_not_fool_the_pin() {
    // The attacker has the real CA certificate (it is public) but not its key: it serves its own
    // certificate followed by a copy of the real CA, so the chain's last fingerprint matches.
    let real = tempfile::tempdir().unwrap();
    mm_certs::generate(real.path(), &mm_certs::Names::default(), false).unwrap();
    let forged = tempfile::tempdir().unwrap();
    mm_certs::generate(forged.path(), &mm_certs::Names::default(), false).unwrap();
    let forged_chain = std::fs::read_to_string(forged.path().join("server.pem")).unwrap();
    let end = "-----END CERTIFICATE-----\n";
    let leaf_pem = &forged_chain[..forged_chain.find(end).unwrap() + end.len()];
    let real_ca_pem = std::fs::read_to_string(real.path().join("ca.pem")).unwrap();
    std::fs::write(
        forged.path().join("server.pem"),
        format!("{leaf_pem}{real_ca_pem}"),
    )
    .unwrap();
    std::fs::write(forged.path().join("ca.pem"), &real_ca_pem).unwrap();
    let server = TestServer::start_in(forged, Limits::default()).await;

    let home = tempfile::tempdir().unwrap();
    let known = KnownServers::in_home(home.path());
    known
        .add(&server.server(), &mm_certs::fingerprint(&server.ca[0]))
        .unwrap();
    let opts = ConnectOptions::new(server.server(), "alice", Trust::Known(known));
    match connect(&opts).await {
        Err(e @ ConnectError::Tls { .. }) => assert_eq!(
            e.to_string(),
            format!("the certificates of {} do not belong together: the CA matches the fingerprint you trusted, but it did not sign the server's certificate; someone may be intercepting the connection: ask the server's operator", server.server())
        ),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a forged chain passed the pin"),
    }
}

#[tokio::test]
async fn the_pinned_certificate_must_still_cover_the_address_used() {
    let tls = tempfile::tempdir().unwrap();
    mm_certs::generate(tls.path(), &mm_certs::Names::default(), false).unwrap();
    // 127.0.0.2 is loopback but not in the certificate (which covers localhost, 127.0.0.1, ::1).
    let server = TestServer::start_on("127.0.0.2:0", tls, Limits::default()).await;
    let home = tempfile::tempdir().unwrap();
    let known = KnownServers::in_home(home.path());
    known
        .add(&server.server(), &mm_certs::fingerprint(&server.ca[0]))
        .unwrap();
    let opts = ConnectOptions::new(server.server(), "alice", Trust::Known(known));
    match connect(&opts).await {
        Err(e @ ConnectError::Tls { .. }) => assert_eq!(
            e.to_string(),
            format!("the certificate of {} does not cover the name 127.0.0.2 (it covers localhost, 127.0.0.1, ::1): connect with one of those in --server, or ask the operator to add 127.0.0.2 (mm-certs --name NAME or --ip ADDR, then restart mm-server)", server.server())
        ),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a certificate for other names was accepted"),
    }
}

const MM: &str = env!("CARGO_BIN_EXE_e2e-mm");

/// The real `mm` with `data` as its data directory (so `--nick N` means the default home
/// `data/multi-messenger/users/N`), as a user named `nobody`; returns (exit code, stdout,
/// stderr).
async fn mm(data: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        mm_tests::WAIT,
        tokio::process::Command::new(MM)
            .args(args)
            .env("XDG_DATA_HOME", data)
            .env("HOME", data.join("unix-home"))
            .env("USER", "nobody")
            .env_remove("MM_HOME")
            .env_remove("MM_NICK")
            .env_remove("MM_SERVER")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("mm hung")
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Lines of `stderr` other than the first-run notes.
fn said(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("mm: created your"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn mm_trust_lists_forgets_and_adds_servers_in_the_home_mm_connects_with() {
    let server = TestServer::start().await;
    let addr = server.server();
    let fp = mm_certs::fingerprint(&server.ca[0]);
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    let ca = server.ca_path();
    let ca = ca.to_str().unwrap();
    let file = data.join("multi-messenger/users/alice/known_servers");
    let file = file.display();

    let (code, out, err) = mm(data, &["trust", "list", "--nick", "alice"]).await;
    assert_eq!((code, out.as_str()), (Some(0), ""));
    assert_eq!(
        err.trim_end(),
        format!("mm: no trusted servers in {file} (mm adds one when you accept it at first contact, or with mm trust add)")
    );

    // Trusted by its CA file; then alice connects without --ca, bob (another home) does not.
    let (code, _, err) = mm(
        data,
        &["trust", "add", &addr, "--ca", ca, "--nick", "alice"],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        err.trim_end(),
        format!("mm: {addr} trusted with CA fingerprint {fp} in {file}")
    );
    #[cfg(unix)]
    assert_eq!(
        mm_tests::mode(&data.join("multi-messenger/users/alice/known_servers")),
        0o600
    );
    let chat = ["--server", &addr, "--nick", "alice"];
    let (code, out, err) = mm(data, &chat).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("* connected to {addr} as alice")),
        "{out}"
    );
    let (code, _, err) = mm(data, &["--server", &addr, "--nick", "bob"]).await;
    assert_eq!(code, Some(1));
    assert!(
        said(&err).starts_with(&format!("mm: {addr} is not a known server")),
        "{err}"
    );

    let today = mm_certs::date(time::OffsetDateTime::now_utc());
    let (code, out, _) = mm(data, &["--nick", "alice", "trust", "list"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(out, format!("{addr}  {fp}  trusted {today}\n"));

    // Forgetting: an unknown server is an error that says so; the known one goes.
    let (code, _, err) = mm(
        data,
        &["trust", "forget", "192.0.2.1:7667", "--nick", "alice"],
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(
        err.trim_end(),
        format!("mm: 192.0.2.1:7667 is not a trusted server in {file} (nothing forgotten; mm trust list shows them, as HOST:PORT given to --server)")
    );
    let (code, _, err) = mm(data, &["trust", "forget", &addr, "--nick", "alice"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        err.trim_end(),
        format!("mm: forgot {addr} (CA fingerprint {fp}) in {file}; the next connection to it shows its fingerprint and asks again")
    );
    let (code, _, err) = mm(data, &chat).await;
    assert_eq!(code, Some(1));
    let err = said(&err);
    assert!(
        err.starts_with(&format!("mm: {addr} is not a known server")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "(or, once compared: mm trust add {addr} {fp} --nick alice)"
        )),
        "the command to trust it, for alice's home:\n{err}"
    );

    // Trusted again by a fingerprint typed any way.
    let typed = fp.replace(':', "").to_lowercase();
    let (code, _, err) = mm(data, &["trust", "add", &addr, &typed, "--nick", "alice"]).await;
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = mm(data, &chat).await;
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = mm(data, &["trust", "add", &addr, "AB:CD", "--nick", "alice"]).await;
    assert_eq!(code, Some(1));
    assert_eq!(
        err.trim_end(),
        "mm: \"AB:CD\" is not a SHA-256 fingerprint (64 hex digits, AB:CD:...; mm-server logs it at start, mm-certs prints it)"
    );
}

#[tokio::test]
async fn the_certificate_changed_warning_shows_both_fingerprints_and_the_command_that_works() {
    let server = TestServer::start().await;
    let addr = server.server();
    let old_fp = mm_certs::fingerprint(&server.ca[0]);
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    let ca = server.ca_path();
    let (code, _, err) = mm(
        data,
        &[
            "trust",
            "add",
            &addr,
            "--ca",
            ca.to_str().unwrap(),
            "--nick",
            "alice",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    // The operator makes a new CA.
    mm_certs::generate(server.tls.path(), &mm_certs::Names::default(), true).unwrap();
    let server = server
        .restart_on_same_port(std::time::Duration::from_millis(100))
        .await;
    let new_fp = mm_certs::fingerprint(&server.ca[0]);

    let chat = ["--server", &addr, "--nick", "alice"];
    let (code, _, err) = mm(data, &chat).await;
    assert_eq!(code, Some(1));
    // alice is not $USER: the command names her nick, so that it finds her home.
    assert_eq!(
        said(&err),
        format!(
            "mm: the certificate of {addr} has CHANGED since you trusted it\n  trusted:   {old_fp}\n  presented: {new_fp}\nThis may be an attack (someone between you and the server), or its operator made a new CA.\nAsk the operator which fingerprint is right. If it is the presented one, trust it instead with\n  mm trust add {addr} {new_fp} --nick alice\nthen connect again (/reconnect in the terminal UI)."
        )
    );
    // Forgetting instead: the next connection asks again (not a terminal here: refused).
    let (code, _, err) = mm(data, &["trust", "forget", &addr, "--nick", "alice"]).await;
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = mm(data, &chat).await;
    assert_eq!(code, Some(1));
    assert!(said(&err).contains(&new_fp), "{err}");
    // The command as shown.
    let (code, _, err) = mm(data, &["trust", "add", &addr, &new_fp, "--nick", "alice"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "mm: {addr} trusted with CA fingerprint {new_fp} in {}",
            data.join("multi-messenger/users/alice/known_servers")
                .display()
        )
    );
    let (code, _, err) = mm(data, &chat).await;
    assert_eq!(code, Some(0), "{err}");
    // Replacing a pin says what it replaced.
    let (code, _, err) = mm(data, &["trust", "add", &addr, &old_fp, "--nick", "alice"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "now trusted with CA fingerprint {old_fp} (was {new_fp})"
        )),
        "{err}"
    );
}
