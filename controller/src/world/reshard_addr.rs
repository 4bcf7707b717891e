//! Where the resharding reaches a zone's services: an electric-moray's
//! status server and a postgres zone's PostgreSQL.
//!
//! A real controller takes the zone's admin IP from VMAPI (its primary
//! NIC) and the service's well-known port: electric-moray's first
//! process serves `/status` on 4021 (em:smf manifest, research
//! resharding.md §3.5), PostgreSQL listens on 5432 (the cluster state's
//! `pgUrl`, manta-reshard's sentinel read). A zone whose VM record
//! carries an explicit address (`internal_metadata` keys below) is
//! reached there instead: the simulator's services all listen on
//! 127.0.0.1, one port each, and record it on the VM where this lookup
//! already reads the zone's address.

use async_trait::async_trait;
use reconcilers::error::WorldError;
use wire::apis::Vm;

use crate::clients::Triton;
use crate::world::e;

/// `host:port` of a zone's electric-moray status server, when not the default.
pub const EM_STATUS_ADDRESS_KEY: &str = "tritonctl:em-status-address";
/// A libpq connection string of a zone's PostgreSQL, when not the default.
pub const PG_CONNINFO_KEY: &str = "tritonctl:pg-conninfo";
/// electric-moray's first status port.
pub const EM_STATUS_PORT: u16 = 4021;
pub const PG_PORT: u16 = 5432;

/// Addresses of a zone's services.
#[async_trait]
pub trait ZoneAddresses: Send + Sync {
    /// `http://host:port` of the zone's electric-moray status server.
    async fn em_status_url(&self, zone: &str) -> Result<String, WorldError>;
    /// A connection string for the zone's PostgreSQL (user postgres).
    async fn pg_conninfo(&self, zone: &str) -> Result<String, WorldError>;
}

/// The addresses VMAPI gives.
pub struct VmapiAddresses {
    pub triton: Triton,
}

fn admin_ip(vm: &Vm) -> Result<String, WorldError> {
    vm.nics
        .iter()
        .find(|n| n.primary)
        .or_else(|| vm.nics.first())
        .map(|n| n.ip.clone())
        .ok_or_else(|| WorldError::Missing(format!("zone {} has no NIC in VMAPI", vm.uuid)))
}

fn explicit(vm: &Vm, key: &str) -> Option<String> {
    vm.internal_metadata
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

#[async_trait]
impl ZoneAddresses for VmapiAddresses {
    async fn em_status_url(&self, zone: &str) -> Result<String, WorldError> {
        let vm = self.triton.vmapi.vm(zone).await.map_err(e)?;
        Ok(match explicit(&vm, EM_STATUS_ADDRESS_KEY) {
            Some(a) => format!("http://{a}"),
            None => format!("http://{}:{EM_STATUS_PORT}", admin_ip(&vm)?),
        })
    }

    async fn pg_conninfo(&self, zone: &str) -> Result<String, WorldError> {
        let vm = self.triton.vmapi.vm(zone).await.map_err(e)?;
        Ok(match explicit(&vm, PG_CONNINFO_KEY) {
            Some(c) => c,
            None => format!(
                "host={} port={PG_PORT} user=postgres dbname=postgres connect_timeout=5",
                admin_ip(&vm)?
            ),
        })
    }
}
