//! The lock file beside the store (`path` + `.lock`): held for the store's life, so that a
//! second server on the same store is refused at start.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// Takes the store's lock file, or says who has it.
pub(super) fn lock_file(path: &Path) -> Result<File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mm_certs::PRIVATE_FILE_MODE);
    }
    let file = options.open(&lock_path).map_err(|e| StoreError::Open {
        path: lock_path.clone(),
        detail: e.to_string(),
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_path_buf(),
            detail: format!("{} is held", lock_path.display()),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Open {
            path: lock_path,
            detail: e.to_string(),
        }),
    }
}
