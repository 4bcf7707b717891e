//! The grammar of `spec.image.version` (a ManateeVersion's cross-check of the
//! image it names).
//!
//! IMGAPI stores an image's `version` as free text, but the images a
//! ManateeVersion names are Triton builds, and those carry the build stamp
//! of eng.git's Makefile, `$(BRANCH)-$(TIMESTAMP)-g$(GITSHA)`: for example
//! `master-20240101T000000Z-g1234567` (a mantav2-moray manifest in
//! research/triton-apis.md) or `release-20191205-20191205T010203Z-g0a1b2c3`.
//! Older sdc-manatee images, sdcadm's version gates (`20150109T184454Z`,
//! research/manatee.md §7.2) and our examples use the bare timestamp
//! `20240327T001755Z`. Images built outside eng.git are usually semver.
//!
//! Accepted, whole string:
//! - `[BRANCH-]YYYYMMDDTHHMMSSZ[-gSHA[-dirty]]`: BRANCH is letters, digits,
//!   `.`, `_` and `-`; the timestamp is a real UTC date and time; SHA is 7 to
//!   40 hex digits (`git describe --long --dirty` may append `-dirty`);
//! - `MAJOR.MINOR.PATCH[-PRE][+BUILD]` (semver), PRE and BUILD made of
//!   letters, digits, `.` and `-`.
//!
//! Anything else (`latest`, `the new one`, an empty string) is refused: the
//! version is compared with what IMGAPI reports and ordered by its
//! timestamp, and free text can be neither.

/// `Ok` if `v` follows the grammar above; otherwise why not, with a hint.
pub fn check_image_version(v: &str) -> Result<(), String> {
    if build_stamp(v) || semver(v) {
        return Ok(());
    }
    Err(format!(
        "`{v}` is not an image version: use the build stamp IMGAPI shows, e.g. \
         `20251104T182201Z` or `master-20250101T000000Z-g1234567`, or a semver like `1.2.3`"
    ))
}

fn build_stamp(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let Some(at) = parts.iter().position(|p| timestamp(p)) else {
        return false;
    };
    let branch_ok = parts[..at].iter().all(|p| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
    });
    let suffix_ok = match &parts[at + 1..] {
        [] => true,
        [sha] => git_sha(sha),
        [sha, "dirty"] => git_sha(sha),
        _ => false,
    };
    branch_ok && suffix_ok
}

/// `YYYYMMDDTHHMMSSZ` naming a real UTC date and time.
fn timestamp(p: &str) -> bool {
    let b = p.as_bytes();
    // ASCII first: the fields below are sliced by byte position.
    if b.len() != 16 || !p.is_ascii() || b[8] != b'T' || b[15] != b'Z' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = &p[r];
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (Some(year), Some(month), Some(day), Some(h), Some(m), Some(s)) = (
        digits(0..4),
        digits(4..6),
        digits(6..8),
        digits(9..11),
        digits(11..13),
        digits(13..15),
    ) else {
        return false;
    };
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1970 && (1..=days).contains(&day) && h < 24 && m < 60 && s <= 60
}

fn git_sha(p: &str) -> bool {
    p.strip_prefix('g').is_some_and(|hex| {
        (7..=40).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn semver(v: &str) -> bool {
    let (v, build) = match v.split_once('+') {
        Some((v, b)) => (v, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let label = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    let nums: Vec<&str> = core.split('.').collect();
    nums.len() == 3
        && nums
            .iter()
            .all(|n| !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(label)
        && build.is_none_or(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_build_stamps_and_semver_are_accepted() {
        for v in [
            "20240327T001755Z",
            "20251104T182201Z",
            "20141118T223437Z",
            "master-20240101T000000Z-g1234567",
            "release-20191205-20191205T010203Z-g0a1b2c3",
            "mantav1-20200102T030405Z-g0123456789abcdef0123456789abcdef01234567",
            "master-20240229T235959Z-g1234567-dirty",
            "1.2.3",
            "4.13.1",
            "1.0.0-rc.1+build.5",
        ] {
            assert_eq!(check_image_version(v), Ok(()), "{v}");
        }
    }

    #[test]
    fn a_multibyte_character_inside_a_timestamp_is_refused_not_a_panic() {
        // Found by fuzzing: 16 bytes with `T` at byte 8 and `Z` at byte 15,
        // but a two-byte `é` across a field boundary (byte 4, 6 or 11).
        for v in [
            "202é101T000000Z",
            "master-20240é1T000000Z-g1234567",
            "20240101T0é000Z",
        ] {
            let e = check_image_version(v).expect_err(v);
            assert!(e.contains("is not an image version"), "{v}: {e}");
        }
    }

    #[test]
    fn free_text_is_refused_with_a_hint() {
        for v in [
            "",
            "latest",
            "the new one",
            "20241332T000000Z",
            "20230229T000000Z",
            "20240327T251755Z",
            "20240327t001755z",
            "master-20240101T000000Z-1234567",
            "master-20240101T000000Z-g12",
            "master-20240101T000000Z-gXYZXYZX",
            "my branch-20240101T000000Z",
            "-20240101T000000Z",
            "1.2",
            "1.2.3.4",
            "v1.2.3",
            "1.2.3-",
            "20240327T001755Z ",
        ] {
            let e = check_image_version(v).expect_err(v);
            assert!(e.contains("e.g. `20251104T182201Z`"), "{v}: {e}");
        }
    }
}
