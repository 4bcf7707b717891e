//! Reading a ring directory: fash's `loadFromDb` checks, then the whole
//! ring in one ordered scan, every part of the layout checked against the
//! others.
//!
//! fash's loader checks `COMPLETE`, `VERSION` (its naive assertVersion),
//! `VNODE_COUNT`, that `/VNODE/<N-1>` is a pnode string, and reads
//! `ALGORITHM`; [`check`] does exactly that, plus that the stored interval
//! is MAX / vnodes. [`load`] then reads the ring itself and refuses a
//! directory whose keys disagree (a vnode without owner or data key, a
//! pnode list that is not the set of vnodes `/VNODE/*` gives it, a
//! `VNODE_DATA` that is not the set of vnodes with data): electric-moray
//! would fail on such a ring at the first key that lands there.
//! Compressed (Snappy) and uncompressed blocks are both read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rusty_leveldb::{DB, LdbIterator, Options};
use serde_json::Value;
use wire::fash::{self, HashSpace, Ring};

use crate::error::{Inconsistency, RingDbError};
use crate::keys::{self, Key};

const UNASSIGNED: u16 = u16::MAX;

/// Every key and value of a directory, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What fash's loader reads before it serves: the ring's header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub vnode_count: u32,
    pub version: String,
    pub space: HashSpace,
}

/// An open ring directory. Opening it takes LevelDB's lock, as
/// electric-moray and the fash CLI do (one process per directory).
pub struct RingDir {
    dir: PathBuf,
    db: DB,
}

impl std::fmt::Debug for RingDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingDir").field("dir", &self.dir).finish()
    }
}

