//! `manatee-adm pg-status -H -o peername,role,pg-online,pg-repl,pg-lag`:
//! the columns the controller reads from a manatee zone (through CNAPI
//! execute, as sdcadm does), rendered by the simulator and parsed by the
//! controller. Column names and value formats are manatee-adm's (§4.3).

use crate::manatee::{PgStatusReport, format_lag};

/// The columns tritonctl asks for.
pub const COLUMNS: &str = "peername,role,pg-online,pg-repl,pg-lag";

/// One parsed row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The peer's zone name (zoneId).
    pub peername: String,
    pub role: String,
    pub pg_online: bool,
    /// `sync`, `async` or `-`: replication from this peer to its downstream.
    pub repl: String,
    /// Seconds behind its upstream; None for `-`.
    pub lag_seconds: Option<f64>,
}

/// Render rows for [`COLUMNS`] without a header (`-H`), whitespace separated.
pub fn render(report: &PgStatusReport) -> String {
    let mut out = String::new();
    for p in &report.peers {
        let repl = p
            .repl
            .as_ref()
            .map_or("-".to_string(), |r| r.sync_state.clone());
        let lag = p.lag.map_or("-".to_string(), format_lag);
        out.push_str(&format!(
            "{} {} {} {} {}\n",
            p.peer.zone_id,
            p.role,
            if p.online() { "ok" } else { "fail" },
            repl,
            lag
        ));
    }
    out
}

/// Parse `%dm%02ds` (and manatee-adm's day/hour forms) into seconds. `-`
/// (not applicable: the primary) is `None`. A lag too large to count, and a
/// lag that cannot be read (`?`, manatee-adm's "cannot be parsed", or any
/// other unit, which manatee's `lagInSeconds` calls an error) are the
/// largest lag, `u64::MAX` seconds: never a small or missing one, since a
/// missing lag reads as caught up and a standby whose lag nobody can read
/// must not pass for caught up before its primary is disrupted.
pub fn parse_lag(s: &str) -> Option<f64> {
    if s == "-" {
        return None;
    }
    Some(lag_seconds(s).unwrap_or(u64::MAX as f64))
}

fn lag_seconds(s: &str) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        if num.is_empty() {
            return None;
        }
        // Only digits: the one way to fail is a number beyond u64.
        let n: u64 = num.parse().unwrap_or(u64::MAX);
        num.clear();
        let unit: u64 = match c {
            'd' => 86400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.saturating_add(n.saturating_mul(unit));
    }
    num.is_empty().then_some(total as f64)
}

/// Parse the output of [`render`] (or the real command with the same `-o`).
pub fn parse(text: &str) -> Result<Vec<Row>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 5 {
                return Err(format!(
                    "unexpected pg-status line `{line}`: expected 5 columns ({COLUMNS})"
                ));
            }
            Ok(Row {
                peername: f[0].to_string(),
                role: f[1].to_string(),
                pg_online: f[2] == "ok",
                repl: f[3].to_string(),
                lag_seconds: parse_lag(f[4]),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_lags_saturate_instead_of_overflowing() {
        // Found by fuzzing: `999999999999999d` overflowed u64 (a panic in a
        // debug build, a wrapped small lag in a release build). A lag too
        // large to count is the largest lag, never a small or missing one:
        // a missing lag reads as caught up.
        let max = u64::MAX as f64;
        assert_eq!(parse_lag("999999999999999d"), Some(max));
        assert_eq!(parse_lag("18446744073709551615s1s"), Some(max));
        assert_eq!(parse_lag("99999999999999999999999m"), Some(max));
        assert_eq!(
            parse_lag("213503982334601d"),
            Some(213_503_982_334_601.0 * 86400.0)
        );
    }

    #[test]
    fn lags_and_rows() {
        assert_eq!(parse_lag("5m42s"), Some(342.0));
        assert_eq!(parse_lag("0m00s"), Some(0.0));
        assert_eq!(parse_lag("-"), None);
        // Unreadable lags are the largest, never caught up (they read as
        // None, i.e. caught up, before).
        let max = Some(u64::MAX as f64);
        assert_eq!(parse_lag("5x"), max);
        assert_eq!(parse_lag("?"), max);
        assert_eq!(parse_lag(""), max);
        assert_eq!(parse_lag("m"), max);
        let rows = parse("abc primary ok sync -\ndef sync fail - 0m03s\n").unwrap();
        assert_eq!(
            rows[1],
            Row {
                peername: "def".into(),
                role: "sync".into(),
                pg_online: false,
                repl: "-".into(),
                lag_seconds: Some(3.0)
            }
        );
        assert!(parse("too few").is_err());
    }
}
