//! The client's home directory: what it must remember between runs (accepted server
//! fingerprints, the identity key, pinned peer keys, the client certificate). Copying it moves a
//! user to another machine. Created private (0700) with `mm_certs::create_private_dir`; every
//! file in it is private (0600), and [`tighten`] makes an older home so.
//!
//! One home is one identity, so:
//! - each nick gets its own default home, `<data dir>/multi-messenger/users/<nick>` (the nick
//!   folded to lower case after validation: only `a-z 0-9 _ -`, so never a path of its own);
//! - a running `mm` holds an exclusive lock on [`LOCK_FILE`] in its home for its whole life, so a
//!   second `mm` on the same home stops before it touches anything (two writers would lose pins
//!   or accepted servers, and two clients with one certificate knock each other off the server);
//! - the single default home of older versions, `<data dir>/multi-messenger/client`, is adopted
//!   by the first nick that starts without a home of its own, which is recorded in its
//!   [`NICK_FILE`]; other nicks get their own.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use mm_common::protocol::{nick_key, validate_nick};

/// File in a home that a running `mm` keeps locked (it holds that process's id, for the message
/// a second one shows).
pub const LOCK_FILE: &str = "lock";

/// File in a home naming the nick it belongs to (written at its first use; in the old default
/// home, by the nick that adopted it).
pub const NICK_FILE: &str = "nick";

/// The files `mm` keeps in its home directory (all private, 0600).
pub const HOME_FILES: [&str; 8] = [
    crate::secure::IDENTITY_FILE,
    crate::secure::PINS_FILE,
    crate::secure::STATE_FILE,
    crate::trust::KNOWN_SERVERS,
    mm_certs::CLIENT_CERT,
    mm_certs::CLIENT_KEY,
    LOCK_FILE,
    NICK_FILE,
];

/// Tightens `home` (0700) and [`HOME_FILES`] in it (0600) where an older version (which wrote
/// `client.pem` 0644) or a loose umask left them readable by others. Returns what it changed or
/// could not change, one line each, to tell the user.
pub fn tighten(home: &Path) -> Vec<String> {
    mm_certs::tighten(home, &HOME_FILES)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Folder of per-nick homes under the data directory's `multi-messenger`.
const USERS_DIR: &str = "users";

/// The single default home of versions before per-nick homes, under `multi-messenger`.
const OLD_HOME_DIR: &str = "client";

/// `$MM_HOME` if set: one home chosen by the user, whatever the nick.
pub fn env_home() -> Option<PathBuf> {
    match std::env::var_os("MM_HOME") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => None,
    }
}

/// Where default homes live: `<data dir>/multi-messenger` (on Linux
/// `$XDG_DATA_HOME/multi-messenger`, else `~/.local/share/multi-messenger`).
pub fn default_base() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("multi-messenger"))
}

/// `$MM_HOME`, else `nick`'s own default home under [`default_base`] (no migration: see
/// [`Home::open_default`] for what `mm` uses).
pub fn default_home(nick: &str) -> Option<PathBuf> {
    env_home().or_else(|| {
        let base = default_base()?;
        nick_home(&base, nick).ok()
    })
}

/// `base/users/<folded nick>`; the nick is validated first, so it is one plain path component.
///
/// # Errors
/// [`HomeError::BadNick`] when `nick` is not a valid nick.
pub fn nick_home(base: &Path, nick: &str) -> Result<PathBuf, HomeError> {
    validate_nick(nick).map_err(|e| HomeError::BadNick(e.to_string()))?;
    let folded = nick_key(nick);
    // validate_nick allows only ASCII letters, digits, `_` and `-`; say so again where a path is
    // built from it.
    if !folded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(HomeError::BadNick(format!("{nick:?} is not a plain name")));
    }
    Ok(base.join(USERS_DIR).join(folded))
}

