//! The reconcilers' world traits implemented with the real clients: HTTP for
//! SAPI/VMAPI/CNAPI/IMGAPI and the coordination store for ZooKeeper.

pub mod manatee;
pub mod transplant;

/// Where `tritonctl approve` records approvals (see [`crate::layout`]).
pub use crate::layout::approval_path;
