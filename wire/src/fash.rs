//! The node-fash consistent hash ring, bit-compatible with the rings that
//! electric-moray loads (research/resharding.md §1 and §2.1).
//!
//! A key is hashed with sha256 and the digest, read as a 256-bit big-endian
//! integer, is divided by `VNODE_HASH_INTERVAL = floor(MAX / vnodes)`; the
//! quotient is the vnode. Vnodes are assigned to pnodes (Moray shard URLs)
//! round-robin at creation and moved one by one afterwards; a vnode's hash
//! range never changes, which is what makes `WHERE _vnode IN (...)` the exact
//! set of rows to move after a remap.
//!
//! The ring is kept as one `u16` pnode index per vnode so that the 10,000,000
//! vnode rings seen in production cost 20 MB, not a map of strings.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::sync::LazyLock;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `fash.VERSION`, written into every serialized ring.
pub const VERSION: &str = "2.1.0";
/// The only algorithm Manta uses (and the only one supported here).
pub const ALGORITHM: &str = "sha256";
/// Names fash accepts for sha256.
pub const ALGORITHM_ALIASES: [&str; 4] = ["sha256", "sha-256", "SHA256", "SHA-256"];
/// `MAX` for sha256 as fash writes it: 64 uppercase `F`s.
pub const SHA256_MAX_HEX: &str = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF";
/// Per-vnode data electric-moray treats as "refuse writes".
pub const READ_ONLY: &str = "ro";
/// Largest vnode count accepted. Far above production (10M) and bounds the
/// memory a ring file can make us allocate.
pub const MAX_VNODES: u32 = 1 << 28;

/// Rings up to this many vnodes get their owner table when `vnodes` is read
/// (2 MiB); larger ones once their map is complete.
const PREALLOCATE_VNODES: u32 = 1 << 20;
/// Largest pnode count: indices are `u16` and one value is the "unassigned"
/// marker used while loading.
pub const MAX_PNODES: usize = u16::MAX as usize;

const UNASSIGNED: u16 = u16::MAX;

static DEFAULT_DATA: LazyLock<Value> = LazyLock::new(|| Value::from(1u64));

/// Everything that can go wrong with a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FashError {
    #[error("vnode count must be between 1 and {MAX_VNODES}, got {0}")]
    BadVnodeCount(u64),
    #[error("a ring needs at least one pnode")]
    NoPnodes,
    #[error("too many pnodes: {0} (at most {MAX_PNODES})")]
    TooManyPnodes(usize),
    #[error("duplicate pnode {0:?}")]
    DuplicatePnode(String),
    #[error("unknown pnode {0:?}")]
    UnknownPnode(String),
    #[error("vnode {vnode} is out of range (ring has {vnode_count} vnodes)")]
    VnodeOutOfRange { vnode: u64, vnode_count: u32 },
    /// The floored interval leaves a sliver at the top of the hash space that
    /// maps to vnode N; fash fails there too, so this is never clamped.
    #[error("hash maps to vnode {quotient}, beyond the last vnode of a {vnode_count}-vnode ring")]
    HashBeyondRing { quotient: u64, vnode_count: u32 },
    #[error("vnode {0} listed twice")]
    DuplicateVnode(u32),
    #[error("vnode {vnode} is already on pnode {pnode:?}")]
    AlreadyOnPnode { vnode: u32, pnode: String },
    #[error("vnode {vnode} is on pnode {actual:?}, not {expected:?}")]
    WrongOwner {
        vnode: u32,
        expected: String,
        actual: String,
    },
    #[error("pnode {pnode:?} still owns {vnodes} vnodes")]
    PnodeNotEmpty { pnode: String, vnodes: u32 },
    #[error("vnode {0} is not assigned to any pnode")]
    UnassignedVnode(u32),
    #[error("unsupported hash algorithm {0:?} (only sha256)")]
    UnsupportedAlgorithm(String),
    #[error("algorithm MAX {0:?} is not 2^256-1")]
    BadMax(String),
    #[error("VNODE_HASH_INTERVAL {stored:?} is not MAX/vnodes = {expected:?}")]
    BadInterval { stored: String, expected: String },
    #[error("unsupported ring version {0:?} (fash {VERSION})")]
    UnsupportedVersion(String),
    #[error("ring JSON is missing {0:?}")]
    MissingField(&'static str),
    #[error("rings differ in vnode count ({0} vs {1})")]
    IncompatibleRings(u32, u32),
    #[error("invalid ring JSON: {0}")]
    Json(String),
}

// ---------------------------------------------------------------------------
// 256-bit arithmetic: `ruint`'s fixed-size unsigned integer (no allocation;
// division by a 256-bit interval is all the ring needs), plus the two hex
// forms fash writes.

type U256 = ruint::aliases::U256;

/// A hex number as fash stores it (either case, leading zeros allowed),
/// `None` when empty, not hex, or wider than 256 bits.
fn u256_from_hex(s: &str) -> Option<U256> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    U256::from_str_radix(s, 16).ok()
}

/// Lowercase hex without leading zeros, as bignum's `toString(16)`.
fn u256_to_hex(v: U256) -> String {
    format!("{v:x}")
}

/// floor(h / d) when it fits in a u64, else None.
fn div_to_u64(h: U256, d: U256) -> Option<u64> {
    u64::try_from(h / d).ok()
}

// ---------------------------------------------------------------------------
// Keys.

/// How a key string becomes the bytes that are hashed. fash hashes a JS
/// string with Node's default encoding, which changed between Node versions,
/// so this must be an explicit per-deployment setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyEncoding {
    /// Node >= 6 (mantav2 electric-moray): UTF-8.
    #[default]
    Utf8,
    /// Node 0.10 (mantav1): each UTF-16 code unit truncated to its low byte.
    Latin1Truncate,
}

