//! Triton and Manta wire formats: what goes over HTTP and into ZooKeeper.
//!
//! Shared by the controller's real clients and by the simulator, so the two
//! agree on every field. Types that mirror a JSON document keep unknown
//! fields, so reading and writing back never drops what a newer Triton wrote.

pub mod apis;
pub mod fash;
pub mod manatee;
pub mod pgstatus;
pub mod records;
