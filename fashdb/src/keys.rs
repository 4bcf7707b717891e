//! The keys of fash's LevelDB ring layout (node-fash `lib/backend/leveldb.js`,
//! research/resharding.md §1.7). Keys are UTF-8; every value is JSON.

/// `VNODE_COUNT` → number of vnodes.
pub const VNODE_COUNT: &str = "VNODE_COUNT";
/// `VNODE_DATA` → array of the vnodes whose data is not `1`.
pub const VNODE_DATA: &str = "VNODE_DATA";
/// `/PNODE` → array of pnodes, ring order.
pub const PNODES: &str = "/PNODE";
/// `ALGORITHM` → `{"NAME", "MAX", "VNODE_HASH_INTERVAL"}`.
pub const ALGORITHM: &str = "ALGORITHM";
/// `VERSION` → fash's version string.
pub const VERSION: &str = "VERSION";
/// `COMPLETE` → `1`, written last: without it a ring does not load.
pub const COMPLETE: &str = "COMPLETE";

/// fash writes `/VNODE/*` and `/PNODE/*/*` in batches of this many vnodes.
pub const BATCH_VNODES: u32 = 1000;

const VNODE_PREFIX: &str = "/VNODE/";
const PNODE_PREFIX: &str = "/PNODE/";

/// `/VNODE/<v>` → the pnode owning v (decimal, no padding).
pub fn vnode(v: u32) -> String {
    format!("{VNODE_PREFIX}{v}")
}

/// `/PNODE/<p>` → array of p's vnodes.
pub fn pnode(p: &str) -> String {
    format!("{PNODE_PREFIX}{p}")
}

/// `/PNODE/<p>/<v>` → the data of vnode v (default `1`).
pub fn pnode_vnode(p: &str, v: u32) -> String {
    format!("{PNODE_PREFIX}{p}/{v}")
}

/// A key of a ring directory, recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    VnodeCount,
    VnodeData,
    Pnodes,
    Algorithm,
    Version,
    Complete,
    /// `/VNODE/<v>`.
    Vnode(u32),
    /// `/PNODE/<rest>`: a pnode's vnode list or one vnode's data; which one
    /// depends on the pnodes `/PNODE` lists (pnode names hold slashes).
    UnderPnode(&'a str),
    /// Anything else.
    Other,
}

/// Decimal without sign or leading zeros, as `%d` prints a vnode.
fn parse_vnode(s: &str) -> Option<u32> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

pub fn classify(key: &[u8]) -> Key<'_> {
    let Ok(k) = std::str::from_utf8(key) else {
        return Key::Other;
    };
    match k {
        VNODE_COUNT => Key::VnodeCount,
        VNODE_DATA => Key::VnodeData,
        PNODES => Key::Pnodes,
        ALGORITHM => Key::Algorithm,
        VERSION => Key::Version,
        COMPLETE => Key::Complete,
        _ => {
            if let Some(v) = k.strip_prefix(VNODE_PREFIX) {
                parse_vnode(v).map_or(Key::Other, Key::Vnode)
            } else if let Some(rest) = k.strip_prefix(PNODE_PREFIX) {
                Key::UnderPnode(rest)
            } else {
                Key::Other
            }
        }
    }
}

/// Splits `<p>/<v>` (the part of `/PNODE/<p>/<v>` after `/PNODE/`) when the
/// last segment is a vnode number.
pub fn split_pnode_vnode(rest: &str) -> Option<(&str, u32)> {
    let (p, v) = rest.rsplit_once('/')?;
    Some((p, parse_vnode(v)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fash_s() {
        assert_eq!(vnode(7), "/VNODE/7");
        assert_eq!(pnode("tcp://1.moray:2020"), "/PNODE/tcp://1.moray:2020");
        assert_eq!(
            pnode_vnode("tcp://1.moray:2020", 4),
            "/PNODE/tcp://1.moray:2020/4"
        );
        assert_eq!(classify(b"/VNODE/12"), Key::Vnode(12));
        assert_eq!(classify(b"/VNODE/012"), Key::Other);
        assert_eq!(classify(b"/PNODE"), Key::Pnodes);
        assert_eq!(
            classify(b"/PNODE/tcp://a:2020/3"),
            Key::UnderPnode("tcp://a:2020/3")
        );
        assert_eq!(
            split_pnode_vnode("tcp://a:2020/3"),
            Some(("tcp://a:2020", 3))
        );
        assert_eq!(split_pnode_vnode("tcp://a:2020"), None);
        assert_eq!(classify(b"COMPLETE"), Key::Complete);
        assert_eq!(classify(b"junk"), Key::Other);
    }
}
