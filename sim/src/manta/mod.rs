//! Electric-moray and moray stand-ins, and a Manta write-availability load
//! generator (research/resharding.md §1, §2).
//!
//! - [`ShardStore`]: one metadata shard's rows, `(bucket, key) -> Row` with
//!   `_vnode`, `_id` and etag, plus a read-only flag.
//! - [`MorayTier`]: every shard by pnode, and the pluggable [`ShardBackend`]
//!   that says whether a shard can serve reads or writes right now (the
//!   manatee simulation answers "no writable primary" through it).
//! - [`ElectricMoray`]: one e-m process: its own loaded ring and its own
//!   `indexShards` config, routing put/get/delete by the transformed key and
//!   refusing writes the way electric-moray does. Several can run with
//!   different rings, as during a ring rollout.
//! - [`ring_image`]: the ring as an IMGAPI image named by SAPI's
//!   `HASH_RING_IMAGE`, and the follower that (re)loads it into an e-m.
//! - [`load`]: an mlive-like generator that records every write attempt and
//!   reports unavailability windows; [`verify`] proves acknowledged writes are
//!   neither lost nor duplicated; [`reshard`] moves `_vnode` sets of rows.

mod backend;
mod electric;
mod error;
pub mod load;
pub mod reshard;
pub mod ring_image;
mod store;
pub mod verify;

pub use backend::{Access, AllUp, ShardBackend, ShardFault, ShardFaults};
pub use electric::{ElectricMoray, EmStatus, GetResult, NodeInfo, PutResult};
pub use error::MantaError;
pub use load::{
    LoadConfig, LoadHandle, LoadReport, ReadBack, StopAfter, Window, WriteAttempt,
    unavailable_windows,
};
pub use reshard::{
    MoveError, MoveReport, copy_vnode_rows, delete_verified_vnode_rows, move_vnode_rows,
    verify_vnode_rows,
};
pub use store::{MorayTier, Row, ShardStore};
pub use verify::{AckedWrite, Verification, verify_acked};
