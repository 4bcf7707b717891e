//! tritonctl's desired-state documents.
//!
//! Three kinds, each a Kubernetes-style envelope around a user-written
//! `spec` and a controller-written `status`:
//! - [`HeadnodeSet`]: which servers are headnodes and how HA services spread over them (RFD 67);
//! - [`ManateeVersion`]: the manatee image wanted for a set of shards and how to roll it out;
//! - [`ShardTopology`]: Manta metadata shards and the electric-moray hash ring (RFD 103).
//!
//! This crate is pure: types, JSON Schemas, parsing with source locations and
//! semantic validation. It never does I/O; callers hand it text.

pub mod common;
pub mod document;
pub mod headnode;
pub mod image_version;
pub mod manatee;
pub mod meta;
pub mod parse;
pub mod ring;
pub mod schema;
mod schema_check;
pub mod shards;
pub mod status;
pub mod validate;

pub use document::{Document, Kind};
pub use headnode::{HeadnodeSet, HeadnodeSetSpec};
pub use manatee::{ManateeVersion, ManateeVersionSpec};
pub use meta::{API_VERSION, ObjectMeta, Resource};
pub use parse::{ParsedDocument, SourceLocation, parse_documents};
pub use shards::{ShardTopology, ShardTopologySpec};
pub use status::{
    Condition, ConditionStatus, ConditionType, OperationStatus, Status, StepState, StepStatus,
};
pub use validate::{Diagnostic, Severity, validate_all, validate_sets};
