//! The file: opening it, its schema and migrations, proving it can be written, and the names
//! of the failures an operator can act on.

use std::path::Path;

use mm_common::confusable::skeleton;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::{meta, BUSY_TIMEOUT};
use crate::store::StoreError;

/// Schema version this build writes (`PRAGMA user_version`).
pub(super) const SCHEMA_VERSION: i64 = 6;

/// One schema step: SQL, then (optionally) work SQL cannot do, in the same transaction.
struct Migration {
    sql: &'static str,
    then: Option<fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>>,
}

/// Migrations, in order; entry `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: [Migration; 6] = [
    Migration {
        sql: "
    CREATE TABLE accounts (
        nick_key     TEXT PRIMARY KEY,
        nick         TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        created_ms   INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE history (
        id     INTEGER PRIMARY KEY,
        ts     INTEGER NOT NULL,
        sender TEXT NOT NULL,
        text   TEXT NOT NULL
    );
    CREATE TABLE mailbox (
        id     INTEGER PRIMARY KEY,
        to_key TEXT NOT NULL,
        ts     INTEGER NOT NULL,
        sender TEXT NOT NULL,
        text   TEXT NOT NULL
    );
    CREATE INDEX mailbox_by_recipient ON mailbox (to_key, id);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
",
        then: None,
    },
    // 2: the mailbox keeps every personal line until acknowledged, relays included (their
    // payload here, `text` empty).
    Migration {
        sql: "ALTER TABLE mailbox ADD COLUMN payload BLOB;",
        then: None,
    },
    // 3: look-alike nicks and unused accounts.
    // - `skeleton`: the nick's confusable skeleton (`mm_common::confusable::skeleton`), indexed:
    //   a new nick whose skeleton an account already has is refused. Not unique: accounts
    //   registered before the rule may share one, and both keep working.
    // - `returned_ms`: when the account first logged in again after its registering connection
    //   (NULL: never). Only accounts with NULL here expire (`unused_account_days`). It is
    //   written durably, never as a best-effort write, so a lost last-seen update cannot make a
    //   used account look unused. Accounts from before this version count as returned: whether
    //   they were used is not known, and an account that was used must never expire.
    Migration {
        sql: "
    ALTER TABLE accounts ADD COLUMN skeleton TEXT NOT NULL DEFAULT '';
    ALTER TABLE accounts ADD COLUMN returned_ms INTEGER;
    UPDATE accounts SET returned_ms = last_seen_ms;
",
        then: Some(fill_skeletons),
    },
    // 4: rooms (protocol 5).
    // - `history` holds every room's lines: `room` is the room's id (1: the lobby, so that the
    //   lines of earlier versions become the lobby's), `action` 1 for an action (`/me`). Each
    //   room keeps its newest `history_len` lines.
    // - `rooms`: one row per room but the lobby. `key` is the name as compared
    //   (`mm_common::protocol::room_key`), `name` as spelled at creation; `topic_ts`,
    //   `created_ms` and `active_ms` are ms since the Unix epoch; `modes` is bit flags (1
    //   invite-only, 2 topic settable by operators only, 4 moderated; see `crate::store::encode::modes_bits`).
    // - `room_members`: (room, nick key) with the nick as spelled, the standing (`role`: 0
    //   member, 1 voiced, 2 operator, 3 owner) and `seen` (a message id); `room_bans` and
    //   `room_invites`: (room, nick key).
    // - `room_requests`: changes `mm-server rooms` asks of a running server (`kind` 'delete'
    //   or 'set-owner', the room's key, the nick for 'set-owner'), taken and deleted by it in
    //   id order (`Store::admin_requests`).
    // - `meta` gains `last_room_id`: the highest room id ever given (1: only the lobby).
    Migration {
        sql: "
    ALTER TABLE history ADD COLUMN room INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE history ADD COLUMN action INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX history_by_room ON history (room, id);
    CREATE TABLE rooms (
        id         INTEGER PRIMARY KEY,
        key        TEXT UNIQUE NOT NULL,
        name       TEXT NOT NULL,
        topic      TEXT NOT NULL DEFAULT '',
        topic_by   TEXT NOT NULL DEFAULT '',
        topic_ts   INTEGER NOT NULL DEFAULT 0,
        modes      INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        active_ms  INTEGER NOT NULL
    );
    CREATE TABLE room_members (
        room INTEGER NOT NULL,
        key  TEXT NOT NULL,
        nick TEXT NOT NULL,
        role INTEGER NOT NULL,
        seen INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (room, key)
    ) WITHOUT ROWID;
    CREATE INDEX room_members_by_key ON room_members (key);
    CREATE TABLE room_bans (
        room INTEGER NOT NULL,
        key  TEXT NOT NULL,
        PRIMARY KEY (room, key)
    ) WITHOUT ROWID;
    CREATE TABLE room_invites (
        room INTEGER NOT NULL,
        key  TEXT NOT NULL,
        PRIMARY KEY (room, key)
    ) WITHOUT ROWID;
    CREATE TABLE room_requests (
        id       INTEGER PRIMARY KEY,
        kind     TEXT NOT NULL,
        room_key TEXT NOT NULL,
        nick     TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO meta (key, value) VALUES ('last_room_id', 1) ON CONFLICT (key) DO NOTHING;
",
        then: None,
    },
    // 5: the key directory (protocol 6; public keys only, see `keys`).
    // - `prekeys`: per account (nick key) its X25519 identity key, its signed prekey (`signed_id`,
    //   `signed_key`, the 64-byte `signature`) and the last device token it stored (`device`,
    //   16 bytes).
    // - `one_time_prekeys`: its one-time prekeys (`id` the owner's number, unique per account;
    //   `key` 32 bytes); `seq` orders them by arrival (the oldest is handed out first, the
    //   newest 200 are kept). A row is deleted in the transaction that hands it out.
    Migration {
        sql: "
    CREATE TABLE prekeys (
        nick_key   TEXT PRIMARY KEY,
        identity   BLOB NOT NULL,
        signed_id  INTEGER NOT NULL,
        signed_key BLOB NOT NULL,
        signature  BLOB NOT NULL,
        device     BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE one_time_prekeys (
        seq      INTEGER PRIMARY KEY,
        nick_key TEXT NOT NULL,
        id       INTEGER NOT NULL,
        key      BLOB NOT NULL,
        UNIQUE (nick_key, id)
    );
    CREATE INDEX one_time_prekeys_by_owner ON one_time_prekeys (nick_key, seq);
",
        then: None,
    },
    // 6: an account holds a set of credentials (one today; several devices later).
    // - `account_credentials`: (nick key, credential) with its `kind` ('certificate': a client
    //   certificate's SHA-256 fingerprint; 'key': an account key's `p256:` credential, see
    //   `mm_common::key_login`) and when it was added (`added_ms`). A login is its owner's if
    //   its credential is one of the account's; the primary key answers that, and nothing
    //   looks a credential up on its own (the registration limits per credential are in
    //   memory), so there is no index by credential. Rows are deleted with their account, in
    //   the same transaction.
    // - Every account's `fingerprint` becomes its first credential (added at its
    //   registration; kind 'key' only for a `p256:` one, which the server of key logins may
    //   have registered before this version), and the column is dropped: the credentials
    //   have one source of truth.
    Migration {
        sql: "
    CREATE TABLE account_credentials (
        nick_key   TEXT NOT NULL,
        credential TEXT NOT NULL,
        kind       TEXT NOT NULL,
        added_ms   INTEGER NOT NULL,
        PRIMARY KEY (nick_key, credential)
    ) WITHOUT ROWID;
    INSERT INTO account_credentials (nick_key, credential, kind, added_ms)
        SELECT nick_key, fingerprint,
               CASE WHEN substr(fingerprint, 1, 5) = 'p256:' THEN 'key' ELSE 'certificate' END,
               created_ms
        FROM accounts;
    ALTER TABLE accounts DROP COLUMN fingerprint;
",
        then: None,
    },
];

/// Migration 3, after its SQL: every existing account gets its skeleton, then the indexes.
fn fill_skeletons(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let accounts: Vec<(String, String)> = tx
        .prepare("SELECT nick_key, nick FROM accounts")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = tx.prepare("UPDATE accounts SET skeleton = ?2 WHERE nick_key = ?1")?;
    for (key, nick) in accounts {
        update.execute([&key, &skeleton(&nick)])?;
    }
    tx.execute_batch(
        "CREATE INDEX accounts_by_skeleton ON accounts (skeleton);
         CREATE INDEX accounts_unreturned ON accounts (created_ms) WHERE returned_ms IS NULL;",
    )
}

/// Brings `conn` from version 0 to schema `version` with the first migrations only: a store as
/// the build that wrote that version left it, for tests of the later migrations.
#[cfg(test)]
pub(super) fn migrate_to(conn: &mut Connection, version: usize) -> rusqlite::Result<()> {
    for (i, migration) in MIGRATIONS.iter().enumerate().take(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration.sql)?;
        if let Some(then) = migration.then {
            then(&tx)?;
        }
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
    }
    Ok(())
}

pub(super) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| classify(path, &e))?;
    Ok(conn)
}

