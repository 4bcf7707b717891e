//! Reconcilers: per-kind observe -> plan -> step logic, the operation engine
//! they share, and the domain models they reason with.
//!
//! This crate never talks to the world directly. Each reconciler defines the
//! trait it needs (what it observes, what it can change) and the controller
//! implements it with real clients; tests implement it against the simulator.

pub mod clock;
pub mod error;
pub mod gates;
pub mod manatee;
pub mod manatee_ha;
pub mod operation;
pub mod reshard;
pub mod rollout;
pub mod transplant;
pub mod window;
