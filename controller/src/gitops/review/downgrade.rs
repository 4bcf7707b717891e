//! Whether a target image is older than one a shard runs: a downgrade the
//! reviewer must see (issue #12, "the habits Triton operators bring").

use std::cmp::Ordering;

use reconcilers::manatee::ImageInfo;

/// The build time in a Triton image version (`20251104T182201Z`, also inside
/// `master-20251104T182201Z-g1a2b3c4`).
fn build_stamp(version: &str) -> Option<&str> {
    let b = version.as_bytes();
    (0..b.len().saturating_sub(15)).find_map(|i| {
        let s = &b[i..i + 16];
        let digits = |r: std::ops::Range<usize>| s[r].iter().all(u8::is_ascii_digit);
        (digits(0..8) && s[8] == b'T' && digits(9..15) && s[15] == b'Z')
            .then(|| &version[i..i + 16])
    })
}

/// A dotted numeric version (`1.2.3`, `v2.0`).
fn dotted(version: &str) -> Option<Vec<u64>> {
    let v = version.strip_prefix('v').unwrap_or(version);
    v.split('.').map(|p| p.parse().ok()).collect()
}

/// Why `target` is older than `running`, or None when it is not (or the two
/// cannot be compared). Build times first, then dotted versions, then the
/// manatee major.
pub(super) fn older(target: &ImageInfo, running: &ImageInfo) -> Option<String> {
    if target.uuid == running.uuid {
        return None;
    }
    if let (Some(t), Some(r)) = (build_stamp(&target.version), build_stamp(&running.version)) {
        return (t < r).then(|| format!("built {t}, before {r}"));
    }
    if let (Some(t), Some(r)) = (dotted(&target.version), dotted(&running.version))
        && t.cmp(&r) == Ordering::Less
    {
        return Some(format!(
            "version {} is older than {}",
            target.version, running.version
        ));
    }
    match (target.manatee_major, running.manatee_major) {
        (Some(t), Some(r)) if t < r => Some(format!("manatee v{t} is older than v{r}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(uuid: &str, version: &str, major: Option<u32>) -> ImageInfo {
        ImageInfo {
            uuid: uuid.into(),
            name: "sdc-manatee".into(),
            version: version.into(),
            state: "active".into(),
            manatee_major: major,
        }
    }

    #[test]
    fn an_older_build_time_version_or_major_is_a_downgrade() {
        let new = img("n", "master-20251104T182201Z-g1a2b3c4", Some(2));
        let old = img("o", "20240327T001755Z", Some(2));
        assert_eq!(
            older(&old, &new).as_deref(),
            Some("built 20240327T001755Z, before 20251104T182201Z")
        );
        assert_eq!(older(&new, &old), None);
        assert!(older(&img("a", "1.2.3", None), &img("b", "1.10.0", None)).is_some());
        assert!(older(&img("a", "1.10.0", None), &img("b", "1.2.3", None)).is_none());
        assert!(older(&img("a", "x", Some(1)), &img("b", "y", Some(2))).is_some());
        assert!(older(&img("a", "x", None), &img("b", "y", None)).is_none());
        assert!(older(&old, &old).is_none());
    }
}
