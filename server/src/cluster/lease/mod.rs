//! Node leases and nick ownership in PostgreSQL (CLUSTER.md, "Nick ownership, leases and
//! fencing").
//!
//! - [`Membership`]: this node's row in `cluster_nodes` (its lease and its epoch, the fencing
//!   token) and the nicks it holds in `cluster_nicks`, on an async connection of its own on the
//!   server's runtime (a renewal never waits behind the store's batches). Every statement that
//!   changes a nick names this node's epoch, and a claim succeeds only while this node's own
//!   lease is current, so a node declared dead cannot take, keep or release what another node
//!   holds now. Times are the database's (`now()`).
//! - [`LeaseTimer`] (`timer`): when to renew and when to count this node fenced, sans I/O.
//! - [`run`]: renews on schedule and tells the server when it is fenced (and restored).

mod acme;
mod timer;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use timer::LeaseTimer;

use crate::store::postgres::{PgError, PgTarget};

/// The transaction-level advisory lock under which a node creates the tables and joins
/// ("mm-lease" in ASCII).
const LEASE_KEY: i64 = 0x6d6d_2d6c_6561_7365;

/// The shortest and longest lease [`Membership::join`] accepts.
pub const LEASE_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);

/// The longest node name, in bytes.
pub const MAX_NAME: usize = 128;

