//! What the status and the web view observe of the datacenter, beside the
//! store: reads only. [`Observe`] hands out the review's observing
//! [`World`] (manatee shards, the ring image) and reads CNAPI and VMAPI
//! for the headnodes and the core instances on each; nothing here can
//! change the datacenter.

use std::sync::Arc;

use async_trait::async_trait;
use wire::apis::VmState;

use super::view::{HeadnodeView, InstanceView, Members};
use crate::clients::{Endpoints, Triton, Unguarded};
use crate::gitops::observed::{Live, World};
use crate::store::Store;
use crate::world::manatee::TritonManatee;

/// The datacenter, read-only.
#[async_trait]
pub trait Observe: Send + Sync {
    /// What is observed (endpoints; never a credential).
    fn source(&self) -> String;
    /// The review's world: manatee shards, images, the ring image.
    fn world(&self) -> &dyn World;
    /// CNAPI's headnodes and the core instances (VMs with a `smartdc_role`) on each.
    async fn headnodes(&self) -> Result<Vec<HeadnodeView>, String>;
    /// Instances of a core role (VMAPI `tag.smartdc_role`), running or not.
    async fn role(&self, role: &str) -> Result<Members, String>;
    /// A ring image from IMGAPI, as electric-moray loads it.
    async fn ring_image(&self, uuid: &str) -> Result<wire::fash::Ring, String>;
}

/// The live datacenter through the real clients (no mutation guard is
/// needed: nothing here sends one) and the store's ZooKeeper.
pub struct LiveObserve {
    live: Live,
    triton: Triton,
    description: String,
}

impl LiveObserve {
    pub fn new(store: &Store, endpoints: &Endpoints, zk: &str) -> LiveObserve {
        let triton = Triton::new(endpoints, Arc::new(Unguarded));
        let description = crate::gitops::redact::redact_urls(&format!(
            "SAPI {} VMAPI {} CNAPI {} IMGAPI {}, manatee state in {zk}",
            endpoints.sapi, endpoints.vmapi, endpoints.cnapi, endpoints.imgapi
        ));
        // Reviews only observe: `Live` hands out observing traits only.
        let live = Live::new(
            TritonManatee {
                triton: triton.clone(),
                coord: store.coord().clone(),
                fence: None,
            },
            description.clone(),
        );
        LiveObserve {
            live,
            triton,
            description,
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    crate::gitops::redact::redact_urls(&e.to_string())
}

#[async_trait]
impl Observe for LiveObserve {
    fn source(&self) -> String {
        self.description.clone()
    }

    fn world(&self) -> &dyn World {
        &self.live
    }

    async fn headnodes(&self) -> Result<Vec<HeadnodeView>, String> {
        let (servers, _) = self.triton.cnapi.servers().await.map_err(err)?.lenient();
        let mut out = Vec::new();
        for s in servers.into_iter().filter(|s| s.headnode) {
            let (vms, _) = self
                .triton
                .vmapi
                .vms(&[("server_uuid", s.uuid.clone())])
                .await
                .map_err(err)?
                .lenient();
            let mut instances: Vec<InstanceView> = vms
                .iter()
                .filter(|vm| vm.state != VmState::Destroyed)
                .filter_map(|vm| {
                    let role = vm.tag_str("smartdc_role")?;
                    Some(InstanceView {
                        alias: vm.alias.clone().unwrap_or_else(|| vm.uuid.clone()),
                        role: role.to_string(),
                        state: vm.state.as_str().to_string(),
                        uuid: vm.uuid.clone(),
                    })
                })
                .collect();
            instances.sort_by(|a, b| (&a.role, &a.alias).cmp(&(&b.role, &b.alias)));
            out.push(HeadnodeView {
                hostname: s.hostname.clone(),
                uuid: s.uuid.clone(),
                status: format!("{:?}", s.status).to_lowercase(),
                instances,
            });
        }
        out.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        Ok(out)
    }

    async fn role(&self, role: &str) -> Result<Members, String> {
        let (vms, _) = self
            .triton
            .vmapi
            .vms(&[("tag.smartdc_role", role.to_string())])
            .await
            .map_err(err)?
            .lenient();
        let live: Vec<_> = vms
            .iter()
            .filter(|v| !matches!(v.state, VmState::Destroyed | VmState::Failed))
            .collect();
        Ok(Members {
            members: live.len(),
            running: live.iter().filter(|v| v.state == VmState::Running).count(),
        })
    }

    async fn ring_image(&self, uuid: &str) -> Result<wire::fash::Ring, String> {
        let bytes = self.triton.imgapi.file(uuid).await.map_err(err)?;
        let uuid = uuid.to_string();
        let loaded = tokio::task::spawn_blocking(move || fashdb::load_image(&bytes, &uuid))
            .await
            .map_err(err)?
            .map_err(err)?;
        Ok(loaded.ring)
    }
}
