//! The client side of end-to-end conversations: glue between the pure state machine
//! ([`mm_common::e2e::Sessions`]) and the connection. It keeps the identity key, the pins and
//! the sessions' state (ratchets, prekey secrets, which conversations are plain or blocked) in
//! the client's home directory, each file 0600 and written atomically.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use mm_common::e2e::{E2eConfig, Sessions};
use mm_common::identity::{Identity, IdentityError};
use mm_common::pins::Pins;
use mm_common::protocol::nick_key;

use std::sync::Arc;

/// File in the client home holding the identity key (mode 0600).
pub const IDENTITY_FILE: &str = "identity.key";
/// File in the client home holding pinned peer keys (mode 0600).
pub const PINS_FILE: &str = "pins";
/// File in the client home holding the end-to-end state (mode 0600): every session's ratchet,
/// our prekey secrets, which conversations are plain or blocked. Saved before each message is
/// sent or shown ([`mm_common::e2e::Action::Persist`]).
pub const STATE_FILE: &str = "e2e-state";

/// Protocol 5's file of secure conversations, no longer read: its conversations are end-to-end
/// by default now. Removed at the first start of protocol 6 (it named peers).
pub const OLD_CONVERSATIONS_FILE: &str = "conversations";

/// What a client needs for end-to-end sessions. Clones share one set of sessions for the
/// nick they first connect as: a reconnect made with a clone keeps every conversation's state
/// (secure, blocked, key changed) and the pins learnt since the start.
#[derive(Debug, Clone)]
pub struct SecureSetup {
    /// Our long-term key.
    pub identity: Identity,
    /// Pinned peer keys.
    pub pins: Pins,
    /// Where to save the pins when they change (`None`: keep them in memory only).
    pub pins_file: Option<PathBuf>,
    /// The saved state ([`mm_common::e2e::Sessions::state_bytes`]); empty: none yet.
    pub state: zeroize::Zeroizing<Vec<u8>>,
    /// Where to save it when it changes (`None`: keep it in memory only).
    pub state_file: Option<PathBuf>,
    /// Tunables.
    pub config: E2eConfig,
    /// The sessions, made at the first connection and kept by every clone.
    shared: Arc<Mutex<Option<Arc<Secure>>>>,
}

/// The identity or pins file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// I/O on a file.
    #[error("{path}: {}", mm_common::text::os_words(.cause))]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The identity file is damaged.
    #[error("{path}: {cause}")]
    Identity {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        cause: IdentityError,
    },
    /// The pins file is damaged. Refusing to start is safer than forgetting pins, which would
    /// turn a key change into a "new" key.
    #[error("{path}: line {line} is damaged; fix or remove that line (a removed pin means trust on first use again)")]
    Pins {
        /// The file.
        path: PathBuf,
        /// The damaged line.
        line: usize,
    },
    /// The end-to-end state file is damaged. Refusing to start is safer than forgetting the
    /// sessions (peers' messages would become unreadable) or a `/insecure` or a block.
    #[error("{path}: damaged; move it away to start over (your peers' messages sent since your last login will then be unreadable)")]
    State {
        /// The file.
        path: PathBuf,
    },
    /// Writing a file failed.
    #[error(transparent)]
    Write(#[from] mm_certs::CertError),
}

/// Largest home file read (identity, pins: a few bytes per peer; the peer table is bounded far
/// below this).
const MAX_HOME_FILE: u64 = 8 * 1024 * 1024;

/// Largest end-to-end state read: 4,096 peers × 3 sessions with up to 2,000 skipped keys each
/// would be more, but such a state is not reachable in practice; a larger file is refused as
/// damaged rather than read without bound.
const MAX_STATE_FILE: u64 = 256 * 1024 * 1024;

/// A home file's text, read with [`mm_certs::read_limited`] (never a FIFO or a device, never
/// more than [`MAX_HOME_FILE`]); not UTF-8 is an error of kind `InvalidData`.
fn read_text(path: &Path) -> std::io::Result<String> {
    let bytes = mm_certs::read_limited(path, MAX_HOME_FILE)?;
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not text (UTF-8): damaged?",
        )
    })
}

impl SecureSetup {
    /// A fresh identity kept in memory only, with no pins (tests, or no home directory).
    pub fn ephemeral() -> SecureSetup {
        SecureSetup {
            identity: Identity::generate(),
            pins: Pins::default(),
            pins_file: None,
            state: zeroize::Zeroizing::new(Vec::new()),
            state_file: None,
            config: E2eConfig::default(),
            shared: Arc::default(),
        }
    }

