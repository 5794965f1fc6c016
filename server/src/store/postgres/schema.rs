//! The schema in PostgreSQL: versioned migrations recorded in `schema_version`, the same tables
//! as the SQLite store has at its latest version (see `store/sqlite/schema.rs` for what each
//! column means), with `BIGINT` for ids and times (ms since the Unix epoch) and `BYTEA` for
//! payloads and keys — and one table of its own, `mailbox_acked`, which only nodes of a
//! cluster write (CLUSTER.md).

use postgres::Client;

use super::target_error;
use crate::store::StoreError;

/// Schema version this build writes.
pub(super) const SCHEMA_VERSION: i64 = 2;

/// Migrations, in order; entry `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; 2] = [
    "
    CREATE TABLE accounts (
        nick_key     TEXT PRIMARY KEY,
        nick         TEXT NOT NULL,
        skeleton     TEXT NOT NULL DEFAULT '',
        created_ms   BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL,
        returned_ms  BIGINT
    );
    CREATE INDEX accounts_by_skeleton ON accounts (skeleton);
    CREATE INDEX accounts_unreturned ON accounts (created_ms) WHERE returned_ms IS NULL;
    CREATE TABLE account_credentials (
        nick_key   TEXT NOT NULL,
        credential TEXT NOT NULL,
        kind       TEXT NOT NULL,
        added_ms   BIGINT NOT NULL,
        PRIMARY KEY (nick_key, credential)
    );
    CREATE TABLE history (
        id     BIGINT PRIMARY KEY,
        room   BIGINT NOT NULL DEFAULT 1,
        ts     BIGINT NOT NULL,
        sender TEXT NOT NULL,
        text   TEXT NOT NULL,
        action BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX history_by_room ON history (room, id);
    CREATE TABLE mailbox (
        id      BIGINT PRIMARY KEY,
        to_key  TEXT NOT NULL,
        ts      BIGINT NOT NULL,
        sender  TEXT NOT NULL,
        text    TEXT NOT NULL,
        payload BYTEA
    );
    CREATE INDEX mailbox_by_recipient ON mailbox (to_key, id);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    );
    CREATE TABLE rooms (
        id         BIGINT PRIMARY KEY,
        key        TEXT UNIQUE NOT NULL,
        name       TEXT NOT NULL,
        topic      TEXT NOT NULL DEFAULT '',
        topic_by   TEXT NOT NULL DEFAULT '',
        topic_ts   BIGINT NOT NULL DEFAULT 0,
        modes      BIGINT NOT NULL DEFAULT 0,
        created_ms BIGINT NOT NULL,
        active_ms  BIGINT NOT NULL
    );
    CREATE TABLE room_members (
        room BIGINT NOT NULL,
        key  TEXT NOT NULL,
        nick TEXT NOT NULL,
        role BIGINT NOT NULL,
        seen BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (room, key)
    );
    CREATE INDEX room_members_by_key ON room_members (key);
    CREATE TABLE room_bans (
        room BIGINT NOT NULL,
        key  TEXT NOT NULL,
        PRIMARY KEY (room, key)
    );
    CREATE TABLE room_invites (
        room BIGINT NOT NULL,
        key  TEXT NOT NULL,
        PRIMARY KEY (room, key)
    );
    CREATE TABLE room_requests (
        id       BIGSERIAL PRIMARY KEY,
        kind     TEXT NOT NULL,
        room_key TEXT NOT NULL,
        nick     TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO meta (key, value) VALUES ('last_room_id', 1) ON CONFLICT (key) DO NOTHING;
    CREATE TABLE prekeys (
        nick_key   TEXT PRIMARY KEY,
        identity   BYTEA NOT NULL,
        signed_id  BIGINT NOT NULL,
        signed_key BYTEA NOT NULL,
        signature  BYTEA NOT NULL,
        device     BYTEA NOT NULL
    );
    CREATE TABLE one_time_prekeys (
        seq      BIGSERIAL PRIMARY KEY,
        nick_key TEXT NOT NULL,
        id       BIGINT NOT NULL,
        key      BYTEA NOT NULL,
        UNIQUE (nick_key, id)
    );
    CREATE INDEX one_time_prekeys_by_owner ON one_time_prekeys (nick_key, seq);
",
    "
    -- The personal lines each recipient acknowledged lately, by id, on a cluster: a node may
    -- store a line after the recipient's node deleted it as acknowledged; such a line is not
    -- kept, nor sent again (CLUSTER.md). Kept 10 minutes.
    CREATE TABLE mailbox_acked (
        to_key TEXT NOT NULL,
        id     BIGINT NOT NULL,
        at     TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (to_key, id)
    );
",
];

/// The schema's version; 0 if the database holds no store yet.
pub(super) fn version(client: &mut Client) -> Result<i64, postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
        .try_get(0)
}

/// The transaction-level advisory lock a migration holds ("mm-schem" in ASCII): nodes of a
/// cluster open the database side by side (no one-server lock), and two of them starting at
/// once must not both create the tables.
const MIGRATE_KEY: i64 = 0x6d6d_2d73_6368_656d;

/// Creates `schema_version` if need be, refuses a schema newer than this build's, and applies
/// the missing migrations, each in its own transaction with its version. Each transaction
/// first takes the transaction-level lock [`MIGRATE_KEY`] and reads the version under it, so
/// that servers migrating at once (nodes of a cluster) apply each migration once.
pub(super) fn migrate(client: &mut Client, target: &str) -> Result<(), StoreError> {
    let e = |e: postgres::Error| target_error(target, &super::describe(&e));
    loop {
        let mut tx = client.transaction().map_err(e)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_KEY])
            .map_err(e)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .map_err(e)?;
        let version: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .and_then(|r| r.try_get(0))
            .map_err(e)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: target.into(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        let Some(sql) = usize::try_from(version.max(0))
            .ok()
            .and_then(|v| MIGRATIONS.get(v))
        else {
            // Up to date (what it read is committed: nothing to write).
            tx.commit().map_err(e)?;
            return Ok(());
        };
        tx.batch_execute(sql).map_err(e)?;
        tx.execute("DELETE FROM schema_version", &[]).map_err(e)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version.saturating_add(1)],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
    }
}