impl KeyEncoding {
    /// The bytes hashed for `key`.
    pub fn encode<'a>(&self, key: &'a str) -> Cow<'a, [u8]> {
        match self {
            KeyEncoding::Utf8 => Cow::Borrowed(key.as_bytes()),
            KeyEncoding::Latin1Truncate if key.is_ascii() => Cow::Borrowed(key.as_bytes()),
            KeyEncoding::Latin1Truncate => {
                Cow::Owned(key.encode_utf16().map(|u| u as u8).collect())
            }
        }
    }
}

/// sha256 of the key's bytes under `enc`.
pub fn key_digest(key: &str, enc: KeyEncoding) -> [u8; 32] {
    Sha256::digest(enc.encode(key)).into()
}

/// `VNODE_HASH_INTERVAL` for a sha256 ring of `vnode_count` vnodes, in
/// fash's stored form (lowercase hex, no leading zeros).
pub fn vnode_hash_interval(vnode_count: u32) -> Result<String, FashError> {
    Ok(HashSpace::new(vnode_count)?.interval_hex())
}

/// The key -> vnode half of a ring: vnode count and interval, no owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashSpace {
    vnode_count: u32,
    interval: U256,
}

impl HashSpace {
    pub fn new(vnode_count: u32) -> Result<HashSpace, FashError> {
        if vnode_count == 0 || vnode_count > MAX_VNODES {
            return Err(FashError::BadVnodeCount(vnode_count.into()));
        }
        Ok(HashSpace {
            vnode_count,
            interval: U256::MAX / U256::from(vnode_count),
        })
    }

    /// Checks a stored interval against MAX / vnode_count: a ring whose
    /// interval disagrees would route keys differently from fash.
    fn with_stored_interval(vnode_count: u32, stored: &str) -> Result<HashSpace, FashError> {
        let space = HashSpace::new(vnode_count)?;
        match u256_from_hex(stored) {
            Some(iv) if iv == space.interval => Ok(space),
            _ => Err(FashError::BadInterval {
                stored: stored.into(),
                expected: space.interval_hex(),
            }),
        }
    }

    /// The hash space a stored ring describes, checked as fash's loaders
    /// check it and then some: the vnode count in range, an algorithm name
    /// fash accepts for sha256, MAX = 2^256-1, and the stored interval equal
    /// to MAX / vnodes (a ring whose interval disagrees would route keys
    /// differently from fash).
    pub fn from_stored(
        vnode_count: u64,
        name: &str,
        max: &str,
        interval: &str,
    ) -> Result<HashSpace, FashError> {
        if vnode_count == 0 || vnode_count > u64::from(MAX_VNODES) {
            return Err(FashError::BadVnodeCount(vnode_count));
        }
        if !ALGORITHM_ALIASES.contains(&name) {
            return Err(FashError::UnsupportedAlgorithm(name.into()));
        }
        if u256_from_hex(max) != Some(U256::MAX) {
            return Err(FashError::BadMax(max.into()));
        }
        HashSpace::with_stored_interval(vnode_count as u32, interval)
    }

    pub fn vnode_count(&self) -> u32 {
        self.vnode_count
    }

    pub fn interval_hex(&self) -> String {
        u256_to_hex(self.interval)
    }

    /// vnode = floor(H / INTERVAL), with an error (never a clamp) for the
    /// top sliver of the hash space that lies past the last vnode.
    pub fn vnode_of_digest(&self, digest: &[u8; 32]) -> Result<u32, FashError> {
        let h = U256::from_be_bytes(*digest);
        let q = div_to_u64(h, self.interval).unwrap_or(u64::MAX);
        if q >= u64::from(self.vnode_count) {
            return Err(FashError::HashBeyondRing {
                quotient: q,
                vnode_count: self.vnode_count,
            });
        }
        Ok(q as u32)
    }

    /// The vnode of an already-transformed key (see [`transform_key`]).
    pub fn vnode_of(&self, key: &str, enc: KeyEncoding) -> Result<u32, FashError> {
        self.vnode_of_digest(&key_digest(key, enc))
    }
}

/// Node's `path.posix.dirname`: trailing slashes ignored, inner repeated
/// slashes kept, `"."` when there is no directory part.
pub fn posix_dirname(path: &str) -> &str {
    let b = path.as_bytes();
    if b.is_empty() {
        return ".";
    }
    let has_root = b[0] == b'/';
    let mut end = None;
    let mut matched_slash = true;
    for i in (1..b.len()).rev() {
        if b[i] == b'/' {
            if !matched_slash {
                end = Some(i);
                break;
            }
        } else {
            matched_slash = false;
        }
    }
    match end {
        None if has_root => &path[..1],
        None => ".",
        // "//x": Node keeps both slashes.
        Some(1) if has_root => &path[..2],
        Some(e) => &path[..e],
    }
}

/// `^/<lowercase uuid>/stor$`: an account's storage root, which hashes as
/// itself so it lives on the same vnode as its entries.
pub fn is_account_stor_root(key: &str) -> bool {
    let b = key.as_bytes();
    if b.len() != 42 || b[0] != b'/' || &b[37..] != b"/stor" {
        return false;
    }
    b[1..37].iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
    })
}

/// electric-moray's `dirnameOrKey`.
pub fn dirname_or_key(key: &str) -> &str {
    if is_account_stor_root(key) {
        return key;
    }
    match posix_dirname(key) {
        "." => key,
        d => d,
    }
}

