//! What the server keeps across restarts: accounts (nick → its credentials: client-certificate
//! fingerprints or account-key credentials, one per account today), rooms
//! (name, topic, modes, members with their standing, bans, invitations), each room's recent
//! history, private lines waiting for offline users, and each account's end-to-end keys (the
//! key directory of protocol 6: public keys only).
//!
//! The hub talks to storage through the narrow [`Store`] trait so that another backend (e.g.
//! PostgreSQL for several server nodes) can be added without touching the hub or the sessions.
//! Every call only *submits* work and never blocks: the hub calls it while holding its lock, so
//! that the store sees operations in exactly the order the hub decided them (a private line
//! queued for bob before bob's login fetched his mailbox is always in that mailbox). Answers
//! come back on a oneshot channel once the work is durable.
//!
//! How much a store keeps is its [`Options`] (from the server's limits). Times come with each
//! call, read by the hub from its clock ([`crate::clock`]); a backend that also times its own
//! bookkeeping takes a clock when it is opened.
//!
//! The backends are [`sqlite::SqliteStore`] (a file in the data directory, the default) and
//! [`postgres::PgStore`] (a PostgreSQL database); [`memory::MemoryStore`] keeps nothing, for
//! tests. Both real backends are the one writer thread of `writer` (batching, retrying,
//! answering) on a backend that runs a batch in a transaction; what is decided in Rust rather
//! than in SQL (the commands, how a login stands and completes, mailbox bounds, the key
//! directory's device rule, how values are encoded) is in `command` and `encode`, once. Their
//! behaviour tests (`tests`) run on both.

pub(crate) mod command;
pub(crate) mod encode;
pub mod memory;
pub mod postgres;
pub mod sqlite;
pub(crate) mod writer;

#[cfg(test)]
pub(crate) mod tests;

use mm_common::prekeys::{KeyUpload, PrekeyBundle};
use mm_common::protocol::{Modes, Role};
use tokio::sync::oneshot;

use crate::config::Limits;
pub use crate::hub::RoomId;

/// How much a store keeps: its bounds, in lines and accounts. Every backend enforces them the
/// same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Public lines kept as history, per room.
    pub history_len: usize,
    /// Private lines that may wait for one offline user.
    pub mailbox_len: usize,
    /// Most accounts.
    pub max_accounts: usize,
    /// Most private lines waiting, all mailboxes together.
    pub mailbox_total: usize,
    /// Most lines one connection may leave unacknowledged; live lines beyond
    /// `mailbox_len + max_unacked` in one mailbox are delivered but not kept.
    pub max_unacked: usize,
}

impl Options {
    /// The bounds the server's `limits` set: `history_len`, `mailbox_len`, `max_accounts` and
    /// `mailbox_total` as they are, and `max_unacked` from `outbound_queue` (at least 1), the
    /// hub's bound on a connection's unacknowledged lines.
    pub fn from_limits(limits: &Limits) -> Options {
        Options {
            history_len: limits.history_len,
            mailbox_len: limits.mailbox_len,
            max_accounts: limits.max_accounts,
            mailbox_total: limits.mailbox_total,
            max_unacked: limits.outbound_queue.max(1),
        }
    }

    /// Most lines one mailbox holds, live ones included (`mailbox_len + max_unacked`,
    /// saturating); also the most a login fetches.
    pub fn mailbox_ceiling(&self) -> usize {
        self.mailbox_len.saturating_add(self.max_unacked)
    }
}

/// A line in a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The room's id ([`RoomId::LOBBY`] for the lobby).
    pub room: RoomId,
    /// The message id the hub gave it.
    pub id: u64,
    /// When the server accepted it, ms since the Unix epoch.
    pub ts: u64,
    /// Sender nick.
    pub from: String,
    /// The text.
    pub text: String,
    /// Whether it is an action (`/me`).
    pub action: bool,
}

/// A room as the store keeps it. The lobby ([`RoomId::LOBBY`]) is not one: everyone online is
/// in it, and only its history is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    /// Its id: given by the hub, never reused ([`Loaded::last_room_id`]).
    pub id: RoomId,
    /// Its name, as spelled at creation (`#Dev`).
    pub name: String,
    /// Its topic (empty: none), who set it and when (ms since the Unix epoch; 0: never).
    pub topic: String,
    /// Who set the topic (empty: nobody).
    pub topic_by: String,
    /// When the topic was set.
    pub topic_ts: u64,
    /// Its modes.
    pub modes: Modes,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: u64,
    /// When it last had a member or a line, ms since the Unix epoch (empty rooms expire after
    /// `room_expiry_days` of this).
    pub active_ms: u64,
    /// Its members.
    pub members: Vec<MemberRecord>,
    /// Banned accounts, by nick key.
    pub bans: Vec<String>,
    /// Invited users not yet joined, by nick key.
    pub invites: Vec<String>,
}

