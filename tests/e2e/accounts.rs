//! Accounts against impersonation and squatting: a refused login leaves no trace in the store,
//! a new nick that looks like a registered one is refused, new registrations are limited per
//! certificate and per address, and accounts nobody came back to expire. Through the real
//! binaries (`mm-server`, `mm-server accounts ...`) where the fault was seen through them, all
//! under the default limits.

use std::path::Path;

use mm_certs::ClientIdentity;
use mm_client::{connect, ConnectError, ConnectOptions, Event};
use mm_common::protocol::ErrorCode;
use mm_server::store::short_credential;
use mm_tests::{identity_for, ServerProcess, TestServer, WAIT};
use tokio::task::JoinSet;

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

/// `mm-server --data DIR args...`: its exit success and stdout.
async fn admin(data: &Path, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(MM_SERVER)
        .arg("--data")
        .arg(data)
        .args(args)
        .envs(mm_tests::test_store_env(data))
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        text + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The `accounts list` line of `nick` (any case), if there is one.
fn listed<'a>(list: &'a str, nick: &str) -> Option<&'a str> {
    list.lines().find(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case(nick))
    })
}

/// `opts` with a new certificate of its own (another person choosing that nick), and its
/// fingerprint as `accounts list` shows it.
fn stranger(mut opts: ConnectOptions) -> (ConnectOptions, String) {
    let id = ClientIdentity::generate().unwrap();
    let fp = short_credential(&id.fingerprint());
    opts.certificate = Some(id);
    (opts, fp)
}

/// Expects the login to be refused with `code`; returns the detail.
async fn refused(opts: &ConnectOptions, code: ErrorCode) -> String {
    match connect(opts).await {
        Err(ConnectError::Refused { code: got, detail }) => {
            assert_eq!(got, code, "{}: {detail}", opts.nick);
            detail
        }
        Err(e) => panic!("{}: {e}", opts.nick),
        Ok(_) => panic!("{} logged in; expected {code}", opts.nick),
    }
}

async fn quit(client: mm_client::Client, mut events: mm_client::Events) {
    client.quit().await;
    while let Ok(Some(event)) = tokio::time::timeout(WAIT, events.next()).await {
        if matches!(event, Event::Closed { .. }) {
            break;
        }
    }
}

// --- 5. A refused login leaves no trace. ---

#[tokio::test]
async fn a_login_refused_as_nick_in_use_registers_nothing_and_the_owner_keeps_the_nick() {
    let server = ServerProcess::start(MM_SERVER, "").await;
    let data = server.data.path().to_path_buf();
    let (alice, alice_events, _) = connect(&server.options("alice")).await.unwrap();
    // The operator frees the nick while alice is online (say, by mistake).
    let (ok, out) = admin(&data, &["accounts", "release", "alice"]).await;
    assert!(ok, "{out}");
    // Someone else logs in as alice: refused, she is online...
    let (other, other_fp) = stranger(server.options("alice"));
    refused(&other, ErrorCode::NICK_IN_USE).await;
    // ...and that refused login left nothing in the store.
    let (ok, list) = admin(&data, &["accounts", "list"]).await;
    assert!(ok, "{list}");
    assert!(
        !list.contains(&other_fp),
        "a refused login registered the nick to its certificate:\n{list}"
    );
    assert!(listed(&list, "alice").is_none(), "{list}");
    // alice comes back with her own certificate: the nick is still hers to take.
    quit(alice, alice_events).await;
    let (_alice, _events, welcome) = connect(&server.options("alice"))
        .await
        .unwrap_or_else(|e| panic!("the real alice is locked out: {e}"));
    assert_eq!(welcome.nick, "alice");
    refused(&other, ErrorCode::NICK_REGISTERED).await;
    let (_, list) = admin(&data, &["accounts", "list"]).await;
    let line = listed(&list, "alice").unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains(&short_credential(&identity_for("alice").fingerprint())),
        "{list}"
    );
    let (status, log) = server.stop().await;
    assert!(status.success(), "{}", log.join("\n"));
}