/// Why a home cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// Another `mm` holds the home's lock.
    #[error("{} is in use by another mm{}; one home is one user's identity: use that mm or quit it first, and give every other user a home of their own (each --nick gets one by default; or --home DIR)", .home.display(), .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse {
        /// The home.
        home: PathBuf,
        /// The process holding it, if it could be read.
        pid: Option<u32>,
    },
    /// I/O on the home or its lock file.
    #[error("{}: {error}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause (said in the message, so not a `source` too: it would print twice).
        error: std::io::Error,
    },
    /// The nick cannot name a home.
    #[error("{0}")]
    BadNick(String),
    /// The home belongs to another nick (its [`NICK_FILE`]): one home is one identity, and its
    /// secure conversations and pins are that nick's.
    #[error("{} is {owner}'s home: its identity, pinned keys and secure conversations are {owner}'s; use --nick {owner}, or give {nick} a home of its own (no --home, or --home NEW_DIR)", .home.display())]
    OtherNick {
        /// The home.
        home: PathBuf,
        /// The nick it belongs to.
        owner: String,
        /// The nick asked for.
        nick: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |error| HomeError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A home directory this process holds locked until it is dropped.
#[derive(Debug)]
pub struct Home {
    path: PathBuf,
    /// Held for the lock; closing it (at drop or exit) releases the lock.
    _lock: Option<File>,
    /// Something to tell the user once (adopted an old home, the lock is unsupported...).
    notes: Vec<String>,
    /// The nick this process recorded as the adopter of an old home, to undo if the server says
    /// the home's certificate is not that nick's.
    claimed: Option<PathBuf>,
}

impl Home {
    /// Creates `path` (0700) if needed and locks it.
    ///
    /// # Errors
    /// [`HomeError::InUse`] when another `mm` holds it; I/O errors.
    pub fn open(path: &Path) -> Result<Home, HomeError> {
        mm_certs::create_private_dir(path).map_err(io(path))?;
        let mut notes = Vec::new();
        let lock = lock(path, &mut notes)?;
        Ok(Home {
            path: path.to_path_buf(),
            _lock: lock,
            notes,
            claimed: None,
        })
    }

    /// The default home for `nick` under `base`: its own (`base/users/<nick>`) when it exists;
    /// else the old single default home (`base/client`) when that exists and no other nick
    /// adopted it (adopting it now, recorded in its [`NICK_FILE`]); else a new own home.
    ///
    /// # Errors
    /// [`HomeError::InUse`] when the chosen home is held by another `mm` (or the old home is
    /// held by one and not adopted yet, so whose it is cannot be decided); I/O errors; an
    /// invalid nick.
    pub fn open_default(base: &Path, nick: &str) -> Result<Home, HomeError> {
        let own = nick_home(base, nick)?;
        let folded = nick_key(nick);
        if own.is_dir() {
            return Home::open(&own);
        }
        let old = base.join(OLD_HOME_DIR);
        if old.is_dir() {
            // Cheap look first: an old home another nick adopted is left alone, even in use.
            let owner = read_owner(&old)?;
            if owner.is_none() || owner.as_deref() == Some(folded.as_str()) {
                let mut home = Home::open(&old)?;
                // Under the lock now: look again (another mm may have adopted it meanwhile).
                match read_owner(&old)? {
                    Some(owner) if owner == folded => return Ok(home),
                    Some(_) => {} // just adopted by another nick: drop the lock, make our own
                    None => {
                        let file = old.join(NICK_FILE);
                        mm_certs::write_secret(&file, format!("{folded}\n").as_bytes()).map_err(
                            |e| HomeError::Io {
                                path: file.clone(),
                                error: std::io::Error::other(e.to_string()),
                            },
                        )?;
                        home.claimed = Some(file);
                        home.notes.push(format!(
                            "using {} as {nick}'s home: it was made by an older mm, before each nick had a home of its own ({}); it now belongs to {nick} (recorded in its `{NICK_FILE}` file), other nicks get their own",
                            old.display(),
                            base.join(USERS_DIR).join("NICK").display()
                        ));
                        return Ok(home);
                    }
                }
            }
        }
        mm_certs::create_private_dir(&base.join(USERS_DIR)).map_err(io(&base.join(USERS_DIR)))?;
        Home::open(&own)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Binds the home to `nick` at its first use (its [`NICK_FILE`]); a home that belongs to
    /// another nick is refused. A copy of alice's home used as carol would otherwise carry
    /// alice's identity, pins and secure conversations into carol's name. Returns whether this
    /// call bound it (its first use): see [`Home::unclaim`].
    ///
    /// # Errors
    /// [`HomeError::OtherNick`]; I/O errors.
    pub fn claim(&self, nick: &str) -> Result<bool, HomeError> {
        let folded = nick_key(nick);
        match read_owner(&self.path)? {
            Some(owner) if owner == folded => Ok(false),
            Some(owner) => Err(HomeError::OtherNick {
                home: self.path.clone(),
                owner: if owner.is_empty() {
                    "another nick".into()
                } else {
                    owner
                },
                nick: nick.to_owned(),
            }),
            None => {
                let file = self.path.join(NICK_FILE);
                mm_certs::write_secret(&file, format!("{folded}\n").as_bytes()).map_err(|e| {
                    HomeError::Io {
                        path: file.clone(),
                        error: std::io::Error::other(e.to_string()),
                    }
                })?;
                Ok(true)
            }
        }
    }

    /// Unbinds a home that [`Home::claim`] bound in this run, when the server refused the nick
    /// (registered to someone else, too like another, invalid): the home was never that nick's,
    /// and the user's next try with another `--nick` may use it.
    ///
    /// # Errors
    /// I/O errors removing its [`NICK_FILE`].
    pub fn unclaim(&self) -> Result<(), HomeError> {
        let file = self.path.join(NICK_FILE);
        std::fs::remove_file(&file).map_err(io(&file))
    }

    /// Things to tell the user once, taken.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Whether this run adopted the old default home for its nick.
    pub fn adopted(&self) -> bool {
        self.claimed.is_some()
    }

    /// Undoes this run's adoption of the old default home (the server says its certificate
    /// owns another nick), so the nick it belongs to can still adopt it.
    pub fn undo_adoption(&mut self) -> Result<(), HomeError> {
        match self.claimed.take() {
            Some(file) => std::fs::remove_file(&file).map_err(io(&file)),
            None => Ok(()),
        }
    }
}

/// The home [`Home::open_default`] would use for `nick` under `base`, found without creating,
/// adopting or locking anything (for `mm trust`, which reads and rewrites one file in it): its
/// own home when it exists; else the old default home when it is `nick`'s or nobody's yet;
/// else its own (perhaps not made yet).
///
/// # Errors
/// An invalid nick; I/O errors reading the old home's [`NICK_FILE`].
pub fn locate_default(base: &Path, nick: &str) -> Result<PathBuf, HomeError> {
    let own = nick_home(base, nick)?;
    if own.is_dir() {
        return Ok(own);
    }
    let old = base.join(OLD_HOME_DIR);
    if old.is_dir() {
        let owner = read_owner(&old)?;
        if owner.is_none() || owner.as_deref() == Some(nick_key(nick).as_str()) {
            return Ok(old);
        }
    }
    Ok(own)
}

/// The nick named in a home's [`NICK_FILE`], if any (folded; a damaged file counts as someone
/// else's, so it is never adopted twice).
fn read_owner(home: &Path) -> Result<Option<String>, HomeError> {
    let path = home.join(NICK_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(nick_key(text.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(Some(String::new())),
        Err(error) => Err(HomeError::Io { path, error }),
    }
}

/// The nick that adopted the old default home under `base`, if one did: for the advice given
/// when a nick is refused as registered to another certificate.
pub fn old_home_owner(base: &Path) -> Option<(PathBuf, String)> {
    let old = base.join(OLD_HOME_DIR);
    match read_owner(&old) {
        Ok(Some(owner)) => Some((old, owner)),
        _ => None,
    }
}

/// Takes the exclusive lock on `home`'s [`LOCK_FILE`] (an advisory `flock`/`LockFileEx`,
/// released by the OS however the process ends, so a crash never leaves a stale lock) and
/// writes our pid into it. A file system without locks gets a note, not a refusal.
fn lock(home: &Path, notes: &mut Vec<String>) -> Result<Option<File>, HomeError> {
    let path = home.join(LOCK_FILE);
    let mut options = OpenOptions::new();
    // Never truncated on open: the holder's pid stays readable for the message.
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(HomeError::InUse {
                home: home.to_path_buf(),
                pid,
            });
        }
        Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
            notes.push(format!(
                "cannot lock {} on this file system ({e}); do not run two mm on this home at once",
                path.display()
            ));
            return Ok(None);
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
    }
    // Ours now: say who holds it. A failure here only loses the pid in another mm's message.
    let _ = file
        .set_len(0)
        .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()));
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_home_is_refused_with_the_holders_pid_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let first = Home::open(tmp.path()).unwrap();
        match Home::open(tmp.path()) {
            Err(HomeError::InUse { home, pid }) => {
                assert_eq!(home, tmp.path());
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        Home::open(tmp.path()).unwrap();
    }

    #[test]
    fn each_nick_has_its_own_home_named_by_its_folded_nick() {
        let base = Path::new("/data/multi-messenger");
        assert_eq!(
            nick_home(base, "Alice").unwrap(),
            base.join("users").join("alice")
        );
        for bad in ["../x", "a/b", "", ".", "a.b", "é"] {
            assert!(nick_home(base, bad).is_err(), "{bad:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn homes_and_the_lock_file_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::open_default(tmp.path(), "alice").unwrap();
        for (path, want) in [
            (tmp.path().join("users"), 0o700),
            (home.path().to_path_buf(), 0o700),
            (home.path().join(LOCK_FILE), 0o600),
        ] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, want, "{}", path.display());
        }
    }

    #[test]
    fn the_old_default_home_goes_to_the_first_nick_only() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let old = base.join("client");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("client.pem"), "x").unwrap();

        let mut alice = Home::open_default(base, "Alice").unwrap();
        assert_eq!(alice.path(), old);
        assert!(alice.adopted());
        assert_eq!(alice.take_notes().len(), 1, "told once");
        // bob, while alice runs: a home of his own, not an "in use" error.
        let bob = Home::open_default(base, "bob").unwrap();
        assert_eq!(bob.path(), base.join("users").join("bob"));
        drop((alice, bob));
        // alice again: the old home, nothing more to say.
        let mut again = Home::open_default(base, "ALICE").unwrap();
        assert_eq!(again.path(), old);
        assert!(!again.adopted());
        assert!(again.take_notes().is_empty());
        drop(again);
        // An own home, once there, wins.
        std::fs::create_dir_all(base.join("users").join("alice")).unwrap();
        let own = Home::open_default(base, "alice").unwrap();
        assert_eq!(own.path(), base.join("users").join("alice"));
    }

    #[test]
    fn locating_a_default_home_finds_what_opening_it_would_and_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        assert_eq!(
            locate_default(base, "Alice").unwrap(),
            base.join("users").join("alice")
        );
        assert!(!base.join("users").exists(), "nothing made");
        std::fs::create_dir_all(base.join("client")).unwrap();
        assert_eq!(locate_default(base, "alice").unwrap(), base.join("client"));
        assert!(!base.join("client").join(NICK_FILE).exists(), "not adopted");
        let alice = Home::open_default(base, "alice").unwrap();
        assert_eq!(locate_default(base, "alice").unwrap(), alice.path());
        assert_eq!(
            locate_default(base, "bob").unwrap(),
            base.join("users").join("bob")
        );
        drop(alice);
        let bob = Home::open_default(base, "bob").unwrap();
        assert_eq!(locate_default(base, "bob").unwrap(), bob.path());
    }

    #[test]
    fn an_undone_adoption_leaves_the_old_home_to_the_next_nick() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        std::fs::create_dir_all(base.join("client")).unwrap();
        let mut bob = Home::open_default(base, "bob").unwrap();
        assert!(bob.adopted());
        bob.undo_adoption().unwrap();
        drop(bob);
        let alice = Home::open_default(base, "alice").unwrap();
        assert_eq!(alice.path(), base.join("client"));
        assert!(alice.adopted());
    }

    #[test]
    fn an_old_home_in_use_and_unadopted_is_not_guessed_at() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let old = base.join("client");
        // Held by another mm between taking the lock and recording its nick.
        let held = Home::open(&old).unwrap();
        assert!(matches!(
            Home::open_default(base, "bob"),
            Err(HomeError::InUse { home, .. }) if home == old
        ));
        assert!(!old.join(NICK_FILE).exists());
        drop(held);
    }
}
