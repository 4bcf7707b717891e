//! The reconcilers' world traits implemented with the real clients: HTTP for
//! SAPI/VMAPI/CNAPI/IMGAPI and the coordination store for ZooKeeper.

pub mod manatee;
pub mod transplant;

/// Where `tritonctl approve` records approvals: one node per operation step.
pub fn approval_path(op_id: &str, step: &str) -> String {
    format!("{}/approvals/{op_id}/{step}", crate::store::ROOT)
}
