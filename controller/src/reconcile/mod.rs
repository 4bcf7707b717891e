//! Reconcile, one shape for every kind.
//!
//! [`run`] is the whole life of one reconcile: the shared opening (load the
//! document, note its generation, the pause gate), the kind's own
//! [`KindReconcile::reconcile`], and [`finish`], the one place that turns
//! what the kind found (an [`Outcome`], or the error it met) into
//! conditions, events, the status write and the requeue [`Action`]. A kind
//! never writes conditions itself; its operation journals write the
//! operation (and keep Ready/Progressing truthful at every step boundary,
//! see [`journal::StoreJournal`]) in the same fenced multi-op.
//!
//! The kinds and strategies, one module each:
//! - [`manatee`]: a ManateeVersion's rolling upgrade, shard by shard;
//! - [`transplant`]: a ManateeVersion's v1 -> v2 brain transplant;
//! - [`manatee_version`]: which of the two a ManateeVersion's shard gets;
//! - [`headnodes`]: a HeadnodeSet's manatee HA setup;
//! - [`reshard`]: a ShardTopology's vnode moves (live resharding).
//!
//! Shared pieces: [`journal`] (journals saved with the status, loading
//! them), [`decisions`] (what `tritonctl approve` and `cancel` record).

pub mod context;
pub mod decisions;
pub mod finish;
pub mod headnodes;
pub mod journal;
pub mod manatee;
pub mod manatee_version;
pub mod outcome;
pub mod reshard;
pub mod transplant;

pub use crate::layout::journal_dir;
pub use context::{Context, context};
pub use decisions::approve;
pub use finish::{finish, run};
pub use headnodes::reconcile_headnodes;
pub use journal::{load_journals, load_journals_of, step_kind};
pub use manatee_version::reconcile_manatee;
pub use outcome::{Block, KindReconcile, Note, Outcome, ReconcileError};