/// electric-moray's `transformKey(bucket, key)`: the string actually hashed.
/// Directory entries hash by their parent so one directory is one vnode.
pub fn transform_key<'a>(bucket: &str, key: &'a str) -> &'a str {
    match bucket {
        "manta" | "testmanta" => dirname_or_key(key),
        // "<uploadId>:<path>", split at the first colon only.
        "manta_uploads" => match key.split_once(':') {
            Some((_, path)) => dirname_or_key(path),
            None => key,
        },
        _ => key,
    }
}

// ---------------------------------------------------------------------------
// The ring.

/// Result of a lookup, as electric-moray reports it in `_node`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node<'a> {
    pub pnode: &'a str,
    pub vnode: u32,
    pub data: &'a Value,
}

/// Vnodes moving from one pnode to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PnodeMove {
    pub from: String,
    pub to: String,
    /// Ascending.
    pub vnodes: Vec<u32>,
}

/// A vnode whose data differs between two rings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataChange {
    pub vnode: u32,
    pub before: Value,
    pub after: Value,
}

/// What changes going from one ring to another with the same hash space.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingDiff {
    /// Sorted by (from, to).
    pub moves: Vec<PnodeMove>,
    pub data_changes: Vec<DataChange>,
    pub pnodes_added: Vec<String>,
    pub pnodes_removed: Vec<String>,
}

impl RingDiff {
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
            && self.data_changes.is_empty()
            && self.pnodes_added.is_empty()
            && self.pnodes_removed.is_empty()
    }

    pub fn moved_vnodes(&self) -> usize {
        self.moves.iter().map(|m| m.vnodes.len()).sum()
    }
}

/// A fash ring: hash space, pnodes and the owner and data of every vnode.
#[derive(Debug, Clone, PartialEq)]
pub struct Ring {
    space: HashSpace,
    /// fash's `/PNODE` order: sorted at creation, new pnodes appended.
    pnodes: Vec<String>,
    /// Pnode index per vnode.
    owner: Vec<u16>,
    /// Vnodes owned per pnode index.
    counts: Vec<u32>,
    /// Only vnodes whose data is not the default `1` (fash's `VNODE_DATA`).
    data: BTreeMap<u32, Value>,
}

