//! Small value types shared by the kinds.

use std::time::Duration;

/// Parse a human duration: `90s`, `15m`, `2h`, `1h30m`, `500ms`, `1d`, or a
/// bare number of seconds. The one duration syntax of tritonctl: document
/// fields (`catchUpTimeout`, a window's `duration`, ...) and command-line
/// flags (`--timeout`, `--session-timeout`, ...) all parse with it. Zero is
/// a valid duration here (`wait --timeout 0s`); a field where zero cannot be
/// meant rejects it in `validate`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let too_large = || format!("`{s}`: duration too large");
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| too_large());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!(
                "`{s}` is not a duration like 90s, 15m, 2h or 1h30m"
            ));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| too_large())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "d" => n.checked_mul(86400).map(Duration::from_secs),
            _ => {
                return Err(format!(
                    "`{s}`: unknown unit `{unit}` (use ms, s, m, h or d)"
                ));
            }
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(too_large)?;
    }
    Ok(total)
}

/// Whether `s` is a canonical lowercase UUID (`8-4-4-4-12` hex).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// A server reference: a CNAPI server UUID or its hostname.
pub fn check_server_ref(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("server must be a CNAPI server UUID or hostname, not empty".into());
    }
    let looks_like_uuid = s.len() == 36 && s.matches('-').count() == 4;
    if looks_like_uuid && !is_uuid(s) {
        return Err(format!(
            "`{s}` looks like a UUID but is not a lowercase 8-4-4-4-12 hex UUID"
        ));
    }
    if !looks_like_uuid
        && !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
    {
        return Err(format!("`{s}` is neither a UUID nor a valid hostname"));
    }
    Ok(())
}

/// Manatee shard names: `sdc` in Triton, `<N>.moray.<domain>` in Manta.
pub fn check_shard_name(s: &str) -> Result<(), String> {
    if s == "sdc" {
        return Ok(());
    }
    let mut parts = s.splitn(3, '.');
    let n = parts.next().unwrap_or("");
    let moray = parts.next().unwrap_or("");
    let domain = parts.next().unwrap_or("");
    if n.parse::<u32>().is_err() || moray != "moray" || domain.is_empty() {
        return Err(format!(
            "`{s}` is not a manatee shard name: use `sdc` or `<N>.moray.<domain>`, e.g. `2.moray.us-east.joyent.us`"
        ));
    }
    Ok(())
}

/// The shard number of a Manta shard name (`2.moray.x` -> 2).
pub fn shard_number(s: &str) -> Option<u32> {
    s.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn huge_durations_are_an_error_not_a_panic() {
        for s in [
            "999999999999999999m",
            "307445734561825861h",
            "213503982334602d",
            "18446744073709551615s18446744073709551615s",
            "99999999999999999999",
            "99999999999999999999s",
        ] {
            let e = parse_duration(s).expect_err(s);
            assert!(e.contains("too large"), "{s}: {e}");
        }
    }

    #[test]
    fn names() {
        assert!(is_uuid("2a3d1f0e-9b8c-4d7e-a6f5-0123456789ab"));
        assert!(!is_uuid("2A3D1F0E-9B8C-4D7E-A6F5-0123456789AB"));
        assert!(check_server_ref("headnode0").is_ok());
        assert!(check_server_ref("2a3d1f0e-9b8c-4d7e-a6f5-0123456789aZ").is_err());
        assert!(check_shard_name("sdc").is_ok());
        assert!(check_shard_name("2.moray.us-east.joyent.us").is_ok());
        assert!(check_shard_name("moray.us-east").is_err());
        assert_eq!(shard_number("12.moray.x"), Some(12));
    }
}
