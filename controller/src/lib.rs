//! tritonctl: the CLI, the controller runtime, the store and the real
//! clients. See ARCHITECTURE.md for the map.

pub mod cli;
pub mod clients;
pub mod daemon;
pub mod demo;
pub mod gitops;
pub mod layout;
pub mod logging;
pub mod pause;
pub mod reconcile;
pub mod runtime;
pub mod shard_lock;
pub mod store;
/// The transplant's commands, where the CLI and the review found them
/// before they moved to [`reconcile::decisions`].
pub mod transplant {
    pub use crate::layout::transplant_journal_path;
    pub use crate::reconcile::decisions::{
        CANCEL_STEP, approve_transplant as approve, cancel, decide, stopped,
    };
}
pub mod world;