/// One member of a room, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// The account's nick key ([`mm_common::protocol::nick_key`]).
    pub key: String,
    /// The nick as spelled when it joined.
    pub nick: String,
    /// Its standing.
    pub role: Role,
    /// The id of the newest room line it had been sent when it last left or logged out
    /// (0: none); lines after it are new to it.
    pub seen: u64,
}

/// One change to the rooms, applied in the store's order ([`Store::room`]). Each names the
/// room by id; a change to a room that no longer exists is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomChange {
    /// A new room (with its members: its creator, the owner). Records `id` as the newest room
    /// id ever given ([`Loaded::last_room_id`]).
    Create(RoomRecord),
    /// A member joined (or rejoined: its standing and `seen` are replaced), or its standing
    /// changed. An invitation of the same user is used up.
    Join(RoomId, MemberRecord),
    /// A member left or was removed.
    Part(RoomId, String),
    /// Members' `seen` marks moved (at logout, or a part): (room, nick key, seen).
    Seen(Vec<(RoomId, String, u64)>),
    /// The topic changed: topic, by, ts.
    Topic(RoomId, String, String, u64),
    /// The modes changed.
    Modes(RoomId, Modes),
    /// A ban on a nick key was added (true: the member, if it is one, and its invitation are
    /// removed with it) or lifted (false).
    Ban(RoomId, String, bool),
    /// An invitation of a nick key was added (true) or withdrawn (false).
    Invite(RoomId, String, bool),
    /// The room had a member or a line at this time (ms since the Unix epoch), best effort.
    Active(RoomId, u64),
    /// The room is gone, with its members, bans, invitations and history.
    Delete(RoomId),
    /// The changes one event of the cluster's stream made, with the event's id (CLUSTER.md,
    /// "Rooms"). Every node that applies the event computes the same changes and submits
    /// them; the store applies them only if no id as high was recorded before (otherwise
    /// another node already stored them), and records the id, in one transaction. An empty
    /// list records only that every change up to `id` is stored. A store no cluster shares
    /// applies the changes as they come.
    Ordered(u64, Vec<RoomChange>),
}

/// A change to a room that the server's operator asked for with `mm-server rooms` while the
/// server was running ([`Store::admin_requests`]). The hub applies it as if an owner had acted:
/// it tells the members, and stores the outcome with [`Store::room`]. A request naming a room
/// that no longer exists, or a nick that is no longer its member, is dropped (the command
/// checked both when it queued it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomRequest {
    /// Delete the room (its members, bans, invitations and history), as
    /// [`RoomChange::Delete`] does.
    Delete {
        /// The room's name as compared ([`mm_common::protocol::room_key`], e.g. `#dev`).
        room_key: String,
    },
    /// Make a member the room's owner ([`Role::Owner`]); whoever owned it before becomes an
    /// operator ([`Role::Op`]).
    SetOwner {
        /// The room's name as compared ([`mm_common::protocol::room_key`]).
        room_key: String,
        /// The member's nick, as the operator typed it (compare it with
        /// [`mm_common::protocol::nick_key`]).
        nick: String,
    },
}

/// What a mailbox entry carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A private chat line (sent again as `ServerMsg::Offline`).
    Text(String),
    /// An end-to-end relay payload (sent again as `ServerMsg::Relay`), 1 to
    /// `MAX_RELAY_LEN` bytes.
    Relay(Vec<u8>),
}

/// A personal line in its recipient's mailbox: kept from its acceptance until the recipient's
/// client acknowledges it (`ClientMsg::Received`), whether or not it was delivered live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The message id the hub gave it.
    pub id: u64,
    /// When the server accepted it, ms since the Unix epoch.
    pub ts: u64,
    /// Sender nick.
    pub from: String,
    /// The text or payload.
    pub body: Body,
}