/// Settings, an integrity check and migrations.
pub(super) fn prepare(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let c = |e: rusqlite::Error| classify(path, &e);
    // Reading the header first turns "not a database" into a clear error before anything else.
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(c)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(c)?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            detail: format!("cannot switch to WAL mode (journal mode is {mode})"),
        });
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(c)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(c)?;
    if check != "ok" {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: check,
        });
    }
    let start = usize::try_from(version).unwrap_or(0);
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(start) {
        let tx = conn.transaction().map_err(c)?;
        tx.execute_batch(migration.sql).map_err(c)?;
        if let Some(then) = migration.then {
            then(&tx).map_err(c)?;
        }
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )
        .map_err(c)?;
        tx.commit().map_err(c)?;
    }
    Ok(())
}

/// Proves at start that the store can be written: one real write transaction (it records
/// `now_ms`, ms since the Unix epoch, as when the server opened the store). A store that opens but cannot be written (a read-only file,
/// directory or mount, a full disk) would otherwise refuse every message and registration.
///
/// # Errors
/// [`StoreError::NotWritable`] naming the file and what to check, or [`StoreError::Locked`] /
/// [`StoreError::Corrupt`] as classified.
pub(super) fn check_writable(
    conn: &mut Connection,
    path: &Path,
    now_ms: u64,
) -> Result<(), StoreError> {
    let write = |conn: &mut Connection| -> rusqlite::Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        meta::record_opened(&tx, now_ms)?;
        tx.commit()
    };
    write(conn).map_err(|e| match classify(path, &e) {
        StoreError::Failed(detail) | StoreError::Open { detail, .. } => StoreError::NotWritable {
            path: path.to_path_buf(),
            detail,
        },
        other => other,
    })
}

pub(super) fn open_error(path: &Path, e: &rusqlite::Error) -> StoreError {
    match classify(path, e) {
        StoreError::Failed(detail) => StoreError::Open {
            path: path.to_path_buf(),
            detail,
        },
        other => other,
    }
}

/// Names the failures a user can act on.
pub(super) fn classify(path: &Path, e: &rusqlite::Error) -> StoreError {
    let detail = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
            path: path.to_path_buf(),
            detail,
        },
        Some(ErrorCode::ReadOnly) => StoreError::NotWritable {
            path: path.to_path_buf(),
            detail,
        },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => StoreError::Open {
            path: path.to_path_buf(),
            detail,
        },
        _ => StoreError::Failed(detail),
    }
}