/// JS default sort order: UTF-16 code units (byte order for ASCII).
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn js_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64().is_none_or(|f| f == 0.0 || f.is_nan()),
        Value::String(s) => s.is_empty(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

impl Ring {
    /// `fash.create`: pnodes sorted (UTF-16 order), vnode v to
    /// `sorted[v % P]`.
    pub fn create<S: AsRef<str>>(vnode_count: u32, pnodes: &[S]) -> Result<Ring, FashError> {
        let space = HashSpace::new(vnode_count)?;
        if pnodes.is_empty() {
            return Err(FashError::NoPnodes);
        }
        if pnodes.len() > MAX_PNODES {
            return Err(FashError::TooManyPnodes(pnodes.len()));
        }
        let mut sorted: Vec<String> = pnodes.iter().map(|p| p.as_ref().to_owned()).collect();
        sorted.sort_by(|a, b| utf16_cmp(a, b));
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(FashError::DuplicatePnode(w[0].clone()));
        }
        let p = sorted.len() as u32;
        let owner: Vec<u16> = (0..vnode_count).map(|v| (v % p) as u16).collect();
        let counts = (0..p)
            .map(|i| vnode_count / p + u32::from(i < vnode_count % p))
            .collect();
        Ok(Ring {
            space,
            pnodes: sorted,
            owner,
            counts,
            data: BTreeMap::new(),
        })
    }

    pub fn space(&self) -> &HashSpace {
        &self.space
    }

    /// A ring from its stored parts (a LevelDB ring directory is read into
    /// these): `owner[v]` is the index in `pnodes` of vnode v's pnode, and
    /// `data` holds the vnodes whose data is not the default `1` (a `1`
    /// given there is dropped). Checked: pnodes present, unique and few
    /// enough, one owner per vnode naming a pnode, data only for vnodes of
    /// the ring.
    pub fn from_parts(
        space: HashSpace,
        pnodes: Vec<String>,
        owner: Vec<u16>,
        mut data: BTreeMap<u32, Value>,
    ) -> Result<Ring, FashError> {
        if pnodes.is_empty() {
            return Err(FashError::NoPnodes);
        }
        if pnodes.len() > MAX_PNODES {
            return Err(FashError::TooManyPnodes(pnodes.len()));
        }
        let mut seen = std::collections::HashSet::with_capacity(pnodes.len());
        if let Some(dup) = pnodes.iter().find(|p| !seen.insert(p.as_str())) {
            return Err(FashError::DuplicatePnode(dup.clone()));
        }
        let n = space.vnode_count;
        if owner.len() != n as usize {
            return Err(FashError::UnassignedVnode(
                owner.len().min(n as usize) as u32
            ));
        }
        let mut counts = vec![0u32; pnodes.len()];
        for (v, o) in owner.iter().enumerate() {
            match counts.get_mut(*o as usize) {
                Some(c) => *c += 1,
                None => return Err(FashError::UnassignedVnode(v as u32)),
            }
        }
        if let Some((&v, _)) = data.range(n..).next() {
            return Err(FashError::VnodeOutOfRange {
                vnode: v.into(),
                vnode_count: n,
            });
        }
        data.retain(|_, d| *d != *DEFAULT_DATA);
        Ok(Ring {
            space,
            pnodes,
            owner,
            counts,
            data,
        })
    }

    /// The pnode index (into [`Ring::pnodes`]) of every vnode, in vnode
    /// order: what a writer walks to store the ring.
    pub fn owner_indices(&self) -> &[u16] {
        &self.owner
    }

    pub fn vnode_count(&self) -> u32 {
        self.space.vnode_count
    }

    pub fn interval_hex(&self) -> String {
        self.space.interval_hex()
    }

    /// All pnodes, including ones that own no vnodes (electric-moray opens a
    /// client to each).
    pub fn pnodes(&self) -> &[String] {
        &self.pnodes
    }

    fn pnode_index(&self, pnode: &str) -> Option<usize> {
        self.pnodes.iter().position(|p| p == pnode)
    }

    fn check_vnode(&self, vnode: u32) -> Result<usize, FashError> {
        if vnode >= self.space.vnode_count {
            return Err(FashError::VnodeOutOfRange {
                vnode: vnode.into(),
                vnode_count: self.space.vnode_count,
            });
        }
        Ok(vnode as usize)
    }

    pub fn vnode_of(&self, key: &str, enc: KeyEncoding) -> Result<u32, FashError> {
        self.space.vnode_of(key, enc)
    }

    /// `getNode(key)` for an already-transformed key.
    pub fn node(&self, key: &str, enc: KeyEncoding) -> Result<Node<'_>, FashError> {
        self.vnode_node(self.vnode_of(key, enc)?)
    }

    /// electric-moray's `getNode(bucket, key)`: the key goes through
    /// [`transform_key`] first.
    pub fn locate(&self, bucket: &str, key: &str, enc: KeyEncoding) -> Result<Node<'_>, FashError> {
        self.node(transform_key(bucket, key), enc)
    }

    /// Owner and data of one vnode.
    pub fn vnode_node(&self, vnode: u32) -> Result<Node<'_>, FashError> {
        let i = self.check_vnode(vnode)?;
        Ok(Node {
            pnode: &self.pnodes[self.owner[i] as usize],
            vnode,
            data: self.data.get(&vnode).unwrap_or(&DEFAULT_DATA),
        })
    }

    pub fn pnode_of(&self, vnode: u32) -> Result<&str, FashError> {
        Ok(self.vnode_node(vnode)?.pnode)
    }

    pub fn data(&self, vnode: u32) -> Result<&Value, FashError> {
        Ok(self.vnode_node(vnode)?.data)
    }

    /// `addData`: JS-falsy data resets the vnode to the default `1`.
    pub fn set_data(&mut self, vnode: u32, data: Value) -> Result<(), FashError> {
        self.check_vnode(vnode)?;
        if js_falsy(&data) || data == *DEFAULT_DATA {
            self.data.remove(&vnode);
        } else {
            self.data.insert(vnode, data);
        }
        Ok(())
    }

    /// Marks (or clears) `"ro"` on every listed vnode; all or nothing.
    pub fn set_read_only(&mut self, vnodes: &[u32], read_only: bool) -> Result<(), FashError> {
        for v in vnodes {
            self.check_vnode(*v)?;
        }
        for v in vnodes {
            if read_only {
                self.data.insert(*v, Value::from(READ_ONLY));
            } else if self.data.get(v).is_some_and(|d| d == READ_ONLY) {
                self.data.remove(v);
            }
        }
        Ok(())
    }

    pub fn is_read_only(&self, vnode: u32) -> bool {
        self.data.get(&vnode).is_some_and(|d| d == READ_ONLY)
    }

    /// fash's `VNODE_DATA`: vnodes whose data is not `1`, ascending.
    pub fn data_vnodes(&self) -> impl Iterator<Item = (u32, &Value)> {
        self.data.iter().map(|(v, d)| (*v, d))
    }

    /// electric-moray's `ring.ro_`: any data vnode makes bucket DDL and
    /// `sql` refused.
    pub fn has_data_vnodes(&self) -> bool {
        !self.data.is_empty()
    }

    /// `getVnodes(pnode)`, ascending (fash returns insertion order; the set
    /// is what matters).
    pub fn vnodes_of(&self, pnode: &str) -> Result<Vec<u32>, FashError> {
        let idx = self
            .pnode_index(pnode)
            .ok_or_else(|| FashError::UnknownPnode(pnode.into()))? as u16;
        let mut out = Vec::with_capacity(self.counts[idx as usize] as usize);
        out.extend(
            self.owner
                .iter()
                .enumerate()
                .filter(|(_, o)| **o == idx)
                .map(|(v, _)| v as u32),
        );
        Ok(out)
    }

    /// Vnodes owned per pnode, in ring order.
    pub fn vnode_counts(&self) -> impl Iterator<Item = (&str, u32)> {
        self.pnodes
            .iter()
            .map(String::as_str)
            .zip(self.counts.iter().copied())
    }

    /// `remapVnode(to, vnodes)`, all or nothing: creates `to` if new, moves
    /// each vnode's data with it, refuses out-of-range or repeated vnodes and
    /// vnodes already on `to`. Like fash it does not care who owned them; use
    /// [`Ring::remap_from`] to pin the source.
    pub fn remap(&mut self, vnodes: &[u32], to: &str) -> Result<Vec<PnodeMove>, FashError> {
        self.remap_inner(vnodes, None, to)
    }

    /// [`Ring::remap`] that also requires every vnode to be on `from` now,
    /// so a stale plan cannot steal vnodes from a third shard.
    pub fn remap_from(
        &mut self,
        from: &str,
        vnodes: &[u32],
        to: &str,
    ) -> Result<Vec<PnodeMove>, FashError> {
        self.remap_inner(vnodes, Some(from), to)
    }

    fn remap_inner(
        &mut self,
        vnodes: &[u32],
        from: Option<&str>,
        to: &str,
    ) -> Result<Vec<PnodeMove>, FashError> {
        let to_idx = self.pnode_index(to);
        let from_idx = match from {
            Some(f) => Some(
                self.pnode_index(f)
                    .ok_or_else(|| FashError::UnknownPnode(f.into()))?,
            ),
            None => None,
        };
        let mut sorted = vnodes.to_vec();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(FashError::DuplicateVnode(w[0]));
        }
        for &v in &sorted {
            let cur = self.owner[self.check_vnode(v)?] as usize;
            if Some(cur) == to_idx {
                return Err(FashError::AlreadyOnPnode {
                    vnode: v,
                    pnode: to.into(),
                });
            }
            if let Some(f) = from_idx
                && f != cur
            {
                return Err(FashError::WrongOwner {
                    vnode: v,
                    expected: self.pnodes[f].clone(),
                    actual: self.pnodes[cur].clone(),
                });
            }
        }
        let to_idx = match to_idx {
            Some(i) => i,
            None => {
                if self.pnodes.len() >= MAX_PNODES {
                    return Err(FashError::TooManyPnodes(self.pnodes.len() + 1));
                }
                self.pnodes.push(to.into());
                self.counts.push(0);
                self.pnodes.len() - 1
            }
        };
        let mut by_source: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
        for &v in &sorted {
            let cur = self.owner[v as usize];
            by_source.entry(cur).or_default().push(v);
            self.counts[cur as usize] -= 1;
            self.counts[to_idx] += 1;
            self.owner[v as usize] = to_idx as u16;
        }
        let mut moves: Vec<PnodeMove> = by_source
            .into_iter()
            .map(|(src, vnodes)| PnodeMove {
                from: self.pnodes[src as usize].clone(),
                to: to.into(),
                vnodes,
            })
            .collect();
        moves.sort_by(|a, b| a.from.cmp(&b.from));
        Ok(moves)
    }

    /// `removePnode`: only a pnode that owns no vnodes.
    pub fn remove_pnode(&mut self, pnode: &str) -> Result<(), FashError> {
        let idx = self
            .pnode_index(pnode)
            .ok_or_else(|| FashError::UnknownPnode(pnode.into()))?;
        if self.counts[idx] > 0 {
            return Err(FashError::PnodeNotEmpty {
                pnode: pnode.into(),
                vnodes: self.counts[idx],
            });
        }
        self.pnodes.remove(idx);
        self.counts.remove(idx);
        // Keep `/PNODE` order: shift the indices above the removed one.
        for o in &mut self.owner {
            if *o as usize > idx {
                *o -= 1;
            }
        }
        Ok(())
    }

    /// Which vnodes go where to turn `self` into `other`.
    pub fn diff(&self, other: &Ring) -> Result<RingDiff, FashError> {
        if self.vnode_count() != other.vnode_count() {
            return Err(FashError::IncompatibleRings(
                self.vnode_count(),
                other.vnode_count(),
            ));
        }
        let theirs: HashMap<&str, u16> = other
            .pnodes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), i as u16))
            .collect();
        let translate: Vec<Option<u16>> = self
            .pnodes
            .iter()
            .map(|p| theirs.get(p.as_str()).copied())
            .collect();
        let mut groups: HashMap<(u16, u16), Vec<u32>> = HashMap::new();
        for (v, (a, b)) in self.owner.iter().zip(other.owner.iter()).enumerate() {
            if translate[*a as usize] != Some(*b) {
                groups.entry((*a, *b)).or_default().push(v as u32);
            }
        }
        let mut moves: Vec<PnodeMove> = groups
            .into_iter()
            .map(|((a, b), vnodes)| PnodeMove {
                from: self.pnodes[a as usize].clone(),
                to: other.pnodes[b as usize].clone(),
                vnodes,
            })
            .collect();
        moves.sort_by(|x, y| (&x.from, &x.to).cmp(&(&y.from, &y.to)));

        let mut data_changes = Vec::new();
        let keys: std::collections::BTreeSet<u32> =
            self.data.keys().chain(other.data.keys()).copied().collect();
        for v in keys {
            let before = self.data.get(&v).unwrap_or(&DEFAULT_DATA);
            let after = other.data.get(&v).unwrap_or(&DEFAULT_DATA);
            if before != after {
                data_changes.push(DataChange {
                    vnode: v,
                    before: before.clone(),
                    after: after.clone(),
                });
            }
        }
        let pnodes_added = other
            .pnodes
            .iter()
            .filter(|p| self.pnode_index(p).is_none())
            .cloned()
            .collect();
        let pnodes_removed = self
            .pnodes
            .iter()
            .filter(|p| !theirs.contains_key(p.as_str()))
            .cloned()
            .collect();
        Ok(RingDiff {
            moves,
            data_changes,
            pnodes_added,
            pnodes_removed,
        })
    }

    // --- serialization ----------------------------------------------------

    /// fash's `serialize()` JSON, pnodes in ring order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("ring serialization cannot fail")
    }

    /// Streams fash JSON (a 10M-vnode ring is ~130 MB of text).
    pub fn write_json<W: Write>(&self, w: W) -> std::io::Result<()> {
        serde_json::to_writer(w, self).map_err(std::io::Error::other)
    }

    /// The same JSON with pnodes in byte order: equal for any two rings with
    /// the same content, whatever order their pnodes were added in.
    pub fn to_canonical_json(&self) -> String {
        let mut buf = Vec::new();
        self.write_canonical(&mut buf)
            .expect("writing to a Vec cannot fail");
        String::from_utf8(buf).expect("serde_json writes UTF-8")
    }

    fn write_canonical<W: Write>(&self, w: W) -> std::io::Result<()> {
        let mut order: Vec<usize> = (0..self.pnodes.len()).collect();
        order.sort_by(|a, b| self.pnodes[*a].cmp(&self.pnodes[*b]));
        serde_json::to_writer(w, &RingJson { ring: self, order }).map_err(std::io::Error::other)
    }

    /// Content fingerprint: lowercase hex sha256 of the canonical JSON.
    pub fn fingerprint(&self) -> String {
        struct HashWriter(Sha256);
        impl Write for HashWriter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut hw = HashWriter(Sha256::new());
        self.write_canonical(std::io::BufWriter::with_capacity(1 << 16, &mut hw))
            .expect("hashing cannot fail");
        hex(&hw.0.finalize())
    }

    /// fash `deserialize`: validates algorithm, MAX, the stored interval
    /// against MAX / vnodes, the version, and that every vnode has exactly
    /// one owner.
    pub fn from_json(s: &str) -> Result<Ring, FashError> {
        let raw: RawRing = serde_json::from_str(s).map_err(|e| FashError::Json(e.to_string()))?;
        raw.into_ring()
    }

    pub fn from_json_slice(b: &[u8]) -> Result<Ring, FashError> {
        let raw: RawRing = serde_json::from_slice(b).map_err(|e| FashError::Json(e.to_string()))?;
        raw.into_ring()
    }

    /// Vnodes of each pnode (in `order`), via one counting sort instead of a
    /// scan per pnode.
    fn grouped(&self) -> (Vec<usize>, Vec<u32>) {
        let mut start = vec![0usize; self.pnodes.len() + 1];
        for (i, c) in self.counts.iter().enumerate() {
            start[i + 1] = start[i] + *c as usize;
        }
        let mut fill = start.clone();
        let mut flat = vec![0u32; self.owner.len()];
        for (v, o) in self.owner.iter().enumerate() {
            flat[fill[*o as usize]] = v as u32;
            fill[*o as usize] += 1;
        }
        (start, flat)
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// fash's `assertVersion` as an error: [`FashError::UnsupportedVersion`]
/// for a version fash would refuse.
pub fn check_version(v: &str) -> Result<(), FashError> {
    if version_supported(v) {
        Ok(())
    } else {
        Err(FashError::UnsupportedVersion(v.into()))
    }
}

/// fash's `assertVersion`: rejects a version with any component greater than
/// the same component of 2.1.0 (naive, so "2.0.9" is refused as fash does).
fn version_supported(v: &str) -> bool {
    let mine = [2u64, 1, 0];
    let parts: Vec<&str> = v.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return false;
    }
    parts
        .iter()
        .zip(mine)
        .all(|(p, m)| p.parse::<u64>().is_ok_and(|n| n <= m))
}