    /// Loads the identity and pins from `home`, creating the identity on first run. Returns
    /// whether the identity was created now.
    ///
    /// # Errors
    /// [`HomeError`] for unreadable or damaged files.
    pub fn load(home: &Path) -> Result<(SecureSetup, bool), HomeError> {
        mm_certs::create_private_dir(home).map_err(|source| HomeError::Io {
            path: home.to_path_buf(),
            cause: source,
        })?;
        let id_path = home.join(IDENTITY_FILE);
        let (identity, created) = match read_text(&id_path) {
            Ok(text) => {
                let text = zeroize::Zeroizing::new(text);
                let identity =
                    Identity::from_file_text(&text).map_err(|source| HomeError::Identity {
                        path: id_path.clone(),
                        cause: source,
                    })?;
                (identity, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity::generate();
                mm_certs::write_secret(&id_path, identity.to_file_text().as_bytes())?;
                (identity, true)
            }
            Err(source) => {
                return Err(HomeError::Io {
                    path: id_path,
                    cause: source,
                })
            }
        };
        let pins_path = home.join(PINS_FILE);
        let pins = match read_text(&pins_path) {
            Ok(text) => Pins::from_text(&text).map_err(|line| HomeError::Pins {
                path: pins_path.clone(),
                line,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Pins::default(),
            Err(source) => {
                return Err(HomeError::Io {
                    path: pins_path,
                    cause: source,
                })
            }
        };
        let state_path = home.join(STATE_FILE);
        let state = match mm_certs::read_limited(&state_path, MAX_STATE_FILE) {
            Ok(bytes) => {
                let bytes = zeroize::Zeroizing::new(bytes);
                // Checked now, so that a damaged file stops the client before it connects.
                let mut probe = Sessions::new(
                    "check",
                    identity.clone(),
                    pins.clone(),
                    E2eConfig::default(),
                );
                probe.restore(&bytes).map_err(|_| HomeError::State {
                    path: state_path.clone(),
                })?;
                bytes
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                zeroize::Zeroizing::new(Vec::new())
            }
            Err(source) => {
                return Err(HomeError::Io {
                    path: state_path,
                    cause: source,
                })
            }
        };
        let _ = std::fs::remove_file(home.join(OLD_CONVERSATIONS_FILE));
        Ok((
            SecureSetup {
                identity,
                pins,
                pins_file: Some(pins_path),
                state,
                state_file: Some(state_path),
                config: E2eConfig::default(),
                shared: Arc::default(),
            },
            created,
        ))
    }

    /// Saves what the disk refused so far (see [`crate::Client::unsaved`]), e.g. before exiting.
    ///
    /// # Errors
    /// Why saving still fails.
    pub fn save_pending(&self) -> Result<(), String> {
        let shared = self
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match shared {
            Some(secure) if secure.unsaved().is_some() => secure.save_now(),
            _ => Ok(()),
        }
    }

    /// The sessions for a connection logged in as `me`: the ones this setup (or a clone) made
    /// before if the nick is the same; otherwise new ones, with the saved state restored.
    pub(crate) fn attach(&self, me: &str) -> Arc<Secure> {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let secure = match shared.as_ref() {
            Some(secure) if secure.me == nick_key(me) => Arc::clone(secure),
            _ => {
                let mut sessions = Sessions::new(
                    me,
                    self.identity.clone(),
                    self.pins.clone(),
                    self.config.clone(),
                );
                // Checked when loaded; a setup built by hand with bad bytes restores nothing.
                if !self.state.is_empty() {
                    let _ = sessions.restore(&self.state);
                }
                let secure = Arc::new(Secure {
                    me: nick_key(me),
                    sessions: Mutex::new(sessions),
                    pins_file: self.pins_file.clone(),
                    state_file: self.state_file.clone(),
                    saving: Mutex::new(()),
                    unsaved: Mutex::new(None),
                });
                *shared = Some(Arc::clone(&secure));
                secure
            }
        };
        drop(shared);
        secure
    }
}

/// The end-to-end sessions of one nick and where they are kept: shared by the connections of
/// one process that use clones of one [`SecureSetup`]. The protocol core
/// ([`crate::core::Core`]) drives the sessions; saving (file I/O) happens here, when the core
/// asks for it.
pub struct Secure {
    /// Our nick, folded.
    me: String,
    sessions: Mutex<Sessions>,
    pins_file: Option<PathBuf>,
    state_file: Option<PathBuf>,
    /// Serialises saving: the reader and the handles may save at once, and each file is
    /// written through one temporary name.
    saving: Mutex<()>,
    /// Why saving failed, while the pins and conversations on disk are out of date.
    unsaved: Mutex<Option<String>>,
}

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure").finish_non_exhaustive()
    }
}

impl Secure {
    /// The sessions. Never hold the guard across an `.await`.
    pub(crate) fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Saves the pins and conversations now and records the outcome for
    /// [`Secure::unsaved`].
    ///
    /// # Errors
    /// Why saving failed, in words.
    pub fn save_now(&self) -> Result<(), String> {
        let result = self.save().map_err(|e| e.to_string());
        self.set_unsaved(result.clone().err());
        result
    }

