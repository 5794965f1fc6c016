//! Data at rest: every directory the programs create is 0700 and every file 0600 (SQLite's
//! write-ahead log and shared memory included), and what an older version left readable by
//! others is tightened at start. Through the real binaries.
#![cfg(unix)]

use mm_client::ChatLine;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use mm_client::{ConnectOptions, Event, Trust};
use mm_tests::{assert_private_tree, identity_for, mode, ServerProcess, TestClient, WAIT};
use tokio::io::AsyncWriteExt;

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

/// `mm-server --data DIR --bind 127.0.0.1:0`, with `DIR` inside `root`.
async fn server_in(root: tempfile::TempDir, data: &Path) -> ServerProcess {
    let args: Vec<OsString> = vec![
        "--data".into(),
        data.into(),
        "--bind".into(),
        "127.0.0.1:0".into(),
    ];
    ServerProcess::start_with_args(MM_SERVER, &args, root).await
}

fn options(server: &ServerProcess, data: &Path, nick: &str) -> ConnectOptions {
    let ca = mm_certs::load_certs(&data.join("tls").join(mm_certs::CA_CERT)).unwrap();
    let mut opts = ConnectOptions::new(server.addr.clone(), nick, Trust::Roots(ca));
    opts.certificate = Some(identity_for(nick));
    opts
}

/// alice sends bob a private line and bob reads it: the store has written its WAL.
async fn chat(server: &ServerProcess, data: &Path) {
    let alice = TestClient::connect(&options(server, data, "alice")).await;
    let mut bob = TestClient::connect(&options(server, data, "bob")).await;
    // Plain on purpose: the store holds a readable line (end-to-end ones: secure.rs).
    alice.client.insecure("bob").await.unwrap();
    alice.client.private("bob", "my PIN is 1234").await.unwrap();
    let line = bob.next_line().await;
    assert!(
        matches!(&line, Event::Private(ChatLine { text, .. }) if text == "my PIN is 1234"),
        "{line:?}"
    );
}

#[tokio::test]
async fn every_file_mm_server_creates_is_private() {
    let root = tempfile::tempdir().unwrap();
    // Nothing exists yet: the server creates the directories (parents included).
    let fresh = root.path().join("fresh");
    let data = fresh.join("data");
    let server = server_in(root, &data).await;
    chat(&server, &data).await;
    for wal in ["mm-server.db-wal", "mm-server.db-shm", "mm-server.db.lock"] {
        assert!(
            data.join(wal).exists(),
            "{wal} exists while the server runs"
        );
    }
    let files = assert_private_tree(&fresh, &[]);
    for expected in [
        "data/mm-server.db",
        "data/mm-server.db-wal",
        "data/mm-server.db-shm",
        "data/mm-server.db.lock",
        "data/tls/ca.pem",
        "data/tls/ca.key",
        "data/tls/server.pem",
        "data/tls/server.key",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} in {files:?}"
        );
    }
    assert!(
        !server.log.iter().any(|l| l.contains("tightened")),
        "nothing to tighten on a fresh start:\n{}",
        server.log.join("\n")
    );
    // Still so after the store closed.
    let _root = server.stop_keeping_data().await;
    assert_private_tree(&fresh, &[]);
}

/// Sets `path`'s mode.
fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn mm_server_tightens_what_an_older_version_left_readable() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = server_in(root, &data).await;
    chat(&server, &data).await;
    // Killed, so that the WAL and shared-memory files stay, as an older server left them.
    let root = server.kill().await;
    let loose = [
        "mm-server.db",
        "mm-server.db-wal",
        "mm-server.db-shm",
        "mm-server.db.lock",
        "tls/ca.pem",
        "tls/server.pem",
    ];
    chmod(&data, 0o755);
    chmod(&data.join("tls"), 0o755);
    for file in loose {
        chmod(&data.join(file), 0o644);
    }
    chmod(&data.join("tls/ca.key"), 0o640);

    let mut server = server_in(root, &data).await;
    server.read_log(std::time::Duration::from_millis(200)).await;
    assert_private_tree(&data, &[]);
    let log = server.log.join("\n");
    for (path, from) in [
        (data.clone(), "0755"),
        (data.join("tls"), "0755"),
        (data.join("mm-server.db"), "0644"),
        (data.join("mm-server.db-wal"), "0644"),
        (data.join("tls/ca.key"), "0640"),
    ] {
        assert!(
            server.log.iter().any(|l| l.contains("WARN")
                && l.contains("tightened")
                && l.contains(&path.display().to_string())
                && l.contains(&format!("from {from} to"))),
            "{} from {from} is logged:\n{log}",
            path.display()
        );
    }
    // The store is intact and serves.
    chat(&server, &data).await;
    assert_private_tree(&data, &[]);
}

/// Runs `mm` in line mode against `server` with `home`, sends nothing, and returns its stderr.
async fn run_mm(server: &ServerProcess, data: &Path, nick: &str, home: &Path) -> String {
    let ca = data.join("tls").join(mm_certs::CA_CERT);
    let mut mm = crate::cli::spawn_mm(&server.addr, Some(&ca), nick, home);
    mm.stdin.take().unwrap().shutdown().await.unwrap();
    let output = tokio::time::timeout(WAIT, mm.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("* connected"),
        "{stderr}"
    );
    stderr
}

#[tokio::test]
async fn mm_makes_its_home_private_and_tightens_what_an_older_version_left_readable() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = server_in(root, &data).await;
    let place = tempfile::tempdir().unwrap();
    // A home that does not exist yet, nor its parent.
    let home = place.path().join("fresh").join("home");
    let stderr = run_mm(&server, &data, "dana", &home).await;
    assert!(!stderr.contains("tightened"), "{stderr}");
    let files = assert_private_tree(&place.path().join("fresh"), &[]);
    for expected in ["home/client.pem", "home/client.key", "home/identity.key"] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} in {files:?}"
        );
    }

    // As an older mm left it: the certificate 0644, the home 0755; a key made loose by hand.
    chmod(&home, 0o755);
    chmod(&home.join(mm_certs::CLIENT_CERT), 0o644);
    chmod(&home.join("identity.key"), 0o604);
    let stderr = run_mm(&server, &data, "dana", &home).await;
    for (path, from) in [
        (home.clone(), "0755"),
        (home.join(mm_certs::CLIENT_CERT), "0644"),
        (home.join("identity.key"), "0604"),
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with("mm: tightened")
                && l.contains(&path.display().to_string())
                && l.contains(&format!("from {from} to"))),
            "{} from {from}:\n{stderr}",
            path.display()
        );
    }
    assert_eq!(mode(&home), 0o700);
    assert_private_tree(&home, &[]);
}
