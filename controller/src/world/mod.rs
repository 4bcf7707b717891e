//! The reconcilers' world traits implemented with the real clients: HTTP for
//! SAPI/VMAPI/CNAPI/IMGAPI and the coordination store for ZooKeeper.

pub mod manatee;
pub mod outcome;
pub mod reshard;
pub mod reshard_act;
pub mod reshard_addr;
pub mod reshard_lock;
pub mod reshard_rows;
pub mod reshard_sentinel;
pub mod transplant;

/// Where `tritonctl approve` records approvals (see [`crate::layout`]).
pub use crate::layout::approval_path;

use reconcilers::error::WorldError;

/// Turns what the clients, ZooKeeper and the wire formats return into a
/// [`WorldError`], keeping the text.
pub(crate) trait ToWorld {
    fn to_world(self) -> WorldError;
}

impl ToWorld for crate::clients::ApiError {
    fn to_world(self) -> WorldError {
        self.into()
    }
}

impl ToWorld for coord::CoordError {
    fn to_world(self) -> WorldError {
        self.into()
    }
}

impl ToWorld for WorldError {
    fn to_world(self) -> WorldError {
        self
    }
}

/// A cluster state or election node we cannot read or write as is.
impl ToWorld for wire::manatee::StateError {
    fn to_world(self) -> WorldError {
        WorldError::Malformed(self.to_string())
    }
}

impl ToWorld for serde_json::Error {
    fn to_world(self) -> WorldError {
        WorldError::Malformed(self.to_string())
    }
}

/// A freeze or unfreeze the state does not allow (frozen by someone else,
/// not frozen).
impl ToWorld for wire::manatee::FreezeError {
    fn to_world(self) -> WorldError {
        WorldError::Unexpected(self.to_string())
    }
}

/// `.map_err(e)`: any of the above as a [`WorldError`].
pub(crate) fn e<E: ToWorld>(x: E) -> WorldError {
    x.to_world()
}
