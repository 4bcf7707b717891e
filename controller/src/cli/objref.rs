//! Naming documents on the command line, as kubectl does: `KIND NAME` or
//! `KIND/NAME`, the kind in any case, singular or plural, or short
//! (`mv`, `hs`, `st`).

use crds::Kind;

use super::Failure;

pub fn parse_kind(s: &str) -> Result<Kind, Failure> {
    Kind::parse(s).ok_or_else(|| {
        Failure::invalid(format!(
            "unknown kind `{s}`; use HeadnodeSet (hs), ManateeVersion (mv) or ShardTopology (st)"
        ))
    })
}

/// A kind and, when given, a name: `KIND`, `KIND NAME` or `KIND/NAME`.
pub fn kind_and_name(first: &str, second: Option<&str>) -> Result<(Kind, Option<String>), Failure> {
    match (first.split_once('/'), second) {
        (Some((k, n)), None) => {
            if n.is_empty() || n.contains('/') {
                return Err(Failure::invalid(format!(
                    "`{first}`: expected KIND/NAME or KIND NAME, e.g. manateeversion/sdc"
                )));
            }
            Ok((parse_kind(k)?, Some(n.to_string())))
        }
        (Some(_), Some(extra)) => Err(Failure::invalid(format!(
            "`{first} {extra}`: give KIND/NAME or KIND NAME, not both"
        ))),
        (None, name) => {
            if name.is_some_and(|n| n.is_empty() || n.contains('/')) {
                return Err(Failure::invalid(format!(
                    "`{first} {}`: expected KIND NAME, e.g. manateeversion sdc",
                    name.unwrap_or_default()
                )));
            }
            Ok((parse_kind(first)?, name.map(str::to_string)))
        }
    }
}

/// One document: `KIND NAME` or `KIND/NAME`.
pub fn object(first: &str, second: Option<&str>) -> Result<(Kind, String), Failure> {
    match kind_and_name(first, second)? {
        (kind, Some(name)) => Ok((kind, name)),
        (_, None) => Err(Failure::invalid(format!(
            "`{first}`: expected KIND/NAME or KIND NAME, e.g. manateeversion/sdc"
        ))),
    }
}

/// The document named does not exist (exit 1: the request can be fixed).
pub fn not_found(kind: Kind, name: &str) -> Failure {
    Failure::invalid(format!(
        "{kind} `{name}` not found; `tritonctl get {}` lists what is stored",
        kind.short()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_and_every_kind_name_are_accepted() {
        for (a, b) in [
            ("mv/sdc", None),
            ("mv", Some("sdc")),
            ("ManateeVersion/sdc", None),
            ("manateeversions", Some("sdc")),
            ("MV", Some("sdc")),
        ] {
            assert_eq!(
                object(a, b).unwrap(),
                (Kind::ManateeVersion, "sdc".to_string()),
                "{a} {b:?}"
            );
        }
        assert_eq!(
            kind_and_name("shardtopologies", None).unwrap(),
            (Kind::ShardTopology, None)
        );
    }

    #[test]
    fn ambiguous_or_incomplete_references_are_refused() {
        for (a, b) in [
            ("mv/sdc", Some("x")),
            ("mv/", None),
            ("mv", None),
            ("pod/x", None),
            ("mv/a/b", None),
        ] {
            let e = object(a, b).unwrap_err();
            assert_eq!(e.code, super::super::EXIT_INVALID, "{a} {b:?}");
        }
    }
}
