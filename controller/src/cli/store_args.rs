//! Which store the command line names: the checks on `--zk` made before
//! anything is sent, and which of `--zk`/`--data-dir` wins when the other
//! comes from the environment.

use clap::ArgMatches;
use clap::parser::ValueSource;

use super::StoreArgs;

/// A ZooKeeper connect string: `HOST[:PORT],...[/CHROOT]`, HOST a name, an
/// IPv4 address or a bracketed IPv6 address, PORT 1..65535 (2181 when
/// left out). Refused at once with the reason, never by a connect timeout.
pub fn parse_zk(s: &str) -> Result<String, String> {
    let bad = |why: String| {
        Err(format!(
            "`{s}` is not a ZooKeeper connect string (HOST:PORT[,HOST:PORT...][/CHROOT]): {why}"
        ))
    };
    // The chroot starts at the first `/` that is not a scheme's `tcp://`.
    let masked = s
        .replace("tcp+tls://", "          ")
        .replace("tcp://", "      ");
    let (hosts, chroot) = match masked.find('/') {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    if let Some(c) = chroot
        && (c.len() < 2 || c.ends_with('/') || c.contains("//"))
    {
        return bad(format!(
            "the chroot `{c}` must be a path like /zk, without a trailing /"
        ));
    }
    if hosts.trim().is_empty() {
        return bad("no host".into());
    }
    for part in hosts.split(',') {
        let part = part
            .strip_prefix("tcp://")
            .or_else(|| part.strip_prefix("tcp+tls://"))
            .unwrap_or(part);
        let (host, port) = if let Some(rest) = part.strip_prefix('[') {
            let Some((h, after)) = rest.split_once(']') else {
                return bad(format!("`{part}`: an IPv6 address needs its closing ]"));
            };
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return bad(format!("`{h}` is not an IPv6 address"));
            }
            match after {
                "" => (h, None),
                p if p.starts_with(':') => (h, Some(&p[1..])),
                _ => return bad(format!("`{part}`: expected :PORT after the address")),
            }
        } else {
            match part.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (part, None),
            }
        };
        if host.is_empty() {
            return bad(format!("`{part}`: no host"));
        }
        if !part.starts_with('[') && !valid_host_name(host) {
            return bad(format!(
                "`{host}` is not a host name or address (letters, digits, `-` and `.`)"
            ));
        }
        if let Some(p) = port {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => {}
                _ => return bad(format!("`{p}` is not a port (1-65535)")),
            }
        }
    }
    Ok(s.to_string())
}

fn valid_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn on_command_line(m: &ArgMatches, id: &str) -> Option<bool> {
    match m.value_source(id)? {
        ValueSource::CommandLine => Some(true),
        _ => Some(false),
    }
}

/// `--zk` and `--data-dir` name two stores: both on the command line, or
/// both in the environment, is an error; one on the command line wins over
/// the other from the environment.
pub fn resolve(store: &mut StoreArgs, m: &ArgMatches) -> Result<(), String> {
    match (on_command_line(m, "zk"), on_command_line(m, "data_dir")) {
        (Some(true), Some(true)) => {
            Err("--zk and --data-dir name two different stores; give one of them".into())
        }
        (Some(false), Some(false)) => Err(
            "TRITONCTL_ZK and TRITONCTL_DATA_DIR are both set and name two different stores; \
             unset one, or give --zk or --data-dir on the command line"
                .into(),
        ),
        (Some(false), Some(true)) => {
            store.zk = None;
            Ok(())
        }
        (Some(true), Some(false)) => {
            store.data_dir = None;
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings_are_checked_before_anything_is_sent() {
        for ok in [
            "127.0.0.1:2181",
            "10.99.99.11:2181,10.99.99.12:2181/tritonctl",
            "binder.coal.example.com",
            "[::1]:2181",
            "tcp://127.0.0.1:2181",
        ] {
            assert_eq!(parse_zk(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1:notaport",
            "127.0.0.1:2181:2181",
            "127.0.0.1:0",
            "127.0.0.1:70000",
            "http://127.0.0.1:2181",
            "a b:2181",
            "127.0.0.1:2181,",
            "127.0.0.1:2181/",
            "[::1:2181",
        ] {
            let e = parse_zk(bad).unwrap_err();
            assert!(e.contains("not a ZooKeeper connect string"), "{bad}: {e}");
        }
    }
}
