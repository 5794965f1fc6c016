//! The client's home directory: what it must remember between runs (accepted server
//! fingerprints, the identity key, pinned peer keys). Copying it moves a user to another
//! machine. Created private (0700) with `mm_certs::create_private_dir`.

use std::path::PathBuf;

/// `$MM_HOME`, else `<data dir>/multi-messenger/client` (on Linux
/// `~/.local/share/multi-messenger/client`).
pub fn default_home() -> Option<PathBuf> {
    match std::env::var_os("MM_HOME") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::data_dir().map(|d| d.join("multi-messenger").join("client")),
    }
}