    /// Records why saving failed (`None`: saved); returns what was recorded before.
    pub(crate) fn set_unsaved(&self, why: Option<String>) -> Option<String> {
        std::mem::replace(
            &mut *self.unsaved.lock().unwrap_or_else(|p| p.into_inner()),
            why,
        )
    }

    /// Why the last save failed, while what changed is not saved.
    pub fn unsaved(&self) -> Option<String> {
        self.unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes the pins and the end-to-end state (0600, each atomically and synced).
    ///
    /// # Errors
    /// The write that failed.
    pub fn save(&self) -> Result<(), mm_certs::CertError> {
        let _saving = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        let (pins, state) = {
            let sessions = self.sessions();
            (sessions.pins().to_text(), sessions.state_bytes())
        };
        if let Some(path) = &self.pins_file {
            mm_certs::write_secret(path, pins.as_bytes())?;
        }
        if let Some(path) = &self.state_file {
            mm_certs::write_secret(path, &state)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_private_and_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let (first, created) = SecureSetup::load(&home).unwrap();
        assert!(created);
        let (second, created) = SecureSetup::load(&home).unwrap();
        assert!(!created);
        assert_eq!(first.identity.public(), second.identity.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.join(IDENTITY_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn what_the_disk_refused_is_saved_as_soon_as_it_can_be() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("not-yet");
        let mut setup = SecureSetup::ephemeral();
        setup.pins_file = Some(gone.join(PINS_FILE));
        setup.state_file = Some(gone.join(STATE_FILE));
        let secure = setup.attach("alice");
        assert!(secure.save_now().is_err());
        assert!(secure.unsaved().is_some());
        assert!(setup.save_pending().is_err(), "still failing");
        std::fs::create_dir(&gone).unwrap();
        assert!(setup.save_pending().is_ok());
        assert!(secure.unsaved().is_none());
        let saved = std::fs::read(gone.join(STATE_FILE)).unwrap();
        assert_eq!(saved, *secure.sessions().state_bytes());
    }

    #[test]
    fn the_saved_state_is_private_and_comes_back_at_the_next_start() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        // Protocol 5's list of secure conversations (it named peers) goes at the first start.
        std::fs::create_dir(&home).unwrap();
        std::fs::write(home.join(OLD_CONVERSATIONS_FILE), "secure bob\n").unwrap();
        let (setup, _) = SecureSetup::load(&home).unwrap();
        assert!(!home.join(OLD_CONVERSATIONS_FILE).exists());
        assert!(setup.state.is_empty(), "no state before the first save");
        let secure = setup.attach("alice");
        // A login makes prekeys (their secrets are what a restart must not lose).
        let actions = secure.sessions().login(std::time::Instant::now(), 1);
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, mm_common::e2e::Action::Publish(_))),
            "{actions:?}"
        );
        secure.save().unwrap();
        let saved = secure.sessions().state_bytes();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.join(STATE_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (again, _) = SecureSetup::load(&home).unwrap();
        assert_eq!(*again.state, *saved);
        // Restored into the new process's sessions: the same prekey secrets.
        let restored = again.attach("alice");
        assert_eq!(*restored.sessions().state_bytes(), *saved);
    }

    #[test]
    fn damaged_files_stop_the_client_instead_of_losing_trust() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(PINS_FILE), "bob nothex verified\n").unwrap();
        assert!(matches!(
            SecureSetup::load(tmp.path()),
            Err(HomeError::Pins { line: 1, .. })
        ));
        std::fs::remove_file(tmp.path().join(PINS_FILE)).unwrap();
        std::fs::write(tmp.path().join(IDENTITY_FILE), "garbage").unwrap();
        assert!(matches!(
            SecureSetup::load(tmp.path()),
            Err(HomeError::Identity { .. })
        ));
        std::fs::remove_file(tmp.path().join(IDENTITY_FILE)).unwrap();
        // A damaged end-to-end state is refused, not replaced by an empty one (that would
        // forget sessions, prekeys, /insecure and blocks), and left in place.
        std::fs::write(tmp.path().join(STATE_FILE), b"\x07not postcard").unwrap();
        assert!(matches!(
            SecureSetup::load(tmp.path()),
            Err(HomeError::State { .. })
        ));
        assert!(tmp.path().join(STATE_FILE).exists());
    }
}