// --- serde ---------------------------------------------------------------

struct RingJson<'a> {
    ring: &'a Ring,
    order: Vec<usize>,
}

struct PnodeVnodes<'a> {
    ring: &'a Ring,
    vnodes: &'a [u32],
}

impl Serialize for PnodeVnodes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.vnodes.len()))?;
        for v in self.vnodes {
            m.serialize_entry(v, self.ring.data.get(v).unwrap_or(&DEFAULT_DATA))?;
        }
        m.end()
    }
}

struct PnodeMap<'a> {
    ring: &'a Ring,
    order: &'a [usize],
}

impl Serialize for PnodeMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (start, flat) = self.ring.grouped();
        let mut m = s.serialize_map(Some(self.order.len()))?;
        for &i in self.order {
            m.serialize_entry(
                &self.ring.pnodes[i],
                &PnodeVnodes {
                    ring: self.ring,
                    vnodes: &flat[start[i]..start[i + 1]],
                },
            )?;
        }
        m.end()
    }
}

#[derive(Serialize, Deserialize)]
struct AlgorithmJson<'a> {
    #[serde(rename = "NAME", borrow)]
    name: Cow<'a, str>,
    #[serde(rename = "MAX", borrow)]
    max: Cow<'a, str>,
    #[serde(rename = "VNODE_HASH_INTERVAL", borrow)]
    interval: Cow<'a, str>,
}

