//! What can be wrong with a ring directory or a ring image. Every error
//! names the directory (or image) and the key or file at fault.

use std::fmt;
use std::path::PathBuf;

use wire::fash::FashError;

/// A ring directory that is there but not a ring fash would serve from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inconsistency {
    /// `/VNODE/<v>` names a pnode `/PNODE` does not list.
    UnknownPnode(String),
    /// A vnode below `VNODE_COUNT` has no `/VNODE/<v>` key.
    NoOwner,
    /// `/PNODE/<p>/<v>` is missing for the pnode `/VNODE/<v>` names
    /// (fash's getNode fails there).
    NoData { pnode: String },
    /// `/PNODE/<p>/<v>` exists for a pnode that does not own v.
    DataOnOtherPnode { owner: String },
    /// `/PNODE/<p>`'s list and the `/VNODE/*` keys disagree about v.
    ListedButNotOwned { vnode: u32, owner: String },
    /// A vnode p owns that `/PNODE/<p>` does not list.
    OwnedButNotListed { vnode: u32 },
    /// A vnode listed twice.
    ListedTwice(u32),
    /// A vnode number at or past `VNODE_COUNT`.
    OutOfRange { vnode: u64, vnode_count: u32 },
    /// `VNODE_DATA` and the data stored under `/PNODE/*/*` disagree.
    DataList {
        listed_only: Vec<u32>,
        data_only: Vec<u32>,
    },
    /// A key under `/PNODE/` that is neither a pnode's list nor a vnode's
    /// data of a listed pnode.
    StrayKey,
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inconsistency::UnknownPnode(p) => {
                write!(f, "names pnode {p:?}, which /PNODE does not list")
            }
            Inconsistency::NoOwner => f.write_str("missing: the vnode has no pnode"),
            Inconsistency::NoData { pnode } => {
                write!(f, "missing: vnode owned by {pnode:?} has no data key")
            }
            Inconsistency::DataOnOtherPnode { owner } => {
                write!(f, "data for a vnode that /VNODE gives to {owner:?}")
            }
            Inconsistency::ListedButNotOwned { vnode, owner } => {
                write!(
                    f,
                    "lists vnode {vnode}, which /VNODE/{vnode} gives to {owner:?}"
                )
            }
            Inconsistency::OwnedButNotListed { vnode } => {
                write!(
                    f,
                    "does not list vnode {vnode}, which /VNODE/{vnode} gives to it"
                )
            }
            Inconsistency::ListedTwice(v) => write!(f, "vnode {v} listed twice"),
            Inconsistency::OutOfRange { vnode, vnode_count } => {
                write!(
                    f,
                    "vnode {vnode} is past the last vnode ({vnode_count} vnodes)"
                )
            }
            Inconsistency::DataList {
                listed_only,
                data_only,
            } => write!(
                f,
                "lists vnodes without data {listed_only:?} and omits vnodes with data {data_only:?}"
            ),
            Inconsistency::StrayKey => f.write_str("not a key of fash's ring layout"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RingDbError {
    #[error("{}: no such directory", dir.display())]
    NoSuchDirectory { dir: PathBuf },
    #[error("{}: not empty; a new ring goes into a new or empty directory (as fash create refuses an existing LevelDB)", dir.display())]
    NotEmpty { dir: PathBuf },
    #[error("{}: cannot open as a LevelDB: {message}", dir.display())]
    Open { dir: PathBuf, message: String },
    #[error("{}: LevelDB {op} failed: {message}", dir.display())]
    Db {
        dir: PathBuf,
        op: &'static str,
        message: String,
    },
    #[error("{}: no {key} key: {meaning}", dir.display())]
    MissingKey {
        dir: PathBuf,
        key: String,
        meaning: &'static str,
    },
    #[error("{}: key {key}: expected {expected}, found {found}", dir.display())]
    BadValue {
        dir: PathBuf,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{}: key {key}: {source}", dir.display())]
    Ring {
        dir: PathBuf,
        key: String,
        #[source]
        source: FashError,
    },
    #[error("{}: key {key}: {problem}", dir.display())]
    Inconsistent {
        dir: PathBuf,
        key: String,
        problem: Inconsistency,
    },
    #[error("{}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What can be wrong with a ring image file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("ring image {image}: not a gzip tar archive: {message}")]
    NotAnArchive { image: String, message: String },
    #[error("ring image {image}: no hash_ring/ directory at the root of the archive")]
    NoHashRing { image: String },
    #[error("ring image {image}: unsafe path {path:?} in the archive")]
    UnsafePath { image: String, path: String },
    #[error("ring image {image}: hash_ring/{file}: {message}")]
    BadStamp {
        image: String,
        file: &'static str,
        message: String,
    },
    #[error("ring image {image}: {source}")]
    Ring {
        image: String,
        #[source]
        source: Box<RingDbError>,
    },
    #[error("ring image {image}: {source}")]
    Io {
        image: String,
        #[source]
        source: std::io::Error,
    },
}
