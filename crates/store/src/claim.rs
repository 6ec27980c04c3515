//! One worker per ledger. Two workers on one file would both poll every
//! payment and both relay every event: nothing would be lost (the ledger's
//! transactions and finance's dedupe see to that), but providers would be
//! asked twice and finance sent duplicates. So a worker claims the ledger
//! with an advisory lock on a file beside it, held for the life of the
//! process and released by the kernel however the process ends. Operator
//! commands (`reconcile`, `payments`, `ledger check`) do not claim it: they
//! run beside the worker.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// The claim; dropping it releases the ledger.
#[derive(Debug)]
pub struct WorkerClaim {
    _file: File,
    path: PathBuf,
}

impl WorkerClaim {
    /// Claims the ledger at `ledger` for this process's worker, or says
    /// which lock file another process holds.
    pub fn acquire(ledger: &Path) -> Result<WorkerClaim, StoreError> {
        let mut name = ledger.as_os_str().to_owned();
        name.push(".worker.lock");
        let path = PathBuf::from(name);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| StoreError::Open {
                path: parent.display().to_string(),
                error,
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| StoreError::Open {
                path: path.display().to_string(),
                error,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(WorkerClaim { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(StoreError::Claimed {
                ledger: ledger.display().to_string(),
                lock: path.display().to_string(),
            }),
            Err(TryLockError::Error(error)) => Err(StoreError::Open {
                path: path.display().to_string(),
                error,
            }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_until_the_first_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger.sqlite");
        let first = WorkerClaim::acquire(&ledger).unwrap();
        let err = WorkerClaim::acquire(&ledger).unwrap_err();
        assert!(
            matches!(&err, StoreError::Claimed { lock, .. } if lock.ends_with("ledger.sqlite.worker.lock")),
            "{err}"
        );
        assert!(
            err.to_string().contains("another paysettle worker"),
            "{err}"
        );
        drop(first);
        let again = WorkerClaim::acquire(&ledger).unwrap();
        assert!(again.path().ends_with("ledger.sqlite.worker.lock"));
    }
}