impl Serialize for RingJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("vnodes", &self.ring.vnode_count())?;
        m.serialize_entry(
            "pnodeToVnodeMap",
            &PnodeMap {
                ring: self.ring,
                order: &self.order,
            },
        )?;
        m.serialize_entry(
            "algorithm",
            &AlgorithmJson {
                name: ALGORITHM.into(),
                max: SHA256_MAX_HEX.into(),
                interval: self.ring.interval_hex().into(),
            },
        )?;
        m.serialize_entry("version", VERSION)?;
        m.end()
    }
}

impl Serialize for Ring {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RingJson {
            ring: self,
            order: (0..self.pnodes.len()).collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ring {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ring, D::Error> {
        RawRing::deserialize(d)?
            .into_ring()
            .map_err(de::Error::custom)
    }
}

/// Owners as parsed. When `vnodes` precedes the map (fash's own order) they
/// go straight into the final vector; otherwise pairs are collected.
enum OwnerSink {
    Direct(Vec<u16>),
    Pairs(Vec<(u32, u16)>),
}

/// The ring JSON before validation; problems are recorded, not raised, so
/// they come out as precise [`FashError`]s.
struct RawRing {
    vnodes: Option<u64>,
    pnodes: Vec<String>,
    owners: OwnerSink,
    data: BTreeMap<u32, Value>,
    algorithm: Option<(String, String, String)>,
    version: Option<String>,
    problem: Option<FashError>,
    saw_map: bool,
}

impl RawRing {
    fn note(&mut self, e: FashError) {
        self.problem.get_or_insert(e);
    }

