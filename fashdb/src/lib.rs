//! fash hash rings as Manta keeps them.
//!
//! electric-moray serves from node-fash's LevelDB backend: a LevelDB
//! directory whose keys are fash's layout ([`keys`], research/resharding.md
//! §1.7) and whose values are JSON. Ring images in IMGAPI carry that
//! directory as a gzip tar of `hash_ring/` ([`image`]). This crate reads
//! and writes both natively, with `rusty-leveldb` (a pure-Rust LevelDB:
//! it writes the files LevelDB itself opens and reads Snappy-compressed
//! blocks; `tests/leveldb_cpp.rs` checks both against the C++ library).
//!
//! It is its own crate rather than a module of `wire` so that `wire` (and
//! `crds`, which uses it for the one ring builder) stays pure, free of I/O
//! and of the LevelDB, tar and gzip dependencies; the simulator and the
//! controller both depend on it. The ring itself, the hash and the JSON
//! form (`serialize()`, kept for offline plans) are `wire::fash`.

pub mod error;
pub mod image;
pub mod keys;
pub mod read;
pub mod write;

pub use error::{ImageError, Inconsistency, RingDbError};
pub use image::{LoadedImage, Stamp, load_image, pack_dir, pack_ring, unpack};
pub use read::{Entries, Header, RingDir, check, entries, load};
pub use write::write_ring;
