//! Leases and nick ownership on a real PostgreSQL (`MM_TEST_POSTGRES`, a database per test;
//! without it these fail and say how to start one).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::*;
use crate::store::tests::{test_server, with_db, Place, Postgres};

/// A connection to the test's database from outside the node (as an operator or another
/// process would).
async fn outside(place: &Postgres) -> tokio_postgres::Client {
    let url = with_db(&test_server(), &place.name);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the test database");
    tokio::spawn(connection);
    client
}

/// Whether the row of `node` is there with a current lease (database time).
async fn live_in_db(client: &tokio_postgres::Client, node: &NodeId) -> bool {
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM cluster_nodes WHERE epoch = $1 AND expires_at > now())",
            &[&node.epoch],
        )
        .await
        .expect("a query")
        .get(0)
}

/// How long the lease of `node` has left in the database (negative: expired; `None`: no row).
async fn left_in_db(client: &tokio_postgres::Client, node: &NodeId) -> Option<Duration> {
    let ms: Option<i64> = client
        .query_opt(
            "SELECT (EXTRACT(EPOCH FROM expires_at - now()) * 1000)::BIGINT
             FROM cluster_nodes WHERE epoch = $1",
            &[&node.epoch],
        )
        .await
        .expect("a query")
        .map(|r| r.get(0));
    ms.and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
}

