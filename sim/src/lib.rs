//! A simulated Triton datacenter.
//!
//! Triton cannot run here, so this crate is the datacenter tritonctl is
//! tested against: SAPI, VMAPI, CNAPI and IMGAPI over real HTTP, one
//! simulated manatee sitter per manatee zone coordinating through a
//! [`coord::Coordination`] (real ZooKeeper or the in-process ensemble),
//! electric-moray/moray stand-ins holding rows per shard, a load generator,
//! fault injection and one time-scale knob. It depends only on the wire
//! types (`wire`) and `coord`, never on the controller.
pub mod controller_zone;
pub mod dc;
pub mod manta;

pub mod http;
pub mod manatee;
pub mod scenario;
