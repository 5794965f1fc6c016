//! Offline end-to-end through the real programs: alice's `mm` sends five lines to bob while
//! bob is offline; the real `mm-server` keeps them, but neither its files nor its memory (what
//! a core dump would hold) contain any of the texts; bob's `mm` reads them later as `[secure]`,
//! in order, once; after both restart, the conversation goes on.

use std::path::Path;

use mm_tests::{files_hold, memory_holds, rand_tag, ServerProcess, WAIT};
use tokio::io::AsyncWriteExt;

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

/// Runs `mm` in line mode as `nick` with `input` on stdin (it ends at the end of input, once
/// the server answered everything); returns its stdout.
pub(crate) async fn mm(server: &ServerProcess, nick: &str, home: &Path, input: &str) -> String {
    let ca = server.data.path().join("tls").join("ca.pem");
    let mut child = crate::cli::spawn_mm(&server.addr, Some(&ca), nick, home);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(WAIT * 2, child.wait_with_output())
        .await
        .expect("mm did not finish")
        .unwrap();
    assert!(
        out.status.success(),
        "{nick}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn offline_messages_are_end_to_end_on_disk_and_in_the_servers_memory() {
    let server = ServerProcess::start(MM_SERVER, "").await;
    let homes = tempfile::tempdir().unwrap();
    let (alice, bob) = (homes.path().join("alice"), homes.path().join("bob"));
    // Texts nobody else could have: a random tag in each.
    let tag = format!("{:016x}", rand_tag());
    let secrets: Vec<String> = (1..=5).map(|i| format!("secret{i}-{tag}")).collect();
    let control = format!("plaincontrol-{tag}");

    // Bob's first login publishes his keys; then he is offline.
    mm(&server, "bob", &bob, "").await;
    let mut input: String = secrets.iter().map(|s| format!("/msg bob {s}\n")).collect();
    // A line alice sends plain on purpose: the scan must find it (it shows the scan works).
    input.push_str(&format!("/insecure bob\n/msg bob {control}\n"));
    let out = mm(&server, "alice", &alice, &input).await;
    assert_eq!(
        out.matches("queued end-to-end encrypted for bob (offline)")
            .count(),
        5,
        "{out}"
    );
    assert!(
        out.contains("not verified (first contact: key from the server's directory"),
        "{out}"
    );

    let needles: Vec<&[u8]> = secrets.iter().map(|s| s.as_bytes()).collect();
    assert_eq!(
        files_hold(server.data.path(), &needles),
        vec![],
        "plaintext on the server's disk"
    );
    let pid = server.child.id().unwrap();
    assert_eq!(
        memory_holds(pid, &needles),
        Vec::<Vec<u8>>::new(),
        "plaintext in the server's memory"
    );
    assert_eq!(
        memory_holds(pid, &[control.as_bytes()]),
        vec![control.as_bytes().to_vec()],
        "the scan finds a plain line"
    );
    assert!(!files_hold(server.data.path(), &[control.as_bytes()]).is_empty());

    // Bob logs in: the five lines, in order, once, as secure.
    let out = mm(&server, "bob", &bob, "").await;
    let shown: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("[secure") && l.contains("<alice>"))
        .collect();
    assert_eq!(shown.len(), 5, "{out}");
    for (line, secret) in shown.iter().zip(&secrets) {
        assert!(line.ends_with(&format!("<alice> {secret}")), "{line}");
    }
    assert!(out.contains(&control), "the plain line arrives too: {out}");
    assert!(
        out.contains("NOT end-to-end encrypted"),
        "and is marked plain: {out}"
    );

    // Both programs restarted since (each run is a new process): the session goes on both
    // ways with no new start.
    let out = mm(&server, "bob", &bob, &format!("/msg alice reply-{tag}\n")).await;
    assert!(
        out.contains("queued end-to-end encrypted for alice (offline)"),
        "{out}"
    );
    assert!(
        !out.contains("secure session with alice ready"),
        "no new session: {out}"
    );
    let out = mm(&server, "alice", &alice, "").await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("[secure") && l.ends_with(&format!("<bob> reply-{tag}"))),
        "{out}"
    );
    assert!(
        !out.contains("started a secure session"),
        "no new session: {out}"
    );
    assert!(files_hold(server.data.path(), &[format!("reply-{tag}").as_bytes()]).is_empty());
}