/// How a personal line enters its recipient's mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The recipient is offline: the line is checked against the mailbox bounds
    /// (`mailbox_len`, `mailbox_total`) and the recipient must be a registered user.
    Offline,
    /// The recipient is online and the line is already in their queue: it is kept until
    /// acknowledged, without the bounds (the hub bounds unacknowledged lines per connection).
    Live,
}

/// How a credential proves that an account is its holder's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A TLS client certificate: the credential is its SHA-256 fingerprint
    /// (`mm_certs::fingerprint`, colon-separated uppercase hex).
    Certificate,
    /// An account key (protocol "Login with an account key"): the credential is
    /// [`mm_common::key_login::credential`] of the key (`p256:` and lowercase hex).
    Key,
}

impl CredentialKind {
    /// The kind of `credential`, from its form: a key's starts with `p256:`, which a
    /// certificate's fingerprint never does.
    pub fn of(credential: &str) -> CredentialKind {
        if credential.starts_with(mm_common::key_login::CREDENTIAL_PREFIX) {
            CredentialKind::Key
        } else {
            CredentialKind::Certificate
        }
    }

    /// As stored and listed: `certificate` or `key`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Certificate => "certificate",
            CredentialKind::Key => "key",
        }
    }
}

/// One of an account's credentials: whoever logs in with it owns the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// What it is.
    pub kind: CredentialKind,
    /// As the session passes it to [`Store::login`]: a certificate's fingerprint or a key's
    /// `p256:` credential.
    pub credential: String,
    /// When it was added to the account, ms since the Unix epoch.
    pub added_ms: u64,
}

impl Credential {
    /// Its kind and the first 8 bytes of its hash, as `mm-server accounts list` shows it:
    /// `certificate 3F:2A:…` (see [`short_credential`]).
    pub fn short(&self) -> String {
        format!(
            "{} {}",
            self.kind.as_str(),
            short_credential(&self.credential)
        )
    }
}

/// The first 8 bytes of a credential's hash, in its own notation, then `…`:
/// `3F:2A:00:11:22:33:44:55…` for a certificate's fingerprint, `p256:0123456789abcdef…` for a
/// key's credential. A credential already that short is returned whole.
pub fn short_credential(credential: &str) -> String {
    let len = match CredentialKind::of(credential) {
        // 8 bytes as `XX:` each, without the last colon.
        CredentialKind::Certificate => 8 * 3 - 1,
        CredentialKind::Key => mm_common::key_login::CREDENTIAL_PREFIX.len() + 16,
    };
    match credential.char_indices().nth(len) {
        Some((end, _)) => format!("{}…", &credential[..end]),
        None => credential.to_owned(),
    }
}

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The nick, spelled as at its last login.
    pub nick: String,
    /// The credentials that own it, oldest first (one today: the one it was registered with).
    pub credentials: Vec<Credential>,
    /// When it was registered, ms since the Unix epoch.
    pub created_ms: u64,
    /// When it last logged in or out, ms since the Unix epoch (best effort).
    pub last_seen_ms: u64,
    /// When it first logged in again after its registering connection, ms since the Unix
    /// epoch; `None` if it never did (such an account expires, see `unused_account_days`).
    pub returned_ms: Option<u64>,
    /// Private lines waiting for it.
    pub waiting: u64,
}

/// How a login stands against the accounts.
///
/// [`Store::check_login`] answers it from a read (`Registered` then means "free: logging in
/// would register it"); [`Store::login`] decides it again and acts on it in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The nick was free and now belongs to this credential (from `check_login`: would).
    Registered,
    /// The credential is one of the nick's account's.
    Known,
    /// The nick's account does not hold this credential.
    Taken,
    /// The nick is free but the store holds as many accounts as allowed.
    Full,
    /// The nick is free but looks like this registered nick (same
    /// [`mm_common::confusable::skeleton`]).
    LooksLike(String),
    /// The nick is free, but the login was admitted as its owner's (`register = false`): an
    /// operator released it, or it expired, in between. Nothing was done; log in again.
    Changed,
}

impl LoginOutcome {
    /// Whether the login may go on.
    pub fn admits(&self) -> bool {
        matches!(self, LoginOutcome::Registered | LoginOutcome::Known)
    }
}

/// What [`Store::login`] decided, with the mailbox when the login is admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The decision; nothing was written unless it [`admits`](LoginOutcome::admits).
    pub outcome: LoginOutcome,
    /// The personal lines waiting for the user (never acknowledged), oldest first; empty
    /// unless admitted.
    pub waiting: Vec<Mail>,
}

