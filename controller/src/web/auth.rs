//! Who may look at the web view: the identities of tritonctl's access
//! control (`auth/roles` in ZooKeeper), by HTTP Basic authentication.
//!
//! Why Basic against the role table: the identities already exist, each
//! with a secret its owner holds and a digest id in the table
//! (`name:base64(sha1(name:secret))`, what ZooKeeper's ACLs name). A
//! browser sends `name:secret`; the server computes the digest id the same
//! way ZooKeeper does and compares it with the table's, so there is no
//! second secret to hand out or revoke, and removing an identity (`tritonctl
//! auth remove`) shuts it out of the web view at the next request. Every
//! identity in the table is a reader (the policy grants every identity
//! read), so any role may look; the view itself is read-only. Basic sends
//! the secret in the clear on every request: hence loopback by default
//! (reach a remote controller through an SSH tunnel, or put TLS in front).
//!
//! With no role table (the embedded store, or a ZooKeeper never locked
//! down) the tree is open to anyone who reaches it, and so is the view.

use coord::Coordination;

use crate::auth::roles::Roles;

/// What a request may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// No role table: access control was never set up.
    Open,
    /// An identity of the table, its secret checked.
    Identity(String),
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("sign in as a tritonctl identity (HTTP Basic: identity and secret)")]
    NoCredentials,
    #[error("unknown identity or wrong secret")]
    BadCredentials,
    #[error("the role table cannot be read: {0}")]
    Table(String),
}

/// `Authorization: Basic base64(user:secret)` -> (user, secret).
pub fn basic(header: &str) -> Option<(String, String)> {
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let bytes = decode_base64(b64.trim())?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// Equal without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decide on a request's `Authorization` header against `roles` (None: no
/// table).
pub fn decide(roles: Option<&Roles>, header: Option<&str>) -> Result<Access, Refused> {
    let Some(roles) = roles else {
        return Ok(Access::Open);
    };
    let (user, secret) = header.and_then(basic).ok_or(Refused::NoCredentials)?;
    let digest = coord::acl::digest_id(&user, &secret);
    match roles.identities.get(&user) {
        Some(id) if !id.roles.is_empty() && same(id.digest.as_bytes(), digest.as_bytes()) => {
            Ok(Access::Identity(user))
        }
        _ => Err(Refused::BadCredentials),
    }
}

/// Read the table and decide.
pub async fn check(
    coord: &std::sync::Arc<dyn Coordination>,
    header: Option<&str>,
) -> Result<Access, Refused> {
    let roles = Roles::load(coord)
        .await
        .map_err(|e| Refused::Table(e.to_string()))?;
    decide(roles.as_ref().map(|(r, _)| r), header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::roles::{Identity, Role};

    fn table() -> Roles {
        let mut r = Roles::default();
        r.identities.insert(
            "vera".into(),
            Identity {
                digest: coord::acl::digest_id("vera", "vera-secret-0123456789"),
                roles: [Role::Viewer].into(),
                added: String::new(),
                added_by: String::new(),
            },
        );
        r
    }

    fn header(user_secret: &str) -> String {
        // base64 of the ASCII text, by the same rules the decoder reads.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = user_secret.as_bytes();
        let mut s = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                s.push(if i <= c.len() {
                    T[((n >> (18 - 6 * i)) & 63) as usize] as char
                } else {
                    '='
                });
            }
        }
        format!("Basic {s}")
    }

    #[test]
    fn a_viewer_with_its_secret_may_look_and_nobody_else() {
        let r = table();
        assert_eq!(
            decide(Some(&r), Some(&header("vera:vera-secret-0123456789"))),
            Ok(Access::Identity("vera".into()))
        );
        assert_eq!(
            decide(Some(&r), Some(&header("vera:wrong-secret-0123456789"))),
            Err(Refused::BadCredentials)
        );
        assert_eq!(
            decide(Some(&r), Some(&header("mallory:vera-secret-0123456789"))),
            Err(Refused::BadCredentials)
        );
        assert_eq!(decide(Some(&r), None), Err(Refused::NoCredentials));
        assert_eq!(
            decide(Some(&r), Some("Bearer x")),
            Err(Refused::NoCredentials)
        );
        // No role table: access control was never set up.
        assert_eq!(decide(None, None), Ok(Access::Open));
    }

    #[test]
    fn basic_headers_decode_with_and_without_padding() {
        assert_eq!(
            basic(&header("a:b")),
            Some(("a".to_string(), "b".to_string()))
        );
        assert_eq!(
            basic(&header("ab:cd")),
            Some(("ab".to_string(), "cd".to_string()))
        );
        assert_eq!(
            basic("Basic dXNlcjpwYXNz"),
            Some(("user".to_string(), "pass".to_string()))
        );
        assert_eq!(basic("Basic !!!"), None);
    }
}
