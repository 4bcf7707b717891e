//! Triton and Manta wire formats (in progress).

pub mod apis;
pub mod fash;
pub mod manatee;