#[tokio::test]
async fn a_nick_is_held_by_one_live_node_and_freed_when_its_lease_lapses() {
    let place = Postgres::new();
    let a = Membership::join(&place.target, "a", Duration::from_secs(1))
        .await
        .unwrap();
    let b = Membership::join(&place.target, "b", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(a.claim("alice", "fp-1").await.unwrap(), Claim::Granted);
    // Held by itself: granted again.
    assert_eq!(a.claim("alice", "fp-1").await.unwrap(), Claim::Granted);
    assert_eq!(a.claim("carol", "fp-c").await.unwrap(), Claim::Granted);
    assert_eq!(
        b.claim("alice", "fp-1").await.unwrap(),
        Claim::Held {
            node: a.node().clone(),
            same_credential: true
        }
    );
    assert_eq!(
        b.claim("alice", "fp-2").await.unwrap(),
        Claim::Held {
            node: a.node().clone(),
            same_credential: false
        }
    );
    assert!(b.sweep().await.unwrap().is_empty());
    assert_eq!(
        b.live_nodes().await.unwrap(),
        [a.node().clone(), b.node().clone()]
    );

    // A stops renewing; its lease of 1 s lapses (database time).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(b.live_nodes().await.unwrap(), [b.node().clone()]);
    // The claim checks the holder's lease itself: no sweep needed.
    assert_eq!(b.claim("alice", "fp-2").await.unwrap(), Claim::Granted);
    // A's other nick is reported with A, once; alice is B's now and is not.
    assert_eq!(
        b.sweep().await.unwrap(),
        [(a.node().clone(), vec!["carol".to_owned()])]
    );
    assert!(b.sweep().await.unwrap().is_empty());

    // A comes back: its lease is not renewed, it cannot claim, and its release of what B
    // holds now does nothing.
    assert!(matches!(a.renew().await, Err(LeaseError::Fenced)));
    assert!(matches!(
        a.claim("dave", "fp-d").await,
        Err(LeaseError::Fenced)
    ));
    a.release("alice").await.unwrap();
    let c = Membership::join(&place.target, "c", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        c.claim("alice", "fp-2").await.unwrap(),
        Claim::Held {
            node: b.node().clone(),
            same_credential: true
        }
    );
    // B's own release frees it.
    b.release("alice").await.unwrap();
    assert_eq!(c.claim("alice", "fp-3").await.unwrap(), Claim::Granted);
}

#[tokio::test]
async fn an_expired_lease_is_not_renewed_even_before_a_sweep() {
    let place = Postgres::new();
    let a = Membership::join(&place.target, "a", Duration::from_secs(1))
        .await
        .unwrap();
    a.renew().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The row is still there (nobody swept), but the lease ended: another node may already
    // hold its nicks.
    assert!(matches!(a.renew().await, Err(LeaseError::Fenced)));
}

#[tokio::test]
async fn epochs_increase_across_joins_and_leave_frees_the_nicks() {
    let place = Postgres::new();
    let lease = Duration::from_secs(60);
    let a = Membership::join(&place.target, "a", lease).await.unwrap();
    let b = Membership::join(&place.target, "b", lease).await.unwrap();
    assert!(b.node().epoch > a.node().epoch);
    assert_eq!(a.claim("alice", "fp").await.unwrap(), Claim::Granted);
    let first = a.node().clone();
    a.leave().await.unwrap();
    let again = Membership::join(&place.target, "a", lease).await.unwrap();
    assert_eq!(again.node().name, "a");
    assert!(again.node().epoch > b.node().epoch);
    assert_eq!(
        b.live_nodes().await.unwrap(),
        [b.node().clone(), again.node().clone()]
    );
    assert!(!b.live_nodes().await.unwrap().contains(&first));
    // Left cleanly: nothing for a sweep, and its nick is free.
    assert!(b.sweep().await.unwrap().is_empty());
    assert_eq!(b.claim("alice", "fp-b").await.unwrap(), Claim::Granted);
}

#[tokio::test]
async fn a_restarted_node_waits_for_its_old_lease_and_the_old_one_is_swept() {
    let place = Postgres::new();
    let observer = Membership::join(&place.target, "o", Duration::from_secs(60))
        .await
        .unwrap();
    let old = Membership::join(&place.target, "a", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(old.claim("alice", "fp").await.unwrap(), Claim::Granted);
    let old_node = old.node().clone();
    // Gone without leaving (as after kill -9).
    drop(old);
    let started = Instant::now();
    let new = Membership::join(&place.target, "a", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "joined while the old lease was current ({:?})",
        started.elapsed()
    );
    assert!(new.node().epoch > old_node.epoch);
    assert_eq!(
        observer.sweep().await.unwrap(),
        [(old_node, vec!["alice".to_owned()])]
    );
}

#[tokio::test]
async fn a_name_whose_node_keeps_renewing_is_refused() {
    let place = Postgres::new();
    let lease = Duration::from_secs(1);
    let first = Arc::new(Membership::join(&place.target, "a", lease).await.unwrap());
    let cancel = CancellationToken::new();
    let keeper = tokio::spawn(run(Arc::clone(&first), || {}, || {}, cancel.clone()));
    let err = Membership::join(&place.target, "a", lease)
        .await
        .unwrap_err();
    assert!(matches!(err, LeaseError::NameInUse { .. }), "{err}");
    cancel.cancel();
    keeper.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_joining_a_new_database_at_once_all_join() {
    let place = Postgres::new();
    let joins: Vec<_> = (0..8)
        .map(|i| {
            let target = place.target.clone();
            tokio::spawn(async move {
                Membership::join(&target, &format!("n{i}"), Duration::from_secs(60)).await
            })
        })
        .collect();
    let mut epochs = Vec::new();
    for join in joins {
        epochs.push(join.await.unwrap().unwrap().node().epoch);
    }
    epochs.sort_unstable();
    epochs.dedup();
    assert_eq!(epochs.len(), 8, "{epochs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_claiming_one_free_nick_at_once_grant_it_to_one() {
    let place = Postgres::new();
    let mut nodes = Vec::new();
    for i in 0..6 {
        nodes.push(Arc::new(
            Membership::join(&place.target, &format!("n{i}"), Duration::from_secs(60))
                .await
                .unwrap(),
        ));
    }
    let start = Arc::new(tokio::sync::Barrier::new(nodes.len()));
    let claims: Vec<_> = nodes
        .iter()
        .map(|node| {
            let (node, start) = (Arc::clone(node), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                node.claim("alice", "fp").await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for claim in claims {
        outcomes.push(claim.await.unwrap().unwrap());
    }
    let winners: Vec<_> = nodes
        .iter()
        .zip(&outcomes)
        .filter(|(_, c)| **c == Claim::Granted)
        .map(|(n, _)| n.node().clone())
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for outcome in &outcomes {
        assert!(
            *outcome == Claim::Granted
                || *outcome
                    == Claim::Held {
                        node: winners[0].clone(),
                        same_credential: true
                    },
            "{outcomes:?}"
        );
    }
}

#[tokio::test]
async fn run_needs_callbacks_that_are_only_send() {
    let place = Postgres::new();
    let node = Arc::new(
        Membership::join(&place.target, "a", Duration::from_secs(60))
            .await
            .unwrap(),
    );
    // `Cell` is Send but not Sync: `run`'s future must still be spawnable.
    let (fenced, restored) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(
        node,
        move || fenced.set(fenced.get() + 1),
        move || restored.set(restored.get() + 1),
        cancel.clone(),
    ));
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run returns when cancelled")
        .unwrap();
}

#[tokio::test]
async fn bad_names_and_leases_are_refused_before_connecting() {
    // Nothing listens here: a refusal that connected first would fail otherwise.
    let target = PgTarget::parse("postgres://mm@127.0.0.1:1/none").unwrap();
    for (name, lease) in [
        ("", Duration::from_secs(8)),
        (&*"x".repeat(MAX_NAME + 1), Duration::from_secs(8)),
        ("a\nb", Duration::from_secs(8)),
        ("a", Duration::from_millis(10)),
        ("a", Duration::from_secs(7200)),
    ] {
        let err = Membership::join(&target, name, lease).await.unwrap_err();
        assert!(
            matches!(err, LeaseError::Invalid(_)),
            "{name:?} {lease:?}: {err}"
        );
    }
}

/// Counts of the calls `run` made.
#[derive(Default)]
struct Calls {
    fenced: AtomicUsize,
    restored: AtomicUsize,
}

/// Starts `run` for `membership`; the callbacks count and signal on `events`.
fn start(
    membership: &Arc<Membership>,
    calls: &Arc<Calls>,
    events: tokio::sync::mpsc::UnboundedSender<&'static str>,
    cancel: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (f, r) = (Arc::clone(calls), Arc::clone(calls));
    let (fe, re) = (events.clone(), events);
    tokio::spawn(run(
        Arc::clone(membership),
        move || {
            f.fenced.fetch_add(1, Ordering::SeqCst);
            let _ = fe.send("fenced");
        },
        move || {
            r.restored.fetch_add(1, Ordering::SeqCst);
            let _ = re.send("restored");
        },
        cancel.clone(),
    ))
}

#[tokio::test]
async fn run_keeps_the_lease_while_postgres_answers() {
    let place = Postgres::new();
    let lease = Duration::from_secs(2);
    let node = Arc::new(Membership::join(&place.target, "a", lease).await.unwrap());
    let calls = Arc::new(Calls::default());
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let task = start(&node, &calls, tx, &cancel);
    let db = outside(&place).await;
    // Several leases long: it would have lapsed without renewals.
    for _ in 0..6 {
        tokio::time::sleep(lease / 2).await;
        assert!(live_in_db(&db, node.node()).await);
    }
    assert_eq!(calls.fenced.load(Ordering::SeqCst), 0);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn run_fences_the_node_before_its_lease_expires_when_postgres_is_unreachable() {
    let place = Postgres::new();
    let lease = Duration::from_secs(2);
    let node = Arc::new(Membership::join(&place.target, "a", lease).await.unwrap());
    let calls = Arc::new(Calls::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let task = start(&node, &calls, tx, &cancel);
    // Let it renew once or twice, then cut it off: no new connection to the database, and
    // every one but ours ended.
    tokio::time::sleep(lease / 2).await;
    let db = outside(&place).await;
    let ours: i32 = db
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let (server, connection) = tokio_postgres::connect(&test_server(), tokio_postgres::NoTls)
        .await
        .expect("the test server");
    tokio::spawn(connection);
    let cut = Instant::now();
    server
        .batch_execute(&format!(
            "ALTER DATABASE {0} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = '{0}' AND pid <> {ours};",
            place.name
        ))
        .await
        .unwrap();
    let event = tokio::time::timeout(lease * 2, rx.recv()).await;
    assert_eq!(event, Ok(Some("fenced")), "not fenced within two leases");
    // Before the database could count it dead, by about the margin (lease/4 = 500 ms): its
    // row is still current there.
    let left = left_in_db(&db, node.node()).await;
    assert!(
        left.is_some_and(|left| left >= lease / 8),
        "fenced {:?} after the cut with {left:?} of the lease left",
        cut.elapsed()
    );
    assert!(cut.elapsed() < lease, "{:?}", cut.elapsed());
    assert_eq!(calls.fenced.load(Ordering::SeqCst), 1);
    assert_eq!(calls.restored.load(Ordering::SeqCst), 0);
    cancel.cancel();
    task.await.unwrap();
    server
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            place.name
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn run_restores_a_node_fenced_by_slow_renewals_when_one_succeeds_again() {
    let place = Postgres::new();
    let lease = Duration::from_secs(2);
    let node = Arc::new(Membership::join(&place.target, "a", lease).await.unwrap());
    let calls = Arc::new(Calls::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let task = start(&node, &calls, tx, &cancel);
    // Renewals hang behind a lock on the node's row (the link is up, the answers do not come).
    let mut db = outside(&place).await;
    let holder = db.transaction().await.unwrap();
    holder
        .execute(
            "SELECT 1 FROM cluster_nodes WHERE epoch = $1 FOR UPDATE",
            &[&node.node().epoch],
        )
        .await
        .unwrap();
    let event = tokio::time::timeout(lease * 2, rx.recv()).await;
    assert_eq!(event, Ok(Some("fenced")));
    // The database has not counted it dead yet; the hold ends and a renewal goes through.
    holder.commit().await.unwrap();
    let event = tokio::time::timeout(lease, rx.recv()).await;
    assert_eq!(event, Ok(Some("restored")));
    assert!(live_in_db(&db, node.node()).await);
    assert_eq!(calls.fenced.load(Ordering::SeqCst), 1);
    assert_eq!(calls.restored.load(Ordering::SeqCst), 1);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn run_fences_for_good_when_the_lease_was_lost() {
    let place = Postgres::new();
    let lease = Duration::from_secs(2);
    let node = Arc::new(Membership::join(&place.target, "a", lease).await.unwrap());
    let calls = Arc::new(Calls::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let task = start(&node, &calls, tx, &cancel);
    // Declared dead by the others (its row removed, as a sweep does).
    let db = outside(&place).await;
    db.execute(
        "DELETE FROM cluster_nodes WHERE epoch = $1",
        &[&node.node().epoch],
    )
    .await
    .unwrap();
    let event = tokio::time::timeout(lease, rx.recv()).await;
    assert_eq!(event, Ok(Some("fenced")));
    // It stops by itself, without being cancelled, and never comes back.
    tokio::time::timeout(lease, task)
        .await
        .expect("run returns once the lease is lost")
        .unwrap();
    assert_eq!(calls.fenced.load(Ordering::SeqCst), 1);
    assert_eq!(calls.restored.load(Ordering::SeqCst), 0);
}
