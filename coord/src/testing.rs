//! The real ZooKeeper fixture for integration tests (feature `testing`):
//! [`crate::server::ZkServer`], kept under this name for the tests.

pub use crate::server::*;
