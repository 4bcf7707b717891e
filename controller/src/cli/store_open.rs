//! Opening the store the command line asks for.

use std::path::PathBuf;
use std::sync::Arc;

use coord::Coordination;

use super::{Failure, StoreArgs};
use crate::store::Store;

/// The embedded store's default directory.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("tritonctl");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/tritonctl")
}

/// An open store, and what keeps it alive (the embedded ensemble and its
/// directory lock live as long as this value).
pub struct OpenStore {
    pub store: Store,
    pub description: String,
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

pub async fn open(args: &StoreArgs) -> Result<OpenStore, Failure> {
    if let Some(hosts) = &args.zk {
        let zk = coord::zk::ZkCoordination::connect(hosts, args.session_timeout)
            .await
            .map_err(|e| Failure::error(format!("cannot connect to ZooKeeper at {hosts}: {e}")))?;
        let coord: Arc<dyn Coordination> = zk;
        let store = Store::new(coord);
        store.init().await?;
        return Ok(OpenStore {
            store,
            description: format!("zookeeper {hosts}"),
            _keep: None,
        });
    }
    let dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::error(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    let lock = DirLock::acquire(&dir)?;
    let ensemble = coord::mem::MemEnsemble::open(&dir).map_err(|e| {
        Failure::error(format!(
            "cannot open the embedded store in {}: {e}",
            dir.display()
        ))
    })?;
    let session: Arc<dyn Coordination> = ensemble.connect();
    let store = Store::new(session);
    store.init().await?;
    Ok(OpenStore {
        store,
        description: format!("embedded store {}", dir.display()),
        _keep: Some(Box::new((ensemble, lock))),
    })
}

/// One process at a time owns an embedded store directory: the in-process
/// ensemble caches the tree, so two writers would lose each other's updates.
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    pub fn acquire(dir: &std::path::Path) -> Result<DirLock, Failure> {
        use std::os::fd::AsRawFd;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Failure::error(format!("cannot open {}: {e}", path.display())))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(Failure::error(format!(
                "the embedded store in {} is in use by another tritonctl process (a running controller or demo?); \
                 use that process, or --zk to share a ZooKeeper store",
                dir.display()
            )));
        }
        Ok(DirLock { _file: file })
    }
}
