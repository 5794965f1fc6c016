//! What the server keeps across restarts: accounts (nick → client-certificate fingerprint), the
//! room's recent public history, and private lines waiting for offline users.
//!
//! The hub talks to storage through the narrow [`Store`] trait so that another backend (e.g.
//! PostgreSQL for several server nodes) can be added without touching the hub or the sessions.
//! Every call only *submits* work and never blocks: the hub calls it while holding its lock, so
//! that the store sees operations in exactly the order the hub decided them (a private line
//! queued for bob before bob's login fetched his mailbox is always in that mailbox). Answers
//! come back on a oneshot channel once the work is durable.
//!
//! The backend is [`sqlite::SqliteStore`]; [`memory::MemoryStore`] keeps nothing, for tests.

pub mod memory;
pub mod sqlite;

use tokio::sync::oneshot;

/// A stored chat line: public history or a private line waiting for its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The message id the hub gave it.
    pub id: u64,
    /// When the server accepted it, ms since the Unix epoch.
    pub ts: u64,
    /// Sender nick.
    pub from: String,
    /// The text.
    pub text: String,
}

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The nick, spelled as at its last login.
    pub nick: String,
    /// SHA-256 fingerprint of the client certificate that owns it.
    pub fingerprint: String,
    /// When it was registered, ms since the Unix epoch.
    pub created_ms: u64,
    /// When it last logged in or out, ms since the Unix epoch.
    pub last_seen_ms: u64,
    /// Private lines waiting for it.
    pub waiting: u64,
}

/// The outcome of a login against the accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The nick was free and now belongs to this fingerprint.
    Registered,
    /// The nick already belongs to this fingerprint.
    Known,
    /// The nick belongs to another fingerprint.
    Taken,
    /// The nick is free but the store holds as many accounts as allowed.
    Full,
}

/// The outcome of storing a private line for an offline user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutcome {
    /// Stored; delivered at the recipient's next login.
    Queued,
    /// The recipient's mailbox holds as many lines as allowed.
    MailboxFull,
    /// Nobody has registered that nick.
    NoSuchAccount,
    /// The store holds as many waiting lines, for all users together, as allowed.
    StoreFull,
}

/// What the server needs from the store when it starts.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The most recent public lines, oldest first.
    pub history: Vec<Line>,
    /// The highest message id ever given out; new ids continue after it.
    pub last_id: u64,
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
    #[error("the store {path} is in use by another process ({detail}); is another mm-server running with this data directory?")]
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
    /// More work is waiting than the store accepts; the caller should refuse, not wait.
    #[error("the store is busy")]
    Busy,
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
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Logs `nick` in with certificate `fingerprint`: registers the nick if it is free, checks
    /// the owner otherwise, and records the time.
    fn login(
        &self,
        nick: &str,
        fingerprint: &str,
        now_ms: u64,
    ) -> Result<Reply<LoginOutcome>, StoreError>;

    /// The private lines waiting for `nick_key`, oldest first. They stay stored until
    /// [`Store::delivered`].
    fn waiting(&self, nick_key: &str) -> Result<Reply<Vec<Line>>, StoreError>;

    /// Deletes the waiting lines of `nick_key` up to id `up_to`: they reached the user.
    fn delivered(&self, nick_key: &str, up_to: u64) -> Result<(), StoreError>;

    /// Records that `nick_key` logged out now.
    fn logged_out(&self, nick_key: &str, now_ms: u64) -> Result<(), StoreError>;

    /// Appends a public line to the history (which keeps the most recent lines only).
    fn append_public(&self, line: Line) -> Result<(), StoreError>;

    /// Stores a private line for the offline user `to_key`.
    fn queue_private(&self, to_key: &str, line: Line) -> Result<Reply<QueueOutcome>, StoreError>;

    /// Makes everything submitted durable, records `last_id`, and stops; later calls fail with
    /// [`StoreError::Closed`].
    fn close(&self, last_id: u64) -> Result<Reply<()>, StoreError>;
}
