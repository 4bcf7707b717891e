//! Writing a ring directory the way fash writes one.
//!
//! The order is fash's (`createNewRing`, and `deserialize` for a ring that
//! carries data): `VNODE_COUNT`; the vnodes in batches of
//! [`keys::BATCH_VNODES`], each vnode as `/VNODE/<v>` then `/PNODE/<p>/<v>`;
//! each pnode's `/PNODE/<p>` list (ascending) and `/PNODE` (ring order);
//! `VNODE_DATA`; then `ALGORITHM`, `VERSION` and `COMPLETE` in one last batch,
//! so a directory without `COMPLETE` is a ring whose writing never finished.
//! Blocks are not compressed (fash opens with `compression: false`).

use std::fmt::Write as _;
use std::path::Path;

use rusty_leveldb::{DB, Options, WriteBatch};
use serde_json::Value;
use wire::fash::{self, Ring};

use crate::error::RingDbError;
use crate::keys;

/// The JSON of a vnode's data as stored (`1` unless set).
fn data_json(ring: &Ring, v: u32) -> Vec<u8> {
    match ring.data(v) {
        Ok(Value::Number(n)) if n.as_u64() == Some(1) => b"1".to_vec(),
        Ok(d) => serde_json::to_vec(d).expect("JSON values serialize"),
        Err(_) => b"1".to_vec(),
    }
}

fn db_err<'a>(
    dir: &'a Path,
    op: &'static str,
) -> impl Fn(rusty_leveldb::Status) -> RingDbError + 'a {
    move |e| RingDbError::Db {
        dir: dir.to_path_buf(),
        op,
        message: e.to_string(),
    }
}

/// Options for a new ring directory, as fash's `LEVEL_CONFIG`.
fn new_ring_options() -> Options {
    Options {
        create_if_missing: true,
        // No compression, as fash creates rings.
        compressor: 0,
        // Fewer, larger tables: a 10,000,000-vnode ring is a gigabyte of
        // keys and values, and every memtable flush feeds compactions.
        write_buffer_size: 64 << 20,
        max_file_size: 32 << 20,
        ..Options::default()
    }
}

/// Writes `ring` into `dir`, which must not exist or be empty (fash's
/// `errorIfExists`). The directory is complete only when this returns Ok.
pub fn write_ring(dir: &Path, ring: &Ring) -> Result<(), RingDbError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|source| RingDbError::Io {
            dir: dir.to_path_buf(),
            source,
        })?;
        if entries.next().is_some() {
            return Err(RingDbError::NotEmpty {
                dir: dir.to_path_buf(),
            });
        }
    }
    let mut db = DB::open(dir, new_ring_options()).map_err(|e| RingDbError::Open {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let put_err = db_err(dir, "write");
    let n = ring.vnode_count();
    db.put(keys::VNODE_COUNT.as_bytes(), n.to_string().as_bytes())
        .map_err(&put_err)?;

    let pnodes = ring.pnodes();
    let pnode_json: Vec<Vec<u8>> = pnodes
        .iter()
        .map(|p| serde_json::to_vec(p).expect("strings serialize"))
        .collect();
    let owner = ring.owner_indices();
    let mut key = String::new();
    let mut start = 0u32;
    while start < n {
        let end = start.saturating_add(keys::BATCH_VNODES).min(n);
        let mut batch = WriteBatch::default();
        for v in start..end {
            let p = owner[v as usize] as usize;
            key.clear();
            write!(key, "/VNODE/{v}").expect("writing to a String");
            batch.put(key.as_bytes(), &pnode_json[p]);
            key.clear();
            write!(key, "/PNODE/{}/{v}", pnodes[p]).expect("writing to a String");
            batch.put(key.as_bytes(), &data_json(ring, v));
        }
        db.write(batch, false).map_err(&put_err)?;
        start = end;
    }

    // Each pnode's vnodes, ascending, in one pass.
    let mut lists: Vec<String> = vec![String::from("["); pnodes.len()];
    for (v, p) in owner.iter().enumerate() {
        let l = &mut lists[*p as usize];
        if l.len() > 1 {
            l.push(',');
        }
        write!(l, "{v}").expect("writing to a String");
    }
    for (p, mut l) in pnodes.iter().zip(lists) {
        l.push(']');
        db.put(keys::pnode(p).as_bytes(), l.as_bytes())
            .map_err(&put_err)?;
    }
    db.put(
        keys::PNODES.as_bytes(),
        &serde_json::to_vec(pnodes).expect("strings serialize"),
    )
    .map_err(&put_err)?;
    db.put(keys::VNODE_DATA.as_bytes(), &vnode_data_json(ring))
        .map_err(&put_err)?;

    let mut last = WriteBatch::default();
    let algorithm = serde_json::json!({
        "NAME": fash::ALGORITHM,
        "MAX": fash::SHA256_MAX_HEX,
        "VNODE_HASH_INTERVAL": ring.interval_hex(),
    });
    last.put(
        keys::ALGORITHM.as_bytes(),
        &serde_json::to_vec(&algorithm).expect("JSON values serialize"),
    );
    last.put(
        keys::VERSION.as_bytes(),
        &serde_json::to_vec(fash::VERSION).expect("strings serialize"),
    );
    last.put(keys::COMPLETE.as_bytes(), b"1");
    db.write(last, true).map_err(&put_err)?;
    // Everything into tables, so that a reader does not replay the log.
    db.compact_range(b"", &[0xff; 16])
        .map_err(db_err(dir, "compaction"))?;
    db.close().map_err(db_err(dir, "close"))?;
    Ok(())
}

/// `VNODE_DATA` as fash's `deserialize` builds it: pnode by pnode (ring
/// order), ascending within a pnode.
fn vnode_data_json(ring: &Ring) -> Vec<u8> {
    let owner = ring.owner_indices();
    let mut by_pnode: Vec<Vec<u32>> = vec![Vec::new(); ring.pnodes().len()];
    for (v, _) in ring.data_vnodes() {
        by_pnode[owner[v as usize] as usize].push(v);
    }
    let all: Vec<u32> = by_pnode.into_iter().flatten().collect();
    serde_json::to_vec(&all).expect("numbers serialize")
}
