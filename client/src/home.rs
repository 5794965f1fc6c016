//! The client's home directory: where it keeps what it must remember between runs (accepted
//! server fingerprints today). Copy it to move to another machine.

use std::path::{Path, PathBuf};

/// `$MM_HOME`, else `<data dir>/multi-messenger/client` (on Linux
/// `~/.local/share/multi-messenger/client`).
pub fn default_home() -> Option<PathBuf> {
    match std::env::var_os("MM_HOME") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::data_dir().map(|d| d.join("multi-messenger").join("client")),
    }
}

/// Creates `dir` (and parents) if missing; a directory created here is private (0700).
///
/// # Errors
/// I/O errors.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
