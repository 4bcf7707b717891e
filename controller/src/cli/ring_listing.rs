//! What `tritonctl ring` prints, as [`Listing`]s (so `-j`, `-o yaml`,
//! `-o COL,COL`, `-H` and `-o jsonpath=` work as everywhere else).

use fashdb::image::Stamp;
use serde_json::{Value, json};
use wire::fash::{self, KeyEncoding, Ring, RingDiff, transform_key};

use super::Failure;
use super::listing::Listing;

/// Compact vnode ranges: `0-9,12,14-15`.
pub fn ranges(vnodes: &[u32]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < vnodes.len() {
        let start = vnodes[i];
        let mut end = start;
        while i + 1 < vnodes.len() && vnodes[i + 1] == end + 1 {
            i += 1;
            end = vnodes[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

fn data_cell(d: &Value) -> String {
    match d {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `ring locate`: one row per key.
pub fn locate(
    ring: &Ring,
    bucket: Option<&str>,
    enc: KeyEncoding,
    keys: &[String],
) -> Result<Listing, Failure> {
    let mut rows = Vec::new();
    let mut items = Vec::new();
    let mut names = Vec::new();
    for key in keys {
        let hashed = bucket.map_or(key.as_str(), |b| transform_key(b, key));
        let node = ring
            .node(hashed, enc)
            .map_err(|e| Failure::error(format!("key {key:?}: {e}")))?;
        rows.push(vec![
            key.clone(),
            node.vnode.to_string(),
            node.pnode.to_string(),
            data_cell(node.data),
            hashed.to_string(),
        ]);
        names.push(node.pnode.to_string());
        items.push(json!({
            "key": key,
            "bucket": bucket,
            "hashed": hashed,
            "vnode": node.vnode,
            "pnode": node.pnode,
            "data": node.data,
        }));
    }
    Ok(Listing {
        columns: &["KEY", "VNODE", "PNODE", "DATA", "HASHED"],
        narrow: 4,
        rows,
        names,
        value: Value::Array(items),
    })
}

/// The summary line above `ring show`'s table.
pub fn summary(ring: &Ring, stamp: Option<&Stamp>, label: &str) -> String {
    let mut s = format!(
        "ring {label}: {} vnodes, {} pnodes, {}, fash {}",
        ring.vnode_count(),
        ring.pnodes().len(),
        fash::ALGORITHM,
        fash::VERSION
    );
    if let Some(st) = stamp {
        s += &format!(
            " (stamp: image {} made {} in {})",
            st.image_uuid, st.date, st.source_zone
        );
    }
    s + "\n"
}

/// `ring show`: one row per pnode, in `/PNODE` order.
pub fn show(ring: &Ring, stamp: Option<&Stamp>, label: &str) -> Listing {
    let owner = ring.owner_indices();
    let mut with_data = vec![0u32; ring.pnodes().len()];
    for (v, _) in ring.data_vnodes() {
        with_data[owner[v as usize] as usize] += 1;
    }
    let mut rows = Vec::new();
    let mut pnodes = Vec::new();
    for ((p, n), d) in ring.vnode_counts().zip(&with_data) {
        rows.push(vec![p.to_string(), n.to_string(), d.to_string()]);
        pnodes.push(json!({"pnode": p, "vnodes": n, "dataVnodes": d}));
    }
    let data: Vec<Value> = ring
        .data_vnodes()
        .map(|(v, d)| json!({"vnode": v, "pnode": ring.pnodes()[owner[v as usize] as usize], "data": d}))
        .collect();
    Listing {
        columns: &["PNODE", "VNODES", "DATA"],
        narrow: 3,
        rows,
        names: ring.pnodes().to_vec(),
        value: json!({
            "ring": label,
            "vnodes": ring.vnode_count(),
            "algorithm": {
                "NAME": fash::ALGORITHM,
                "MAX": fash::SHA256_MAX_HEX,
                "VNODE_HASH_INTERVAL": ring.interval_hex(),
            },
            "version": fash::VERSION,
            "stamp": stamp,
            "pnodes": pnodes,
            "dataVnodes": data,
        }),
    }
}

/// The vnodes with data, below `ring show`'s pnode table.
pub fn data_vnodes(ring: &Ring) -> Listing {
    let owner = ring.owner_indices();
    let rows = ring
        .data_vnodes()
        .map(|(v, d)| {
            vec![
                v.to_string(),
                ring.pnodes()[owner[v as usize] as usize].clone(),
                data_cell(d),
            ]
        })
        .collect();
    Listing {
        columns: &["VNODE", "PNODE", "DATA"],
        narrow: 3,
        rows,
        names: Vec::new(),
        value: Value::Null,
    }
}

/// `ring diff`: one row per (from, to) pair of pnodes.
pub fn diff(d: &RingDiff, a: &str, b: &str) -> Listing {
    let rows = d
        .moves
        .iter()
        .map(|m| {
            vec![
                m.from.clone(),
                m.to.clone(),
                m.vnodes.len().to_string(),
                ranges(&m.vnodes),
            ]
        })
        .collect();
    let moves: Vec<Value> = d
        .moves
        .iter()
        .map(|m| json!({"from": m.from, "to": m.to, "count": m.vnodes.len(), "vnodes": m.vnodes}))
        .collect();
    Listing {
        columns: &["FROM", "TO", "COUNT", "VNODES"],
        narrow: 4,
        rows,
        names: d
            .moves
            .iter()
            .map(|m| format!("{}->{}", m.from, m.to))
            .collect(),
        value: json!({
            "a": a,
            "b": b,
            "identical": d.is_empty(),
            "movedVnodes": d.moved_vnodes(),
            "moves": moves,
            "dataChanges": d.data_changes,
            "pnodesAdded": d.pnodes_added,
            "pnodesRemoved": d.pnodes_removed,
        }),
    }
}

/// Lines under the diff table: data changes and pnodes added or removed.
pub fn diff_notes(d: &RingDiff) -> String {
    let mut out = String::new();
    for c in &d.data_changes {
        out += &format!(
            "vnode {}: data {} -> {}\n",
            c.vnode,
            data_cell(&c.before),
            data_cell(&c.after)
        );
    }
    for p in &d.pnodes_added {
        out += &format!("pnode added: {p}\n");
    }
    for p in &d.pnodes_removed {
        out += &format!("pnode removed: {p}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnode_ranges_are_compact() {
        assert_eq!(ranges(&[0, 1, 2, 3, 5, 7, 8]), "0-3,5,7-8");
        assert_eq!(ranges(&[4]), "4");
        assert_eq!(ranges(&[]), "");
    }
}