impl RingDir {
    /// Opens an existing LevelDB directory (never creates one).
    pub fn open(dir: &Path) -> Result<RingDir, RingDbError> {
        if !dir.is_dir() {
            return Err(RingDbError::NoSuchDirectory {
                dir: dir.to_path_buf(),
            });
        }
        if !dir.join("CURRENT").is_file() {
            return Err(RingDbError::Open {
                dir: dir.to_path_buf(),
                message: "not a LevelDB directory (no CURRENT file)".into(),
            });
        }
        let opt = Options {
            create_if_missing: false,
            // As the C++ LevelDB does: what the log holds goes into a table
            // at open. (rusty-leveldb's memtable iterator copies every value
            // it is asked for, and a pnode's vnode list is megabytes.)
            reuse_logs: false,
            ..Options::default()
        };
        let db = DB::open(dir, opt).map_err(|e| RingDbError::Open {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(RingDir {
            dir: dir.to_path_buf(),
            db,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, RingDbError> {
        let snap = self.db.get_snapshot();
        self.db
            .get_at(&snap, key.as_bytes())
            .map(|v| v.map(|b| b.to_vec()))
            .map_err(|e| RingDbError::Db {
                dir: self.dir.clone(),
                op: "read",
                message: format!("{key}: {e}"),
            })
    }

    fn require(&mut self, key: &str, meaning: &'static str) -> Result<Vec<u8>, RingDbError> {
        self.get(key)?.ok_or_else(|| RingDbError::MissingKey {
            dir: self.dir.clone(),
            key: key.into(),
            meaning,
        })
    }

    fn json(&self, key: &str, bytes: &[u8], expected: &'static str) -> Result<Value, RingDbError> {
        serde_json::from_slice(bytes).map_err(|_| self.bad(key, expected, bytes))
    }

    fn bad(&self, key: &str, expected: &'static str, bytes: &[u8]) -> RingDbError {
        let mut found = String::from_utf8_lossy(bytes).into_owned();
        if found.len() > 80 {
            let cut = (0..=80)
                .rev()
                .find(|i| found.is_char_boundary(*i))
                .unwrap_or(0);
            found.truncate(cut);
            found.push('…');
        }
        RingDbError::BadValue {
            dir: self.dir.clone(),
            key: key.into(),
            expected,
            found,
        }
    }

    fn inconsistent(&self, key: String, problem: Inconsistency) -> RingDbError {
        RingDbError::Inconsistent {
            dir: self.dir.clone(),
            key,
            problem,
        }
    }

    /// fash's `loadFromDb` checks, in its order.
    pub fn check(&mut self) -> Result<Header, RingDbError> {
        self.require(
            keys::COMPLETE,
            "the ring was never finished (fash writes COMPLETE last, and will not load a ring without it)",
        )?;
        let raw = self.require(
            keys::VERSION,
            "fash will not load a ring without its version",
        )?;
        let version = match self.json(keys::VERSION, &raw, "a version string")? {
            Value::String(s) => s,
            _ => return Err(self.bad(keys::VERSION, "a version string", &raw)),
        };
        fash::check_version(&version).map_err(|source| RingDbError::Ring {
            dir: self.dir.clone(),
            key: keys::VERSION.into(),
            source,
        })?;
        let raw = self.require(keys::VNODE_COUNT, "the ring's vnode count is unknown")?;
        let n = self
            .json(keys::VNODE_COUNT, &raw, "a vnode count")?
            .as_u64()
            .ok_or_else(|| self.bad(keys::VNODE_COUNT, "a vnode count", &raw))?;
        if n == 0 || n > u64::from(fash::MAX_VNODES) {
            return Err(RingDbError::Ring {
                dir: self.dir.clone(),
                key: keys::VNODE_COUNT.into(),
                source: fash::FashError::BadVnodeCount(n),
            });
        }
        let last = keys::vnode((n - 1) as u32);
        let raw = self.require(&last, "the last vnode has no pnode (fash's spot check)")?;
        if !self.json(&last, &raw, "a pnode string")?.is_string() {
            return Err(self.bad(&last, "a pnode string", &raw));
        }
        let raw = self.require(keys::ALGORITHM, "the ring's hash algorithm is unknown")?;
        let alg = self.json(keys::ALGORITHM, &raw, "an algorithm object")?;
        let field = |f: &str| alg.get(f).and_then(Value::as_str);
        let (Some(name), Some(max), Some(interval)) =
            (field("NAME"), field("MAX"), field("VNODE_HASH_INTERVAL"))
        else {
            return Err(self.bad(
                keys::ALGORITHM,
                "{NAME, MAX, VNODE_HASH_INTERVAL} strings",
                &raw,
            ));
        };
        let space =
            HashSpace::from_stored(n, name, max, interval).map_err(|source| RingDbError::Ring {
                dir: self.dir.clone(),
                key: keys::ALGORITHM.into(),
                source,
            })?;
        Ok(Header {
            vnode_count: n as u32,
            version,
            space,
        })
    }

    /// Every key and value, in key order (LevelDB's bytewise order).
    pub fn entries(&mut self) -> Result<Entries, RingDbError> {
        let mut it = self.db.new_iter().map_err(|e| RingDbError::Db {
            dir: self.dir.clone(),
            op: "scan",
            message: e.to_string(),
        })?;
        let mut out = Vec::new();
        while let Some(kv) = it.next() {
            out.push(kv);
        }
        Ok(out)
    }

    /// The pnodes `/PNODE` lists, in its order.
    fn pnode_list(&mut self) -> Result<Vec<String>, RingDbError> {
        let raw = self.require(keys::PNODES, "the ring has no pnode list")?;
        let v = self.json(keys::PNODES, &raw, "an array of pnode strings")?;
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .map(|p| p.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
            })
            .ok_or_else(|| self.bad(keys::PNODES, "an array of pnode strings", &raw))
    }

    fn vnode_numbers(&self, key: &str, raw: &[u8], n: u32) -> Result<Vec<u32>, RingDbError> {
        let nums: Vec<u64> = serde_json::from_slice(raw)
            .map_err(|_| self.bad(key, "an array of vnode numbers", raw))?;
        nums.into_iter()
            .map(|v| {
                u32::try_from(v).ok().filter(|v| *v < n).ok_or_else(|| {
                    self.inconsistent(
                        key.into(),
                        Inconsistency::OutOfRange {
                            vnode: v,
                            vnode_count: n,
                        },
                    )
                })
            })
            .collect()
    }

    /// The whole ring, after [`RingDir::check`].
    pub fn load(&mut self) -> Result<Ring, RingDbError> {
        let header = self.check()?;
        let n = header.vnode_count;
        let pnodes = self.pnode_list()?;
        if pnodes.len() >= fash::MAX_PNODES {
            return Err(RingDbError::Ring {
                dir: self.dir.clone(),
                key: keys::PNODES.into(),
                source: fash::FashError::TooManyPnodes(pnodes.len()),
            });
        }
        let index: HashMap<&str, u16> = pnodes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), i as u16))
            .collect();
        if index.len() != pnodes.len() {
            let mut seen = BTreeSet::new();
            let dup = pnodes.iter().find(|p| !seen.insert(p.as_str())).cloned();
            return Err(RingDbError::Ring {
                dir: self.dir.clone(),
                key: keys::PNODES.into(),
                source: fash::FashError::DuplicatePnode(dup.unwrap_or_default()),
            });
        }
        // `/VNODE/<v>` values by their exact bytes: one JSON parse per pnode.
        let by_json: HashMap<Vec<u8>, u16> = pnodes
            .iter()
            .enumerate()
            .map(|(i, p)| (serde_json::to_vec(p).expect("strings serialize"), i as u16))
            .collect();

        let mut owner = vec![UNASSIGNED; n as usize];
        let mut data_owner = vec![UNASSIGNED; n as usize];
        let mut extra_data: Vec<(u16, u32)> = Vec::new();
        let mut data: BTreeMap<u32, Value> = BTreeMap::new();
        let mut lists: Vec<Option<Vec<u32>>> = vec![None; pnodes.len()];
        let mut vnode_data: Option<Vec<u8>> = None;

        let mut it = self.db.new_iter().map_err(|e| RingDbError::Db {
            dir: self.dir.clone(),
            op: "scan",
            message: e.to_string(),
        })?;
        while it.advance() {
            let Some((k, val)) = it.current() else { break };
            match keys::classify(&k) {
                Key::Vnode(v) => {
                    let key = || String::from_utf8_lossy(&k).into_owned();
                    if v >= n {
                        return Err(self.inconsistent(
                            key(),
                            Inconsistency::OutOfRange {
                                vnode: v.into(),
                                vnode_count: n,
                            },
                        ));
                    }
                    let p = match by_json.get(&val[..]) {
                        Some(p) => *p,
                        None => match serde_json::from_slice::<Value>(&val) {
                            Ok(Value::String(s)) => {
                                return Err(
                                    self.inconsistent(key(), Inconsistency::UnknownPnode(s))
                                );
                            }
                            _ => return Err(self.bad(&key(), "a pnode string", &val)),
                        },
                    };
                    owner[v as usize] = p;
                }
                Key::UnderPnode(rest) => {
                    let key = || String::from_utf8_lossy(&k).into_owned();
                    if let Some(&p) = index.get(rest) {
                        lists[p as usize] = Some(self.vnode_numbers(&key(), &val, n)?);
                        continue;
                    }
                    let Some((p, v)) = keys::split_pnode_vnode(rest)
                        .and_then(|(p, v)| index.get(p).map(|i| (*i, v)))
                    else {
                        return Err(self.inconsistent(key(), Inconsistency::StrayKey));
                    };
                    if v >= n {
                        return Err(self.inconsistent(
                            key(),
                            Inconsistency::OutOfRange {
                                vnode: v.into(),
                                vnode_count: n,
                            },
                        ));
                    }
                    if data_owner[v as usize] == UNASSIGNED {
                        data_owner[v as usize] = p;
                    } else {
                        extra_data.push((p, v));
                    }
                    if &val[..] != b"1" {
                        let d = self.json(&key(), &val, "JSON vnode data")?;
                        data.insert(v, d);
                    }
                }
                Key::VnodeData => vnode_data = Some(val.to_vec()),
                _ => {}
            }
        }
        drop(it);

        for v in 0..n {
            let o = owner[v as usize];
            if o == UNASSIGNED {
                return Err(self.inconsistent(keys::vnode(v), Inconsistency::NoOwner));
            }
            let d = data_owner[v as usize];
            if d == UNASSIGNED {
                return Err(self.inconsistent(
                    keys::pnode_vnode(&pnodes[o as usize], v),
                    Inconsistency::NoData {
                        pnode: pnodes[o as usize].clone(),
                    },
                ));
            }
            if d != o {
                return Err(self.inconsistent(
                    keys::pnode_vnode(&pnodes[d as usize], v),
                    Inconsistency::DataOnOtherPnode {
                        owner: pnodes[o as usize].clone(),
                    },
                ));
            }
        }
        if let Some(&(p, v)) = extra_data.iter().find(|(p, v)| owner[*v as usize] != *p) {
            return Err(self.inconsistent(
                keys::pnode_vnode(&pnodes[p as usize], v),
                Inconsistency::DataOnOtherPnode {
                    owner: pnodes[owner[v as usize] as usize].clone(),
                },
            ));
        }

        let mut counts = vec![0u32; pnodes.len()];
        for o in &owner {
            counts[*o as usize] += 1;
        }
        let mut listed = vec![false; n as usize];
        for (p, list) in lists.iter().enumerate() {
            let key = keys::pnode(&pnodes[p]);
            let Some(list) = list else {
                return Err(RingDbError::MissingKey {
                    dir: self.dir.clone(),
                    key,
                    meaning: "a pnode /PNODE lists has no vnode list",
                });
            };
            for &v in list {
                if std::mem::replace(&mut listed[v as usize], true) {
                    return Err(self.inconsistent(key, Inconsistency::ListedTwice(v)));
                }
                if owner[v as usize] as usize != p {
                    return Err(self.inconsistent(
                        key,
                        Inconsistency::ListedButNotOwned {
                            vnode: v,
                            owner: pnodes[owner[v as usize] as usize].clone(),
                        },
                    ));
                }
            }
            if list.len() as u32 != counts[p] {
                let missing = (0..n)
                    .find(|v| owner[*v as usize] as usize == p && !listed[*v as usize])
                    .unwrap_or(0);
                return Err(
                    self.inconsistent(key, Inconsistency::OwnedButNotListed { vnode: missing })
                );
            }
        }

        let raw = vnode_data.ok_or_else(|| RingDbError::MissingKey {
            dir: self.dir.clone(),
            key: keys::VNODE_DATA.into(),
            meaning: "the list of vnodes with data is missing",
        })?;
        let listed: BTreeSet<u32> = self
            .vnode_numbers(keys::VNODE_DATA, &raw, n)?
            .into_iter()
            .collect();
        let with_data: BTreeSet<u32> = data.keys().copied().collect();
        if listed != with_data {
            return Err(self.inconsistent(
                keys::VNODE_DATA.into(),
                Inconsistency::DataList {
                    listed_only: listed.difference(&with_data).copied().collect(),
                    data_only: with_data.difference(&listed).copied().collect(),
                },
            ));
        }

        Ring::from_parts(header.space, pnodes, owner, data).map_err(|source| RingDbError::Ring {
            dir: self.dir.clone(),
            key: keys::PNODES.into(),
            source,
        })
    }

    /// Closes the directory (releases LevelDB's lock).
    pub fn close(mut self) -> Result<(), RingDbError> {
        self.db.close().map_err(|e| RingDbError::Db {
            dir: self.dir.clone(),
            op: "close",
            message: e.to_string(),
        })
    }
}

/// Opens `dir`, runs fash's load checks and reads the whole ring.
pub fn load(dir: &Path) -> Result<Ring, RingDbError> {
    let mut d = RingDir::open(dir)?;
    let ring = d.load()?;
    d.close()?;
    Ok(ring)
}

/// Opens `dir` and runs fash's load checks only.
pub fn check(dir: &Path) -> Result<Header, RingDbError> {
    let mut d = RingDir::open(dir)?;
    let h = d.check()?;
    d.close()?;
    Ok(h)
}

/// Every key and value of `dir`, in key order.
pub fn entries(dir: &Path) -> Result<Entries, RingDbError> {
    let mut d = RingDir::open(dir)?;
    let e = d.entries()?;
    d.close()?;
    Ok(e)
}
