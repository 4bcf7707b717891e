//! Whether a shard can serve a read or a write right now. Moray can only
//! write through a manatee primary (and commit only with a sync), so the
//! manatee simulation plugs in here; [`ShardFaults`] is the hand-driven one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::MantaError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

/// Decides, per request, whether the shard behind `pnode` is usable.
#[async_trait]
pub trait ShardBackend: Send + Sync {
    async fn check(&self, pnode: &str, access: Access) -> Result<(), MantaError>;
}

/// Every shard always up.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllUp;

#[async_trait]
impl ShardBackend for AllUp {
    async fn check(&self, _pnode: &str, _access: Access) -> Result<(), MantaError> {
        Ok(())
    }
}

/// A fault injected on one shard (or all, see [`ShardFaults::set_all`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardFault {
    /// No primary: reads and writes fail with `NoDatabasePeersError`.
    NoPrimary,
    /// Postgres unreachable: `NoDatabaseError` for everything.
    NoDatabase,
    /// Primary without a sync: reads work, writes time out.
    WritesHang,
    /// Everything works, slowly.
    Latency(Duration),
}

/// Faults set and cleared by hand (tests, `tritonctl sim`).
#[derive(Debug, Default)]
pub struct ShardFaults {
    by_pnode: Mutex<HashMap<String, ShardFault>>,
    all: Mutex<Option<ShardFault>>,
}

impl ShardFaults {
    pub fn new() -> ShardFaults {
        ShardFaults::default()
    }

    pub fn set(&self, pnode: &str, fault: Option<ShardFault>) {
        let mut m = self.by_pnode.lock().expect("faults lock");
        match fault {
            Some(f) => m.insert(pnode.to_owned(), f),
            None => m.remove(pnode),
        };
    }

    /// A fault for every shard; a per-shard fault takes precedence.
    pub fn set_all(&self, fault: Option<ShardFault>) {
        *self.all.lock().expect("faults lock") = fault;
    }

    pub fn clear(&self) {
        self.by_pnode.lock().expect("faults lock").clear();
        self.set_all(None);
    }

    fn fault_for(&self, pnode: &str) -> Option<ShardFault> {
        let m = self.by_pnode.lock().expect("faults lock");
        m.get(pnode)
            .cloned()
            .or_else(|| self.all.lock().expect("faults lock").clone())
    }
}

#[async_trait]
impl ShardBackend for ShardFaults {
    async fn check(&self, pnode: &str, access: Access) -> Result<(), MantaError> {
        match self.fault_for(pnode) {
            None => Ok(()),
            Some(ShardFault::NoPrimary) => Err(MantaError::NoDatabasePeers {
                pnode: pnode.into(),
            }),
            Some(ShardFault::NoDatabase) => Err(MantaError::NoDatabase {
                pnode: pnode.into(),
            }),
            Some(ShardFault::WritesHang) if access == Access::Write => {
                Err(MantaError::QueryTimeout {
                    pnode: pnode.into(),
                    statement: "INSERT".into(),
                })
            }
            Some(ShardFault::WritesHang) => Ok(()),
            Some(ShardFault::Latency(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }
}
