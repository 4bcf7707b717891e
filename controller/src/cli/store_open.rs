//! Opening the store the command line asks for.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

/// An open store, and what keeps it alive (the embedded ensemble lives as
/// long as this value).
pub struct OpenStore {
    pub store: Store,
    pub description: String,
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

pub async fn open(args: &StoreArgs) -> Result<OpenStore, Failure> {
    if let Some(hosts) = &args.zk {
        // As the identity the environment names, if any (`crate::auth`).
        let connected = crate::auth::connect_zk(hosts, args.session_timeout)
            .await
            .map_err(|e| Failure::error(e.to_string()))?;
        let store = Store::new(connected.coord).with_principal(connected.principal);
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
    let options = coord::SharedOptions {
        write_timeout: write_timeout()?,
        on_wait: Some(Arc::new(say_waiting)),
        ..Default::default()
    };
    // Other tritonctl processes may use the directory at the same time:
    // readers and watchers never block a writer, and writers take turns.
    let ensemble = coord::mem::MemEnsemble::open_shared(&dir, options).map_err(|e| {
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
        _keep: Some(Box::new(ensemble)),
    })
}

/// Environment variable: how long a write to the embedded store waits for
/// another process's write to finish (a duration such as `30s`).
pub const WRITE_TIMEOUT_ENV: &str = "TRITONCTL_STORE_WAIT";

/// How long a write waits for another process's write lock by default.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

fn write_timeout() -> Result<Duration, Failure> {
    match std::env::var(WRITE_TIMEOUT_ENV) {
        Ok(v) if !v.trim().is_empty() => super::parse_duration(v.trim())
            .map_err(|e| Failure::invalid(format!("{WRITE_TIMEOUT_ENV}={v}: {e}"))),
        _ => Ok(DEFAULT_WRITE_TIMEOUT),
    }
}

/// Say once per process, on stderr, that a write waits for another process.
fn say_waiting(dir: &Path) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!(
            "waiting for another tritonctl process to finish writing the embedded store in {} \
             (up to {}; {WRITE_TIMEOUT_ENV} sets how long)",
            dir.display(),
            humantime(write_timeout().unwrap_or(DEFAULT_WRITE_TIMEOUT))
        );
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