/// The outcome of storing a personal line in a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutcome {
    /// Stored until the recipient acknowledges it (at their next login if offline).
    Queued,
    /// The recipient's mailbox holds as many lines as allowed.
    MailboxFull,
    /// Nobody has registered that nick.
    NoSuchAccount,
    /// The store holds as many waiting lines, for all users together, as allowed.
    StoreFull,
}

/// What [`Store::publish_keys`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// How many one-time prekeys the account has now.
    pub one_time: u32,
    /// The stored device token was neither the upload's `previous` nor its `next`: another
    /// copy of the client's home published since (see [`mm_common::prekeys::DeviceCheck`]).
    pub other_device: bool,
}

/// What [`Store::take_bundle`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The account's keys, with at most one one-time prekey (deleted from the store in the
    /// same transaction that read it), and how many one-time prekeys remain.
    Bundle {
        /// What to hand out.
        bundle: PrekeyBundle,
        /// One-time prekeys left after this one.
        remaining: u32,
    },
    /// The account exists and published no keys.
    NoKeys,
    /// No account by that nick key.
    NoSuchAccount,
}

/// What the server needs from the store when it starts.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The lobby's most recent lines, oldest first (at most `history_len`).
    pub history: Vec<Line>,
    /// Every room but the lobby, by id, each with its members, bans and invitations.
    pub rooms: Vec<RoomRecord>,
    /// Each room's most recent lines (at most `history_len` per room), oldest first; rooms
    /// without lines are absent.
    pub room_history: Vec<(RoomId, Vec<Line>)>,
    /// The highest room id ever given out (rooms deleted included); new rooms continue after
    /// it. At least [`RoomId::LOBBY`].
    pub last_room_id: u64,
    /// The highest message id ever given out or reserved ([`Store::reserve_ids`]); new ids
    /// continue after it.
    pub last_id: u64,
    /// The id of the cluster's newest stream event whose room changes the rooms above hold
    /// ([`RoomChange::Ordered`]); 0 for a store no cluster shares.
    pub rooms_applied: u64,
}