    fn into_ring(self) -> Result<Ring, FashError> {
        let n = self.vnodes.ok_or(FashError::MissingField("vnodes"))?;
        if !self.saw_map {
            return Err(FashError::MissingField("pnodeToVnodeMap"));
        }
        let (name, max, interval) = self.algorithm.ok_or(FashError::MissingField("algorithm"))?;
        let version = self.version.ok_or(FashError::MissingField("version"))?;
        if let Some(e) = self.problem {
            return Err(e);
        }
        if n == 0 || n > u64::from(MAX_VNODES) {
            return Err(FashError::BadVnodeCount(n));
        }
        let n = n as u32;
        if !ALGORITHM_ALIASES.contains(&name.as_str()) {
            return Err(FashError::UnsupportedAlgorithm(name));
        }
        if u256_from_hex(&max) != Some(U256::MAX) {
            return Err(FashError::BadMax(max));
        }
        let space = HashSpace::with_stored_interval(n, &interval)?;
        if !version_supported(&version) {
            return Err(FashError::UnsupportedVersion(version));
        }
        if self.pnodes.is_empty() {
            return Err(FashError::NoPnodes);
        }
        let owner = match self.owners {
            OwnerSink::Direct(o) => o,
            OwnerSink::Pairs(mut pairs) => {
                pairs.sort_unstable_by_key(|p| p.0);
                // Sorted: out of range, duplicates and the first vnode left
                // out show without the table, which is built only for a map
                // that lists every vnode once.
                for (i, &(v, _)) in pairs.iter().enumerate() {
                    if v >= n {
                        return Err(FashError::VnodeOutOfRange {
                            vnode: v.into(),
                            vnode_count: n,
                        });
                    }
                    if i > 0 && pairs[i - 1].0 == v {
                        return Err(FashError::DuplicateVnode(v));
                    }
                }
                // In range and once each: the first gap is the first vnode
                // no pnode holds.
                if let Some(i) = (0..pairs.len()).find(|&i| pairs[i].0 as usize != i) {
                    return Err(FashError::UnassignedVnode(i as u32));
                }
                if pairs.len() != n as usize {
                    return Err(FashError::UnassignedVnode(pairs.len() as u32));
                }
                pairs.into_iter().map(|(_, p)| p).collect()
            }
        };
        if owner.len() != n as usize {
            return Err(FashError::UnassignedVnode(owner.len() as u32));
        }
        let mut counts = vec![0u32; self.pnodes.len()];
        for (v, o) in owner.iter().enumerate() {
            if *o == UNASSIGNED {
                return Err(FashError::UnassignedVnode(v as u32));
            }
            counts[*o as usize] += 1;
        }
        if let Some((&v, _)) = self.data.range(n..).next() {
            return Err(FashError::VnodeOutOfRange {
                vnode: v.into(),
                vnode_count: n,
            });
        }
        Ok(Ring {
            space,
            pnodes: self.pnodes,
            owner,
            counts,
            data: self.data,
        })
    }
}

impl<'de> Deserialize<'de> for RawRing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawRing, D::Error> {
        d.deserialize_map(RawRingVisitor)
    }
}

struct RawRingVisitor;

impl<'de> Visitor<'de> for RawRingVisitor {
    type Value = RawRing;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a fash ring object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRing, A::Error> {
        let mut raw = RawRing {
            vnodes: None,
            pnodes: Vec::new(),
            owners: OwnerSink::Pairs(Vec::new()),
            data: BTreeMap::new(),
            algorithm: None,
            version: None,
            problem: None,
            saw_map: false,
        };
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            match k.as_ref() {
                "vnodes" => {
                    let n: u64 = map.next_value()?;
                    raw.vnodes = Some(n);
                    // The table up front only for a ring whose size is no
                    // risk; a larger one is built from what the map lists,
                    // so a count alone never allocates (2^28 slots: 512 MiB).
                    if !raw.saw_map && n > 0 && n <= u64::from(PREALLOCATE_VNODES) {
                        raw.owners = OwnerSink::Direct(vec![UNASSIGNED; n as usize]);
                    }
                }
                "pnodeToVnodeMap" => {
                    raw.saw_map = true;
                    map.next_value_seed(PnodeMapSeed(&mut raw))?;
                }
                "algorithm" => {
                    let a: AlgorithmJson<'de> = map.next_value()?;
                    raw.algorithm = Some((
                        a.name.into_owned(),
                        a.max.into_owned(),
                        a.interval.into_owned(),
                    ));
                }
                "version" => raw.version = Some(map.next_value()?),
                // e.g. the buckets ring's derived vnodeToPnodeMap.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(raw)
    }
}

struct PnodeMapSeed<'r>(&'r mut RawRing);

impl<'de> DeserializeSeed<'de> for PnodeMapSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PnodeMapSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of pnode to {vnode: data}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let raw = self.0;
        while let Some(pnode) = map.next_key::<String>()? {
            if raw.pnodes.contains(&pnode) {
                raw.note(FashError::DuplicatePnode(pnode.clone()));
            }
            if raw.pnodes.len() >= MAX_PNODES {
                return Err(de::Error::custom(FashError::TooManyPnodes(
                    raw.pnodes.len() + 1,
                )));
            }
            let idx = raw.pnodes.len() as u16;
            raw.pnodes.push(pnode);
            map.next_value_seed(VnodesSeed {
                raw: &mut *raw,
                idx,
            })?;
        }
        Ok(())
    }
}

struct VnodesSeed<'r> {
    raw: &'r mut RawRing,
    idx: u16,
}

