//! Small value types shared by the kinds.

use std::time::Duration;

/// Parse a human duration: `90s`, `15m`, `2h`, `1h30m`, `500ms`, or a bare
/// number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
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
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86400),
            _ => {
                return Err(format!(
                    "`{s}`: unknown unit `{unit}` (use ms, s, m, h or d)"
                ));
            }
        };
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