/// A storage failure. Details are for logs; clients get a generic error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store file could not be opened or created.
    #[error("cannot open the store {path}: {detail}")]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The store file is not a Multi-Messenger store, or is damaged.
    #[error("the store {path} is damaged or not a Multi-Messenger store ({detail}); restore a backup, or move it aside to start with an empty store (accounts, history and waiting messages would be lost)")]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// Another process holds the store.
    #[error("the store {path} is in use by another process ({detail}); is another mm-server running on this store (the same data directory or database)?")]
    Locked {
        /// The file.
        path: std::path::PathBuf,
        /// What held it.
        detail: String,
    },
    /// The store was written by a newer server with a schema this one does not know.
    #[error("the store {path} has schema version {found}, newer than this server's {known}; run a newer mm-server")]
    TooNew {
        /// The file.
        path: std::path::PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// The store opens but cannot be written (a read-only file, directory or mount, a full disk).
    #[error("the store {path} cannot be written ({detail}); the server must write it: check that the file, its directory (SQLite creates -wal and -shm files beside it) and the file system are writable by the user running mm-server and that the disk is not full, then start again")]
    NotWritable {
        /// The file.
        path: std::path::PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// The store cannot take the work right now: more is waiting than it accepts, or it is
    /// failing to commit (it retries what it accepted). The caller should refuse, not wait.
    #[error("the store is busy")]
    Busy,
    /// The store gave up on work it had accepted: at close, commits still failed after a final
    /// bounded effort. What was in the answered operations is not stored.
    #[error("{} ({detail})", not_stored(*lines))]
    NotStored {
        /// Accepted public and personal lines not stored.
        lines: usize,
        /// The last failure.
        detail: String,
    },
    /// The store has been closed.
    #[error("the store is closed")]
    Closed,
    /// A database operation failed.
    #[error("store operation failed: {0}")]
    Failed(String),
}

/// Where an answer arrives once the store has done the work (and made it durable).
pub type Reply<T> = oneshot::Receiver<Result<T, StoreError>>;

/// Persistent state behind the hub. Every method only submits work, never blocks, and is applied
/// in call order; `Err` means it was not accepted (e.g. [`StoreError::Busy`]).
///
/// Accepted work is never dropped silently: a backend whose commits fail keeps what it accepted
/// and retries it (the replies wait), refuses new writes at submission with
/// [`StoreError::Busy`] while it fails, and still answers reads (`login` of a registered nick,
/// `waiting`) where it can. Only [`Store::close`] gives up, after a bounded final effort, and
/// then says so: the pending replies and the close reply carry [`StoreError::NotStored`].
pub trait Store: Send + Sync + std::fmt::Debug {
    /// How a login of `nick` with `credential` (a client certificate's fingerprint, or an
    /// account key's `p256:` credential) stands: [`LoginOutcome::Known`] if it is one of the
    /// account's credentials. A read, which changes nothing (so a login refused later, by the
    /// hub or a limit, has left no trace). The answer can be out of date by the time of
    /// [`Store::login`], which decides again.
    fn check_login(&self, nick: &str, credential: &str) -> Result<Reply<LoginOutcome>, StoreError>;

    /// Completes a login the hub admitted, in one step in the store's order: decides as
    /// [`Store::check_login`] does, and only if the login is admitted registers the nick with
    /// `credential` as its first credential (when free and `register` is set; free without it
    /// gives [`LoginOutcome::Changed`]),
    /// marks an account that logs in again as returned (durably), records the spelling and
    /// the time (best effort), and reads the mailbox. If any part fails, none of it is kept.
    ///
    /// While the store cannot write, a registered owner still logs in (from a read; that it
    /// returned is recorded once the store recovers) and a registration is answered
    /// [`StoreError::Busy`].
    fn login(
        &self,
        nick: &str,
        credential: &str,
        now_ms: u64,
        register: bool,
    ) -> Result<Reply<Login>, StoreError>;

    /// Undoes the registration a [`Store::login`] with these arguments may have made, if the
    /// session could not learn its outcome (it gave up waiting): deletes the account if it is
    /// still the one that login created (holding `credential`, created at `created_ms`, never
    /// logged in again), its credentials and its mailbox. Applied in the store's order, after that login.
    /// Accepted even while the store is failing (it is retried like an accepted line).
    fn abandon_registration(
        &self,
        nick: &str,
        credential: &str,
        created_ms: u64,
    ) -> Result<(), StoreError>;

    /// The personal lines waiting for `nick_key` (never acknowledged), oldest first. They stay
    /// stored until [`Store::delivered`].
    fn waiting(&self, nick_key: &str) -> Result<Reply<Vec<Mail>>, StoreError>;

    /// Deletes the waiting lines of `nick_key` up to id `up_to`: the recipient's client
    /// acknowledged them.
    fn delivered(&self, nick_key: &str, up_to: u64) -> Result<(), StoreError>;

    /// [`Store::delivered`], with the ids of the lines the recipient's connection was given up
    /// to `up_to` (`given`, increasing). On a node of a cluster only those leave the mailbox:
    /// a line another node stores late, that this connection was never given, stays for the
    /// next login (CLUSTER.md). Elsewhere the same as [`Store::delivered`].
    fn delivered_given(
        &self,
        nick_key: &str,
        up_to: u64,
        given: Vec<u64>,
    ) -> Result<(), StoreError> {
        let _ = given;
        self.delivered(nick_key, up_to)
    }

    /// Records that `nick_key` logged out now. Best effort, unless `durable`: the end of an
    /// account's registering connection, from which an unused account's expiry counts, is
    /// accepted even while the store is failing and retried until stored.
    fn logged_out(&self, nick_key: &str, now_ms: u64, durable: bool) -> Result<(), StoreError>;

    /// Deletes, with their credentials and mailboxes, up to `limit` accounts that never logged in again after
    /// their registering connection, whose registration and last logout are both before
    /// `cutoff_ms`, and that are not in `online` (nick keys: a registering connection still
    /// open is in use). Answers the nicks deleted.
    fn expire_unused(
        &self,
        cutoff_ms: u64,
        online: Vec<String>,
        limit: usize,
    ) -> Result<Reply<Vec<String>>, StoreError>;

    /// Appends a line to its room's history (which keeps the most recent `history_len` lines
    /// of each room only); the reply comes once it is durable.
    fn append_public(&self, line: Line) -> Result<Reply<()>, StoreError>;

    /// Applies one change to the rooms; the reply comes once it is durable. Like a line,
    /// accepted work is retried until stored; refused (`Busy`) means not applied.
    fn room(&self, change: RoomChange) -> Result<Reply<()>, StoreError>;

    /// The newest `limit` lines of room `room`, oldest first, as of this point in the store's
    /// order (every line appended before the call, none after): for a room whose history the
    /// hub no longer holds in memory.
    fn room_history(&self, room: RoomId, limit: usize) -> Result<Reply<Vec<Line>>, StoreError>;

    /// Takes the changes `mm-server rooms` queued for the running server since the last call,
    /// oldest first: they are read and deleted in the store's order, so each is answered once
    /// (a reply that is lost, e.g. the store closed, loses them). Applying them is the caller's
    /// work. A write: refused ([`StoreError::Busy`]) while the store is failing; ask again
    /// later. A backend without such a queue answers an empty list.
    fn admin_requests(&self) -> Result<Reply<Vec<RoomRequest>>, StoreError>;

    /// Keeps a personal line in the mailbox of `to_key` until acknowledged; the reply comes
    /// once it is durable (or says why it was not stored).
    fn queue_mail(
        &self,
        to_key: &str,
        mail: Mail,
        arrival: Arrival,
    ) -> Result<Reply<QueueOutcome>, StoreError>;

    /// Records durably that message ids up to `up_to` may have been given out, so that the
    /// next start continues after them ([`Loaded::last_id`] is at least `up_to`): the hub's
    /// ids are reserved this way before it gives them out (`hub::ids`). Applied in order; the
    /// reply comes once it is durable. Never lowers what is recorded.
    fn reserve_ids(&self, up_to: u64) -> Result<Reply<()>, StoreError>;

    /// Stores the key directory entry of the account `nick_key` (protocol 6): replaces its
    /// identity key and signed prekey, adds the one-time prekeys (keeping the newest
    /// [`mm_common::prekeys::MAX_ONE_TIME_STORED`]; all stored ones are dropped first when the
    /// identity key changes or the upload sets `replace_one_time`; a one-time prekey whose id
    /// is already stored replaces it), applies the device check (`other_device` when a token is
    /// stored and it is neither `previous` nor `next`) and stores `next`. The reply comes once
    /// it is durable. `keys` must have passed [`KeyUpload::validate`]. An account that does not
    /// exist (released meanwhile) stores nothing and is answered [`StoreError::Failed`].
    fn publish_keys(&self, nick_key: &str, keys: KeyUpload)
        -> Result<Reply<Published>, StoreError>;

    /// Takes a bundle of the account `nick_key`: its identity key and signed prekey, and, if
    /// `one_time`, its oldest one-time prekey, which is deleted in the same transaction (so
    /// it is handed out once, whatever fetches run concurrently and across restarts). The
    /// reply comes once the deletion is durable.
    fn take_bundle(&self, nick_key: &str, one_time: bool) -> Result<Reply<Taken>, StoreError>;

    /// How many one-time prekeys the account `nick_key` has; `None` when it published no keys
    /// (or does not exist). A read.
    fn prekey_count(&self, nick_key: &str) -> Result<Reply<Option<u32>>, StoreError>;

    /// Whether the store answers: a trivial request on the same path as writes (for SQLite,
    /// an empty transaction through the writer). Refused ([`StoreError::Busy`]) while commits
    /// fail, [`StoreError::Closed`] once closed; the reply comes once the store did it. The
    /// admin listener's `/readyz` waits for it a short time (see [`crate::admin`]).
    fn ready(&self) -> Result<Reply<()>, StoreError>;

    /// Hands the store the server's store metrics (commit latency, backlog); called once, at
    /// start. A backend keeps them up to date from then on (and may count its backlog from
    /// before, as the SQLite store does); one without commits or a queue ignores them.
    fn attach_metrics(&self, metrics: crate::metrics::StoreMetrics);

    /// Makes everything submitted durable, records `last_id`, and stops; later calls fail with
    /// [`StoreError::Closed`]. Never refused for being busy. If what was accepted still cannot
    /// be committed after a bounded final effort, the reply is [`StoreError::NotStored`] with how
    /// many accepted lines were lost.
    fn close(&self, last_id: u64) -> Result<Reply<()>, StoreError>;
}

/// How [`StoreError::NotStored`] reads.
fn not_stored(lines: usize) -> String {
    match lines {
        0 => "the store's last updates could not be saved (no accepted line was among them)".into(),
        1 => "1 accepted line could not be stored".into(),
        n => format!("{n} accepted lines could not be stored"),
    }
}