/// The tables, made if missing (under [`LEASE_KEY`]).
const SCHEMA: &str = "
    CREATE SEQUENCE IF NOT EXISTS cluster_epoch;
    CREATE TABLE IF NOT EXISTS cluster_nodes (
        epoch      BIGINT PRIMARY KEY,
        name       TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX IF NOT EXISTS cluster_nodes_by_name ON cluster_nodes (name);
    CREATE TABLE IF NOT EXISTS cluster_nicks (
        nick_key   TEXT PRIMARY KEY,
        node       TEXT NOT NULL,
        epoch      BIGINT NOT NULL,
        credential TEXT NOT NULL,
        nick       TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX IF NOT EXISTS cluster_nicks_by_epoch ON cluster_nicks (epoch);
    CREATE TABLE IF NOT EXISTS cluster_stream (
        created TEXT PRIMARY KEY,
        base    BIGINT NOT NULL
    );
    ALTER TABLE cluster_nodes ADD COLUMN IF NOT EXISTS settings TEXT NOT NULL DEFAULT '';
    CREATE TABLE IF NOT EXISTS cluster_acme_order (
        id    INT PRIMARY KEY,
        epoch BIGINT NOT NULL,
        until TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE IF NOT EXISTS cluster_acme_challenges (
        domain TEXT PRIMARY KEY,
        digest BYTEA NOT NULL,
        epoch  BIGINT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS cluster_acme_certificate (
        id        INT PRIMARY KEY,
        directory TEXT NOT NULL,
        pem       TEXT NOT NULL
    );
";

/// A node: its name and the epoch of this run of it (the fencing token, from a sequence: a
/// node that restarts gets a greater one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub name: String,
    pub epoch: i64,
}

/// What [`Membership::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The nick is this node's now.
    Granted,
    /// Another live node holds it; `same_credential` if with the credential claimed.
    Held { node: NodeId, same_credential: bool },
}

/// A failure of the lease or of the link to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// This node's lease is gone or expired: the cluster may count it dead and give its nicks
    /// to other nodes. It does not come back.
    #[error("this node's lease in the cluster is lost (it expired or the node was declared dead): the other nodes may hold its nicks now")]
    Fenced,
    /// Another node of this name holds a current lease.
    #[error("another node named {name:?} holds a lease in the cluster: two nodes may not share a name (if this node was stopped less than a lease ago, start it again after the lease)")]
    NameInUse { name: String },
    /// A setting [`Membership::join`] cannot use.
    #[error("{0}")]
    Invalid(String),
    /// PostgreSQL did not answer in time.
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    #[error("node {node:?} runs with other room limits or ACME settings ({theirs}; this node: {ours}): every node of a cluster decides room commands by the same limits and shares one certificate, so all must run with the same (CLUSTER.md, \"Rooms\", \"Certificates\"); to change them, stop every node, change them everywhere, start again")]
    Settings {
        node: String,
        theirs: String,
        ours: String,
    },
    /// The nick's row changed under every attempt of a claim.
    #[error("the nick's ownership kept changing during the claim; try again")]
    Contended,
    /// From PostgreSQL or the link to it.
    #[error("{0}")]
    Db(#[from] PgError),
}

impl From<tokio_postgres::Error> for LeaseError {
    fn from(e: tokio_postgres::Error) -> LeaseError {
        LeaseError::Db(PgError::Db(e))
    }
}

/// This node's lease, and the nicks it holds.
pub struct Membership {
    target: PgTarget,
    node: NodeId,
    lease: Duration,
    /// When the join was sent (the lease counts from then at the latest).
    joined_at: Instant,
    /// The connection; made again when lost.
    client: Mutex<Option<Arc<Client>>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node", &self.node)
            .field("lease", &self.lease)
            .field("store", &self.target)
            .finish_non_exhaustive()
    }
}

/// How many times a claim is tried when the nick's row changes under it.
const CLAIM_TRIES: usize = 3;

/// How long a join waits for the locks it takes.
const JOIN_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '30s'";

/// How many times a join looks again for a node of its name to be gone.
const JOIN_TRIES: usize = 3;

impl Membership {
    /// Creates the tables if missing (under a transaction-level advisory lock: nodes may start
    /// at once) and inserts this node's row with a new epoch and `expires_at = now() + lease`.
    /// If a node of this name still holds a current lease (this node, stopped less than a
    /// lease ago), it waits for that lease to end, a few times; then [`LeaseError::NameInUse`].
    ///
    /// # Errors
    /// [`LeaseError::Invalid`] for an empty or long name or a lease out of [`LEASE_RANGE`];
    /// [`LeaseError::NameInUse`]; [`LeaseError::Db`] (cannot connect, TLS, SQL).
    pub async fn join(
        target: &PgTarget,
        name: &str,
        lease: Duration,
    ) -> Result<Membership, LeaseError> {
        Self::join_with(target, name, lease, "").await
    }

    /// [`Membership::join`] for a node whose `settings` (its room limits, as text) every live
    /// node must share: a live node with others refuses the join ([`LeaseError::Settings`]).
    /// Empty: not checked.
    ///
    /// # Errors
    /// As [`Membership::join`], and [`LeaseError::Settings`].
    pub async fn join_with(
        target: &PgTarget,
        name: &str,
        lease: Duration,
        settings: &str,
    ) -> Result<Membership, LeaseError> {
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(LeaseError::Invalid(format!(
                "a node's name is 1 to {MAX_NAME} bytes without control characters"
            )));
        }
        if !LEASE_RANGE.contains(&lease) {
            return Err(LeaseError::Invalid(format!(
                "a node's lease is from {:?} to {:?}",
                LEASE_RANGE.start(),
                LEASE_RANGE.end()
            )));
        }
        let mut client = target.connect_async().await?;
        for _ in 0..JOIN_TRIES {
            // Before BEGIN: `now()` is the transaction's start, so the lease the database
            // grants ends no sooner than `joined_at + lease`.
            let joined_at = Instant::now();
            let tx = client.transaction().await?;
            // A join stuck behind a transaction that never ends fails, with PostgreSQL's
            // words, rather than holding the server's start for good.
            tx.batch_execute(JOIN_LOCK_TIMEOUT).await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEASE_KEY])
                .await?;
            tx.batch_execute(SCHEMA).await?;
            let other = tx
                .query_opt(
                    "SELECT (EXTRACT(EPOCH FROM expires_at - now()) * 1000)::BIGINT
                     FROM cluster_nodes WHERE name = $1 AND expires_at > now()
                     ORDER BY expires_at DESC LIMIT 1",
                    &[&name],
                )
                .await?;
            if let Some(row) = other {
                let left_ms: i64 = row.try_get(0)?;
                tx.rollback().await?;
                let wait = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)).min(lease)
                    + Duration::from_millis(50);
                info!(node = name, wait = ?wait, "cluster: a node of this name still holds a lease; waiting for it to end");
                tokio::time::sleep(wait).await;
                continue;
            }
            if !settings.is_empty() {
                let differs = tx
                    .query_opt(
                        "SELECT name, settings FROM cluster_nodes
                         WHERE expires_at > now() AND settings <> '' AND settings <> $1
                         ORDER BY epoch LIMIT 1",
                        &[&settings],
                    )
                    .await?;
                if let Some(row) = differs {
                    let (node, theirs): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                    tx.rollback().await?;
                    return Err(LeaseError::Settings {
                        node,
                        theirs,
                        ours: settings.to_owned(),
                    });
                }
            }
            let epoch: i64 = tx
                .query_one(
                    "INSERT INTO cluster_nodes (epoch, name, expires_at, settings)
                     VALUES (nextval('cluster_epoch'), $1, now() + $2::FLOAT8 * INTERVAL '1 second', $3)
                     RETURNING epoch",
                    &[&name, &lease.as_secs_f64(), &settings],
                )
                .await?
                .try_get(0)?;
            tx.commit().await?;
            info!(node = name, epoch, lease = ?lease, "cluster: joined");
            return Ok(Membership {
                target: target.clone(),
                node: NodeId {
                    name: name.to_owned(),
                    epoch,
                },
                lease,
                joined_at,
                client: Mutex::new(Some(Arc::new(client))),
            });
        }
        Err(LeaseError::NameInUse {
            name: name.to_owned(),
        })
    }

    /// This node: its name and epoch.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The lease's length.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// When the join was sent: the lease the database granted ends no sooner than this +
    /// the lease.
    pub fn joined_at(&self) -> Instant {
        self.joined_at
    }

    /// `expires_at = now() + lease` if this node's row is there with its epoch and its lease
    /// has not expired. Never renews a lease that was lost.
    ///
    /// # Errors
    /// [`LeaseError::Fenced`] if the row is gone, of another epoch, or expired.
    pub async fn renew(&self) -> Result<(), LeaseError> {
        let n = self
            .execute(
                "UPDATE cluster_nodes
                     SET expires_at = now() + $3::FLOAT8 * INTERVAL '1 second'
                     WHERE epoch = $1 AND name = $2 AND expires_at > now()",
                &[&self.node.epoch, &self.node.name, &self.lease.as_secs_f64()],
            )
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(LeaseError::Fenced)
        }
    }

    /// Takes `nick_key` for this node, in one statement, if it is free, held by this node, or
    /// held by a node whose lease has expired (database time), and only while this node's own
    /// lease is current; the row keeps `credential` (opaque). Else who holds it, and whether
    /// with the same credential.
    ///
    /// # Errors
    /// [`LeaseError::Fenced`] if this node's lease is lost.
    pub async fn claim(&self, nick_key: &str, credential: &str) -> Result<Claim, LeaseError> {
        const CLAIM: &str = "
            WITH me AS (
                SELECT 1 FROM cluster_nodes
                WHERE epoch = $3::BIGINT AND name = $2::TEXT AND expires_at > now()
            ), taken AS (
                INSERT INTO cluster_nicks AS n (nick_key, node, epoch, credential)
                SELECT $1::TEXT, $2::TEXT, $3::BIGINT, $4::TEXT FROM me
                ON CONFLICT (nick_key) DO UPDATE
                    SET node = excluded.node, epoch = excluded.epoch,
                        credential = excluded.credential
                    WHERE n.epoch = excluded.epoch
                       OR NOT EXISTS (SELECT 1 FROM cluster_nodes c
                                      WHERE c.epoch = n.epoch AND c.expires_at > now())
                RETURNING 1
            )
            SELECT EXISTS (SELECT 1 FROM me), EXISTS (SELECT 1 FROM taken),
                   h.node, h.epoch, h.credential = $4::TEXT
            FROM (SELECT 1) AS one LEFT JOIN cluster_nicks h ON h.nick_key = $1::TEXT";
        self.bounded(async {
            let client = self.client().await?;
            for _ in 0..CLAIM_TRIES {
                let row = self.checked(
                    &client,
                    client
                        .query_one(
                            CLAIM,
                            &[&nick_key, &self.node.name, &self.node.epoch, &credential],
                        )
                        .await,
                )?;
                let live: bool = row.try_get(0)?;
                let taken: bool = row.try_get(1)?;
                let holder: Option<String> = row.try_get(2)?;
                let epoch: Option<i64> = row.try_get(3)?;
                let same: Option<bool> = row.try_get(4)?;
                if !live {
                    return Err(LeaseError::Fenced);
                }
                if taken {
                    return Ok(Claim::Granted);
                }
                if let (Some(name), Some(epoch)) = (holder, epoch) {
                    return Ok(Claim::Held {
                        node: NodeId { name, epoch },
                        same_credential: same.unwrap_or(false),
                    });
                }
                // The holder's row was made or changed after this statement's snapshot: ask
                // again.
                debug!(
                    epoch = self.node.epoch,
                    "cluster: a claim met a row that changed; trying again"
                );
            }
            Err(LeaseError::Contended)
        })
        .await
    }

    /// Records how the user spells the nick `nick_key` this node holds (for the presence view
    /// of nodes that start later, [`Membership::online`]).
    ///
    /// # Errors
    /// [`LeaseError::Db`], [`LeaseError::Timeout`].
    pub async fn spelled(&self, nick_key: &str, nick: &str) -> Result<(), LeaseError> {
        self.execute(
            "UPDATE cluster_nicks SET nick = $3 WHERE nick_key = $1 AND epoch = $2",
            &[&nick_key, &self.node.epoch, &nick],
        )
        .await?;
        Ok(())
    }

    /// The users other live nodes hold: (nick as spelled, or its key if not recorded yet;
    /// the node's epoch).
    ///
    /// # Errors
    /// [`LeaseError::Db`], [`LeaseError::Timeout`].
    pub async fn online(&self) -> Result<Vec<(String, i64)>, LeaseError> {
        let rows = self
            .query(
                "SELECT CASE WHEN n.nick = '' THEN n.nick_key ELSE n.nick END, n.epoch
                 FROM cluster_nicks n JOIN cluster_nodes c ON c.epoch = n.epoch
                 WHERE c.expires_at > now() AND n.epoch <> $1",
                &[&self.node.epoch],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Which of the lobby line ids `ids` the store's history holds (for lines a dead node
    /// ordered but may not have stored: CLUSTER.md).
    ///
    /// # Errors
    /// [`LeaseError::Db`], [`LeaseError::Timeout`].
    pub async fn stored_lines(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashSet<i64>, LeaseError> {
        self.bounded(async {
            let client = self.client().await?;
            let rows = self.checked(
                &client,
                client
                    .query("SELECT id FROM history WHERE id = ANY($1)", &[&ids])
                    .await,
            )?;
            rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
        })
        .await
    }

    /// The id base of the stream made at `created` (CLUSTER.md): the one recorded for it,
    /// or else `candidate` (above every id given out before), recorded now. The first node
    /// to record it wins; every node gets the same base.
    ///
    /// # Errors
    /// [`LeaseError::Db`], [`LeaseError::Timeout`], [`LeaseError::Invalid`] for a base
    /// beyond `i64`.
    pub async fn stream_base(&self, created: &str, candidate: u64) -> Result<u64, LeaseError> {
        let candidate = i64::try_from(candidate)
            .map_err(|_| LeaseError::Invalid("the stream's id base is out of range".into()))?;
        let row = self
            .query_one(
                "WITH made AS (
                    INSERT INTO cluster_stream (created, base)
                    SELECT $1, GREATEST($2, COALESCE((SELECT MAX(base) + 1 FROM cluster_stream), 0))
                    ON CONFLICT (created) DO NOTHING
                    RETURNING base)
                 SELECT base FROM made
                 UNION ALL SELECT base FROM cluster_stream WHERE created = $1
                 LIMIT 1",
                &[&created, &candidate],
            )
            .await?;
        let base: i64 = row.try_get(0)?;
        u64::try_from(base)
            .map_err(|_| LeaseError::Invalid("the stream's id base is negative".into()))
    }

    /// Releases `nick_key` only if this node, in this epoch, holds it.
    ///
    /// # Errors
    /// [`LeaseError::Db`], [`LeaseError::Timeout`].
    pub async fn release(&self, nick_key: &str) -> Result<(), LeaseError> {
        self.execute(
            "DELETE FROM cluster_nicks WHERE nick_key = $1 AND epoch = $2",
            &[&nick_key, &self.node.epoch],
        )
        .await?;
        Ok(())
    }

    /// Other nodes whose lease has expired, with the nicks they held (sorted), and nicks left
    /// by a node whose row is gone; removes those rows, so each is reported once even with
    /// several nodes sweeping at once (a row deleted by one sweep is not deleted again).
    ///
    /// # Errors
    /// [`LeaseError::Db`], [`LeaseError::Timeout`].
    pub async fn sweep(&self) -> Result<Vec<(NodeId, Vec<String>)>, LeaseError> {
        const SWEEP: &str = "
            WITH dead AS (
                DELETE FROM cluster_nodes
                WHERE expires_at <= now() AND epoch <> $1
                RETURNING name, epoch
            ), freed AS (
                DELETE FROM cluster_nicks n
                WHERE n.epoch IN (SELECT epoch FROM dead)
                   OR (n.epoch <> $1
                       AND NOT EXISTS (SELECT 1 FROM cluster_nodes c WHERE c.epoch = n.epoch))
                RETURNING node, epoch, nick_key
            )
            SELECT name, epoch, NULL::TEXT FROM dead
            UNION ALL
            SELECT node, epoch, nick_key FROM freed";
        self.bounded(async {
            let client = self.client().await?;
            let rows = self.checked(&client, client.query(SWEEP, &[&self.node.epoch]).await)?;
            let mut gone: BTreeMap<i64, (String, Vec<String>)> = BTreeMap::new();
            for row in rows {
                let name: String = row.try_get(0)?;
                let epoch: i64 = row.try_get(1)?;
                let nick: Option<String> = row.try_get(2)?;
                let entry = gone.entry(epoch).or_insert_with(|| (name, Vec::new()));
                entry.1.extend(nick);
            }
            Ok(gone
                .into_iter()
                .map(|(epoch, (name, mut nicks))| {
                    nicks.sort();
                    (NodeId { name, epoch }, nicks)
                })
                .collect())
        })
        .await
    }

    /// Nodes whose lease is current (this one included while its own is), by epoch.
    ///
    /// # Errors
    /// [`LeaseError::Db`], [`LeaseError::Timeout`].
    pub async fn live_nodes(&self) -> Result<Vec<NodeId>, LeaseError> {
        let rows = self
            .query(
                "SELECT name, epoch FROM cluster_nodes WHERE expires_at > now()
                 ORDER BY epoch",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeId {
                    name: r.try_get(0)?,
                    epoch: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// Deletes this node's row and its nicks (a clean shutdown), in one statement.
    ///
    /// # Errors
    /// [`LeaseError::Db`], [`LeaseError::Timeout`].
    pub async fn leave(&self) -> Result<(), LeaseError> {
        self.execute(
            "WITH nicks AS (DELETE FROM cluster_nicks WHERE epoch = $1)
                 DELETE FROM cluster_nodes WHERE epoch = $1",
            &[&self.node.epoch],
        )
        .await?;
        info!(node = %self.node.name, epoch = self.node.epoch, "cluster: left");
        Ok(())
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<Client>>> {
        self.client.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection, made again if there is none or it was lost.
    async fn client(&self) -> Result<Arc<Client>, LeaseError> {
        if let Some(client) = self.slot().as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(self.target.connect_async().await?);
        *self.slot() = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Drops the connection (it did not answer in time), to be made again at the next call.
    fn forget_connection(&self) {
        *self.slot() = None;
    }

    /// A statement's result; a connection found closed is dropped.
    fn checked<T>(
        &self,
        client: &Arc<Client>,
        result: Result<T, tokio_postgres::Error>,
    ) -> Result<T, LeaseError> {
        if result.is_err() && client.is_closed() {
            let mut slot = self.slot();
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, client)) {
                *slot = None;
            }
        }
        Ok(result?)
    }

    /// `sql` with `params` on the connection, bounded ([`Membership::bounded`]); the rows
    /// changed.
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, LeaseError> {
        self.bounded(async {
            let client = self.client().await?;
            self.checked(&client, client.execute(sql, params).await)
        })
        .await
    }

    /// As [`Membership::execute`], for the rows a query returns.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, LeaseError> {
        self.bounded(async {
            let client = self.client().await?;
            self.checked(&client, client.query(sql, params).await)
        })
        .await
    }

    /// As [`Membership::query`], for a query that returns one row.
    async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, LeaseError> {
        self.bounded(async {
            let client = self.client().await?;
            self.checked(&client, client.query_one(sql, params).await)
        })
        .await
    }

    /// Runs `op` for at most a lease (a longer answer is of no use); on a timeout the
    /// connection is dropped, since it may hang.
    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, LeaseError>>,
    ) -> Result<T, LeaseError> {
        match tokio::time::timeout(self.lease, op).await {
            Ok(result) => result,
            Err(_) => {
                self.forget_connection();
                Err(LeaseError::Timeout(self.lease))
            }
        }
    }
}

/// Keeps this node's lease: renews it every lease/4 with a timeout of lease/4, and calls
/// `on_fenced` once when the deadline of [`LeaseTimer`] passes without a successful renewal
/// (the server then ends its sessions and refuses logins), and `on_restored` when a renewal
/// succeeds again after such a fence. A renewal answered [`LeaseError::Fenced`] (the lease was
/// lost: the node was declared dead) fences it for good: `on_fenced` (unless already), an
/// error logged, and `run` returns. Returns also when `cancel` is cancelled.
pub async fn run(
    membership: Arc<Membership>,
    on_fenced: impl Fn() + Send,
    on_restored: impl Fn() + Send,
    cancel: CancellationToken,
) {
    let node = membership.node().clone();
    let mut timer = LeaseTimer::new(membership.joined_at(), membership.lease());
    let mut fenced = false;
    loop {
        let wake = if fenced {
            timer.next_renewal()
        } else {
            timer.next_renewal().min(timer.deadline())
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        if timer.is_fenced(Instant::now()) {
            fence(&mut fenced, &node, &on_fenced);
        }
        if Instant::now() < timer.next_renewal() {
            continue;
        }
        let sent = Instant::now();
        timer.renew_sent(sent);
        let renewal = tokio::time::timeout(timer.period(), membership.renew());
        tokio::pin!(renewal);
        let outcome = loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                outcome = &mut renewal => break outcome,
                () = tokio::time::sleep_until(timer.deadline().into()), if !fenced => fence(&mut fenced, &node, &on_fenced),
            }
        };
        match outcome {
            Ok(Ok(())) => {
                timer.renewed(sent);
                if fenced && !timer.is_fenced(Instant::now()) {
                    fenced = false;
                    info!(node = %node.name, epoch = node.epoch, "cluster: the lease is renewed again; logins are accepted");
                    on_restored();
                }
            }
            Ok(Err(LeaseError::Fenced)) => {
                error!(node = %node.name, epoch = node.epoch, "cluster: {}; this node no longer serves (restart it to join again)", LeaseError::Fenced);
                if !fenced {
                    on_fenced();
                }
                return;
            }
            Ok(Err(e)) => {
                timer.failed();
                if timer.failures() == 1 {
                    warn!(node = %node.name, error = %e, "cluster: a lease renewal failed; trying again");
                } else {
                    debug!(node = %node.name, error = %e, failures = timer.failures(), "cluster: a lease renewal failed");
                }
            }
            Err(_) => {
                membership.forget_connection();
                timer.failed();
                if timer.failures() == 1 {
                    warn!(node = %node.name, timeout = ?timer.period(), "cluster: a lease renewal was not answered in time; trying again on a new connection");
                } else {
                    debug!(node = %node.name, failures = timer.failures(), "cluster: a lease renewal was not answered in time");
                }
            }
        }
    }
}

/// Counts this node fenced (once) and tells the server.
fn fence(fenced: &mut bool, node: &NodeId, on_fenced: &impl Fn()) {
    if !*fenced {
        *fenced = true;
        warn!(node = %node.name, epoch = node.epoch, "cluster: this node could not renew its lease in time; it ends its sessions and refuses logins until a renewal succeeds");
        on_fenced();
    }
}
