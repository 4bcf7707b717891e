//! Vnode sets as inclusive ranges: how documents write them and how
//! refusals and reviews show them.

/// Vnodes (any order, repeats ignored) as ascending inclusive ranges.
pub fn vnode_ranges(vnodes: &[u32]) -> Vec<(u32, u32)> {
    let mut sorted = vnodes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for v in sorted {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == v => *hi = v,
            _ => out.push((v, v)),
        }
    }
    out
}

/// Ranges as `0-9, 12, 20-29`, at most `max` of them, then `... N more
/// ranges`.
pub fn render_ranges(ranges: &[(u32, u32)], max: usize) -> String {
    let mut parts: Vec<String> = ranges
        .iter()
        .take(max)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if ranges.len() > max {
        parts.push(format!("... {} more ranges", ranges.len() - max));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_compact_and_bounded() {
        let r = vnode_ranges(&[8, 0, 1, 2, 5, 7, 2]);
        assert_eq!(r, vec![(0, 2), (5, 5), (7, 8)]);
        assert_eq!(render_ranges(&r, 8), "0-2, 5, 7-8");
        assert_eq!(render_ranges(&r, 1), "0-2, ... 2 more ranges");
        assert!(vnode_ranges(&[]).is_empty());
    }
}