#[tokio::test]
async fn refused_registrations_of_every_kind_leave_no_account_behind() {
    let server = ServerProcess::start(MM_SERVER, "").await;
    let data = server.data.path().to_path_buf();
    let (_alice, _events, _) = connect(&server.options("alice")).await.unwrap();
    // Look-alike and registration limit (one certificate, many nicks): each refused, none
    // leaves an account (nor counts: the look-alike's certificate has registered nothing).
    let (lookalike, lookalike_fp) = stranger(server.options("aIice"));
    refused(&lookalike, ErrorCode::NICK_LOOKS_LIKE).await;
    let (mut greedy, greedy_fp) = stranger(server.options("greedy"));
    let mut refusals = 0;
    for i in 0..6 {
        greedy.nick = format!("greedy{i}");
        match connect(&greedy).await {
            Ok((c, e, _)) => quit(c, e).await,
            Err(ConnectError::Refused { code, .. }) => {
                assert_eq!(code, ErrorCode::REGISTRATION_LIMIT);
                refusals += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refusals > 0, "one certificate registered 6 nicks at once");
    let (_, list) = admin(&data, &["accounts", "list"]).await;
    assert!(!list.contains(&lookalike_fp), "{list}");
    assert_eq!(
        list.matches(&greedy_fp).count(),
        6 - refusals,
        "exactly the accepted registrations are stored:\n{list}"
    );
    let (status, log) = server.stop().await;
    assert!(status.success(), "{}", log.join("\n"));
}

// --- 6. Look-alike nicks. ---

#[tokio::test]
async fn a_new_nick_that_looks_like_a_registered_one_is_refused_with_a_clear_error() {
    let server = TestServer::start().await;
    for owner in ["alice", "bob", "mallory", "walter", "dave"] {
        let _registered = server.client(owner).await;
    }
    for (fake, real) in [
        ("aIice", "alice"),
        ("a1ice", "alice"),
        ("AL1CE", "alice"),
        ("aiice", "alice"),
        ("ALlCE", "alice"),
        ("b0b", "bob"),
        ("B0B", "bob"),
        ("rnallory", "mallory"),
        ("vvalter", "walter"),
        ("clave", "dave"),
        ("cIave", "dave"),
    ] {
        let detail = refused(&server.options(fake), ErrorCode::NICK_LOOKS_LIKE).await;
        assert!(
            detail.contains(fake) && detail.contains(real) && detail.contains("looks like"),
            "{fake}: {detail}"
        );
        // Retrying changes nothing: still refused, still no account.
        refused(&server.options(fake), ErrorCode::NICK_LOOKS_LIKE).await;
    }
    // A nick that merely resembles in spelling, not in looks, is fine; so are the owners, in
    // any case, and the refusals did not count against this address's registrations.
    for fine in ["alicia", "bobby", "Alice", "BOB"] {
        let c = server.client(fine).await;
        assert_eq!(c.welcome.nick, fine);
    }
}

/// The accounts table as protocol 3's servers (store schema version 2) left it.
const SCHEMA_2: &str = "
    CREATE TABLE accounts (nick_key TEXT PRIMARY KEY, nick TEXT NOT NULL,
        fingerprint TEXT NOT NULL, created_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE history (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, sender TEXT NOT NULL,
        text TEXT NOT NULL);
    CREATE TABLE mailbox (id INTEGER PRIMARY KEY, to_key TEXT NOT NULL, ts INTEGER NOT NULL,
        sender TEXT NOT NULL, text TEXT NOT NULL, payload BLOB);
    CREATE INDEX mailbox_by_recipient ON mailbox (to_key, id);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    PRAGMA user_version = 2;
";

#[tokio::test]
async fn look_alikes_registered_before_the_rule_both_keep_logging_in() {
    let data = tempfile::tempdir().unwrap();
    {
        let db = rusqlite::Connection::open(data.path().join("mm-server.db")).unwrap();
        db.execute_batch(SCHEMA_2).unwrap();
        let old = 1_000_000_000_000u64 as i64; // 2001, long before any expiry
        for nick in ["alice", "aIice"] {
            db.execute(
                "INSERT INTO accounts VALUES (?1, ?2, ?3, ?4, ?4)",
                rusqlite::params![
                    nick.to_ascii_lowercase(),
                    nick,
                    identity_for(nick).fingerprint(),
                    old
                ],
            )
            .unwrap();
        }
    }
    let server = ServerProcess::start_in(MM_SERVER, "", data).await;
    for nick in ["alice", "aIice", "ALICE", "aiice"] {
        let (c, e, welcome) = connect(&server.options(nick))
            .await
            .unwrap_or_else(|e| panic!("{nick}, registered before the rule, is refused: {e}"));
        assert_eq!(welcome.nick, nick);
        quit(c, e).await;
    }
    // A third one is new: refused.
    refused(&server.options("a1ice"), ErrorCode::NICK_LOOKS_LIKE).await;
    // Accounts from before the migration never expire by themselves: they may have been used.
    let (_, list) = admin(server.data.path(), &["accounts", "list"]).await;
    assert!(
        listed(&list, "alice").is_some() && listed(&list, "aIice").is_some(),
        "{list}"
    );
    let (status, log) = server.stop().await;
    assert!(status.success(), "{}", log.join("\n"));
}

// --- 7. Registration squatting. ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_certificate_cannot_squat_nicks_even_over_parallel_connections() {
    let server = ServerProcess::start(MM_SERVER, "").await;
    let identity = ClientIdentity::generate().unwrap();
    // 8 connections at once, each trying 5 new nicks in a row, as the squatting script did.
    let mut logins = JoinSet::new();
    for worker in 0..8 {
        let opts: Vec<ConnectOptions> = (0..5)
            .map(|i| {
                let mut opts = server.options(&format!("squat{worker}x{i}"));
                opts.certificate = Some(identity.clone());
                opts
            })
            .collect();
        logins.spawn(async move {
            let mut results = Vec::new();
            for opts in opts {
                results.push(connect(&opts).await.map(|(c, e, _)| (c, e)));
            }
            results
        });
    }
    let (mut registered, mut limited, mut held) = (0, Vec::new(), Vec::new());
    while let Some(results) = logins.join_next().await {
        for r in results.unwrap() {
            match r {
                Ok(conn) => {
                    registered += 1;
                    held.push(conn);
                }
                Err(ConnectError::Refused { code, detail }) => {
                    assert_eq!(code, ErrorCode::REGISTRATION_LIMIT, "{detail}");
                    limited.push(detail);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert_eq!(registered, 3, "a certificate registers 3 nicks a day");
    assert!(
        limited
            .iter()
            .all(|d| d.contains("certificate") && d.contains("try again in")),
        "{limited:?}"
    );
    // Its own nicks still log in (the limit is on new ones), and so does everyone else.
    for (c, e) in held {
        quit(c, e).await;
    }
    let (_, list) = admin(server.data.path(), &["accounts", "list"]).await;
    assert_eq!(
        list.matches(&short_credential(&identity.fingerprint()))
            .count(),
        3,
        "{list}"
    );
    let (_bob, _e, _) = connect(&server.options("bob")).await.unwrap();
    let (status, log) = server.stop().await;
    assert!(status.success(), "{}", log.join("\n"));
}

#[tokio::test]
async fn one_address_cannot_squat_nicks_with_fresh_certificates() {
    let server = TestServer::start().await;
    let mut registered = Vec::new();
    let detail = loop {
        let (opts, _) = stranger(server.options(&format!("fresh{}", registered.len())));
        match connect(&opts).await {
            Ok((c, e, _)) => {
                quit(c, e).await;
                registered.push(opts);
            }
            Err(ConnectError::Refused { code, detail }) => {
                assert_eq!(code, ErrorCode::REGISTRATION_LIMIT, "{detail}");
                break detail;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(
            registered.len() <= 10,
            "one address registered 11 nicks at once"
        );
    };
    assert_eq!(
        registered.len(),
        10,
        "an address registers 10 nicks an hour"
    );
    assert!(
        detail.contains("address") && detail.contains("try again in") && detail.contains("minute"),
        "{detail}"
    );
    // The owners of registered nicks are not limited: they log in as often as they like.
    for opts in registered.iter().chain(registered.iter()) {
        let (c, e, _) = connect(opts)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", opts.nick));
        quit(c, e).await;
    }
}

#[tokio::test]
async fn accounts_nobody_came_back_to_expire_and_used_ones_never_do() {
    let server = ServerProcess::start(MM_SERVER, "").await;
    // once: registered, never seen again. regular: came back. fresh: registered now.
    for nick in ["once", "regular", "regular"] {
        let (c, e, _) = connect(&server.options(nick)).await.unwrap();
        quit(c, e).await;
    }
    let data = server.stop_keeping_data().await;
    {
        // 40 days pass, and every last-seen time written was lost (the writes are best effort).
        let db = rusqlite::Connection::open(data.path().join("mm-server.db")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let then = now - 40 * 86_400_000;
        db.execute(
            "UPDATE accounts SET created_ms = ?1, last_seen_ms = ?1",
            [then],
        )
        .unwrap();
    }
    let server = ServerProcess::start_in(MM_SERVER, "", data).await;
    let (c, e, _) = connect(&server.options("fresh")).await.unwrap();
    quit(c, e).await;
    let (ok, list) = admin(server.data.path(), &["accounts", "list"]).await;
    assert!(ok, "{list}");
    assert!(
        listed(&list, "once").is_none(),
        "an account unused for 40 days is kept:\n{list}"
    );
    assert!(
        listed(&list, "regular").is_some(),
        "an account that was used expired:\n{list}"
    );
    // The list says which accounts will expire, and when.
    let fresh = listed(&list, "fresh").unwrap_or_else(|| panic!("{list}"));
    assert!(list.contains("expires"), "{list}");
    let regular = listed(&list, "regular").unwrap();
    assert!(regular.contains("never"), "{list}");
    assert!(!fresh.contains("never"), "{list}");
    // The expired nick is free again.
    let (other, _) = stranger(server.options("once"));
    let (_c, _e, welcome) = connect(&other).await.unwrap();
    assert_eq!(welcome.nick, "once");
    let (c, e, _) = connect(&server.options("regular")).await.unwrap();
    quit(c, e).await;
    let (status, log) = server.stop().await;
    assert!(status.success(), "{}", log.join("\n"));
}