impl<'de> DeserializeSeed<'de> for VnodesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for VnodesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of vnode number to data")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let raw = self.raw;
        while let Some(v) = map.next_key::<u32>()? {
            let data: Value = map.next_value()?;
            match &mut raw.owners {
                OwnerSink::Direct(o) => match o.get_mut(v as usize) {
                    Some(slot) if *slot == UNASSIGNED => *slot = self.idx,
                    Some(_) => {
                        raw.problem.get_or_insert(FashError::DuplicateVnode(v));
                    }
                    None => {
                        raw.problem.get_or_insert(FashError::VnodeOutOfRange {
                            vnode: v.into(),
                            vnode_count: o.len() as u32,
                        });
                    }
                },
                OwnerSink::Pairs(p) => p.push((v, self.idx)),
            }
            if data != *DEFAULT_DATA {
                raw.data.insert(v, data);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(v: u128) -> U256 {
        U256::from(v)
    }

    /// Plain shift-and-subtract division: slow, obviously right, and
    /// independent of the library's division; the reference the ring's
    /// arithmetic is checked against.
    fn div_rem_slow(h: U256, d: U256) -> (U256, U256) {
        assert!(d != U256::ZERO, "division by zero");
        let mut q = U256::ZERO;
        let mut r = U256::ZERO;
        for i in (0..256).rev() {
            let carry = r.bit(255);
            r = (r << 1usize) | u(u128::from(h.bit(i)));
            // With the carry, the true remainder is >= 2^256 > d, and the
            // wrapping subtraction yields the right (smaller than d) value.
            if carry || r >= d {
                r = r.wrapping_sub(d);
                q.set_bit(i, true);
            }
        }
        (q, r)
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(u256_to_hex(U256::MAX), "f".repeat(64));
        assert_eq!(u256_to_hex(U256::ZERO), "0");
        assert_eq!(u256_to_hex(u(0x2a0)), "2a0");
        assert_eq!(u256_from_hex("00ff"), Some(u(255)));
        assert_eq!(u256_from_hex(SHA256_MAX_HEX), Some(U256::MAX));
        assert_eq!(u256_from_hex(""), None);
        assert_eq!(u256_from_hex("xyz"), None);
        assert_eq!(u256_from_hex("f_f"), None);
        assert_eq!(u256_from_hex(&"1".repeat(65)), None);
    }

    #[test]
    fn slow_division_small_values() {
        let (q, r) = div_rem_slow(u(1000), u(7));
        assert_eq!((q, r), (u(142), u(6)));
        let (q, r) = div_rem_slow(U256::MAX, U256::MAX);
        assert_eq!((q, r), (u(1), U256::ZERO));
        // Divisor above 2^255 exercises the carry path.
        let big = U256::from_limbs([0, 0, 0, 1 << 63]);
        let (q, r) = div_rem_slow(U256::MAX, big);
        assert_eq!(q, u(1));
        assert_eq!(r, U256::MAX.wrapping_sub(big));
        assert_eq!(U256::MAX / u(3), div_rem_slow(U256::MAX, u(3)).0);
    }

    fn arb_u256() -> impl proptest::strategy::Strategy<Value = U256> {
        use proptest::prelude::*;
        (any::<[u64; 4]>(), 0usize..256).prop_map(|(l, shift)| U256::from_limbs(l) >> shift)
    }

    proptest::proptest! {
        #[test]
        fn fast_division_matches_slow(h in arb_u256(), d in arb_u256()) {
            proptest::prop_assume!(d != U256::ZERO);
            let (q, _) = div_rem_slow(h, d);
            let l = q.as_limbs();
            let fits = l[1] == 0 && l[2] == 0 && l[3] == 0;
            proptest::prop_assert_eq!(div_to_u64(h, d), fits.then_some(l[0]));
        }

        #[test]
        fn vnode_matches_slow_division(digest in proptest::prelude::any::<[u8; 32]>(), n in 1u32..=MAX_VNODES) {
            let space = HashSpace::new(n).unwrap();
            let (q, _) = div_rem_slow(U256::from_be_bytes(digest), space.interval);
            match space.vnode_of_digest(&digest) {
                Ok(v) => proptest::prop_assert_eq!(u(v.into()), q),
                Err(FashError::HashBeyondRing { quotient, .. }) => {
                    proptest::prop_assert_eq!(u(quotient.into()), q);
                    proptest::prop_assert!(quotient >= u64::from(n));
                }
                Err(e) => proptest::prop_assert!(false, "{e}"),
            }
        }
    }

    #[test]
    fn top_sliver_is_an_error_not_a_clamp() {
        // Hashes from N * INTERVAL up to MAX map to vnode N. For N = 6,
        // 2^256-1 = 6 * INTERVAL + 3, so the top four hashes do.
        let space = HashSpace::new(6).unwrap();
        let err = space.vnode_of_digest(&[0xff; 32]).unwrap_err();
        assert_eq!(
            err,
            FashError::HashBeyondRing {
                quotient: 6,
                vnode_count: 6
            }
        );
        // 6 * INTERVAL = MAX - 3: the hash just below is the last vnode.
        let mut d = [0xff; 32];
        d[31] = 0xfc;
        assert!(matches!(
            space.vnode_of_digest(&d),
            Err(FashError::HashBeyondRing { .. })
        ));
        d[31] = 0xfb;
        assert_eq!(space.vnode_of_digest(&d), Ok(5));
        assert_eq!(space.vnode_of_digest(&[0; 32]), Ok(0));
        // Even when N divides MAX, the single hash MAX lands on vnode N.
        assert!(
            HashSpace::new(3)
                .unwrap()
                .vnode_of_digest(&[0xff; 32])
                .is_err()
        );
    }

    #[test]
    fn version_check_is_fash_naive() {
        assert!(version_supported("2.1.0"));
        assert!(version_supported("1.0.0"));
        assert!(version_supported("2.0"));
        assert!(!version_supported("2.0.9"));
        assert!(!version_supported("3.0.0"));
        assert!(!version_supported("x"));
    }
}
