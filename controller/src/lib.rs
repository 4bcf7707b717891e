//! tritonctl: the CLI, the controller runtime, the store and the real
//! clients. See ARCHITECTURE.md for the map.

pub mod auth;
pub mod cleanup;
pub mod cli;
pub mod clients;
pub mod config;
pub mod config_resolve;
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
pub mod web;
pub mod world;
