//! Electric-moray and moray stand-ins, and Manta load generators
//! (research/resharding.md §1, §2).
//!
//! - [`RowStore`] (`rows.rs`): what a Moray shard does with rows; held in
//!   memory by [`ShardStore`] (the default) or in real PostgreSQL by
//!   [`PgShardStore`] (`pg_store.rs`: moray's tables, `buckets_config`,
//!   libmanta's buckets and a directory-count trigger, opt-in).
//! - [`MorayTier`] (`tier.rs`): every shard by pnode, and the pluggable
//!   [`ShardBackend`] that says whether a shard can serve reads or writes now.
//! - [`ElectricMoray`]: one e-m's routing state: its loaded ring and
//!   `indexShards`, routing put/get/delete/batch by the transformed key and
//!   refusing writes and bucket DDL exactly as electric-moray does.
//! - [`EmFleet`] (`fleet.rs`): the e-m processes of a datacenter, one per
//!   zone of the SAPI `electric-moray` service, reading `INDEX_MORAY_SHARDS`
//!   and `HASH_RING_IMAGE` at start only (`svcadm restart` through CNAPI
//!   restarts one), each served over HTTP on 127.0.0.1 (`em_http.rs`: the
//!   status endpoint and a data API); [`EmClient`] calls one.
//!   [`plane`] seeds and starts them for a scenario.
//! - [`ring_image`]: the ring as an IMGAPI image named by SAPI's
//!   `HASH_RING_IMAGE`, and the follower that (re)loads it into an e-m.
//! - [`load`]: an mlive-like write generator that reports unavailability
//!   windows; [`mlive`]: the ring-wide one (writes, reads, deletes over every
//!   vnode, refusals per vnode, blocked key-seconds, read latency);
//!   [`verify`] proves acknowledged writes are neither lost nor duplicated;
//!   [`reshard`] moves `_vnode` sets of rows between in-memory shards,
//!   [`moves`] between any shards, NULL-`_vnode` rows placed by key.
//! - [`split`]: the shard split primitives as a driver of calls a controller
//!   can make (asyncs added, detach into a new shard); [`pg_dump`]: the
//!   per-shard dump job that honours `/pg_dump_lock` (world behaviour).

mod backend;
pub mod cleanup_data;
pub mod config;
mod electric;
pub mod em_client;
pub mod em_http;
mod error;
pub mod fleet;
pub mod load;
pub mod measure_probe;
pub mod measure_split;
pub mod mlive;
pub mod moray_sapi;
pub mod moves;
pub mod pg_dump;
pub mod pg_store;
pub mod plane;
pub mod reshard;
pub mod ring_image;
pub mod rows;
pub mod split;
pub mod split_sapi;
mod store;
mod tier;
pub mod verify;

pub use backend::{Access, AllUp, ShardBackend, ShardFault, ShardFaults};
pub use config::{EmConfig, INDEX_MORAY_SHARDS, IndexShard};
pub use electric::{BucketDdl, ElectricMoray, EmStatus, GetResult, NodeInfo, PutResult};
pub use em_client::EmClient;
pub use error::MantaError;
pub use fleet::{EmFleet, EmProcess};
pub use load::{
    LoadConfig, LoadHandle, LoadReport, ReadBack, StopAfter, Window, WriteAttempt,
    unavailable_windows,
};
pub use pg_store::{FixedPrimary, ManateePrimary, PgShardStore, PrimaryLocator};
pub use reshard::{
    MoveError, MoveReport, copy_vnode_rows, delete_verified_vnode_rows, move_vnode_rows,
    verify_vnode_rows,
};
pub use rows::{BatchOp, RowStore};
pub use store::{Row, ShardStore};
pub use tier::MorayTier;
pub use verify::{AckedWrite, Verification, verify_acked};
