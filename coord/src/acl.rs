//! ZooKeeper access control: permissions, ids, ACL entries, and the digest
//! scheme's credentials.
//!
//! ZooKeeper checks an ACL on every node, never inherited: READ (get data,
//! list children), WRITE (set data), CREATE (make a child), DELETE (remove a
//! child), ADMIN (set the ACL). An id is `scheme:id`: `world:anyone`, the
//! `digest` scheme's `user:base64(sha1(user:password))`, and `auth` (empty
//! id), which the server replaces, at create, by every authenticated id of
//! the creating session: the server itself then records who created the
//! node. A session authenticates with `addauth digest user:password`
//! ([`DigestCredentials`]); digest authentication never fails, a wrong
//! password just yields an id nothing grants anything to.

use std::fmt;

use sha1::{Digest as _, Sha1};

/// A set of ZooKeeper permissions (the `perms` bit mask).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms(pub i32);

impl Perms {
    pub const NONE: Perms = Perms(0);
    pub const READ: Perms = Perms(1);
    pub const WRITE: Perms = Perms(2);
    pub const CREATE: Perms = Perms(4);
    pub const DELETE: Perms = Perms(8);
    pub const ADMIN: Perms = Perms(16);
    pub const ALL: Perms = Perms(31);

    pub fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Perms {
    type Output = Perms;
    fn bitor(self, rhs: Perms) -> Perms {
        Perms(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Perms {
    fn bitor_assign(&mut self, rhs: Perms) {
        self.0 |= rhs.0;
    }
}

/// `cdrwa` letters, as zkCli prints them.
impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (p, c) in [
            (Perms::CREATE, 'c'),
            (Perms::DELETE, 'd'),
            (Perms::READ, 'r'),
            (Perms::WRITE, 'w'),
            (Perms::ADMIN, 'a'),
        ] {
            if self.contains(p) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Perms({self})")
    }
}

/// An identity in an ACL: `scheme:id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub scheme: String,
    pub id: String,
}

impl Id {
    pub fn new(scheme: impl Into<String>, id: impl Into<String>) -> Id {
        Id {
            scheme: scheme.into(),
            id: id.into(),
        }
    }
    /// `world:anyone`: every client, authenticated or not.
    pub fn anyone() -> Id {
        Id::new("world", "anyone")
    }
    /// `auth:`: replaced by the server with the creator's authenticated ids.
    pub fn creator() -> Id {
        Id::new("auth", "")
    }
    /// `digest:user:base64(sha1(user:password))`, from the stored digest id.
    pub fn digest(digest_id: &str) -> Id {
        Id::new("digest", digest_id)
    }
    /// The user part of a digest id (`alice` of `digest:alice:X/Y=`).
    pub fn digest_user(&self) -> Option<&str> {
        (self.scheme == "digest")
            .then(|| self.id.split_once(':').map(|(u, _)| u))
            .flatten()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scheme, self.id)
    }
}

/// One ACL entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Acl {
    pub perms: Perms,
    pub id: Id,
}

impl Acl {
    pub fn new(perms: Perms, id: Id) -> Acl {
        Acl { perms, id }
    }
    /// `world:anyone:cdrwa`, ZooKeeper's open ACL (what a node gets when
    /// the creator says nothing).
    pub fn open() -> Vec<Acl> {
        vec![Acl::new(Perms::ALL, Id::anyone())]
    }
    /// Whether `acl` grants everything to everyone.
    pub fn is_open(acl: &[Acl]) -> bool {
        acl.iter()
            .any(|a| a.id == Id::anyone() && a.perms.contains(Perms::ALL))
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.id, self.perms)
    }
}

/// Check an ACL the way ZooKeeper does before storing it: not empty, known
/// schemes, digest ids of the form `user:hash`. `InvalidAcl` otherwise.
pub fn validate_acl(path: &str, acl: &[Acl]) -> crate::Result<()> {
    let bad = |why: String| Err(crate::CoordError::InvalidAcl(format!("{path}: {why}")));
    if acl.is_empty() {
        return bad("an empty ACL".into());
    }
    for a in acl {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => {}
            "auth" => {}
            "digest"
                if a.id
                    .id
                    .split_once(':')
                    .is_some_and(|(u, h)| !u.is_empty() && !h.is_empty()) => {}
            "ip" => {}
            _ => return bad(format!("unknown or malformed id {}", a.id)),
        }
        if a.perms.0 & !Perms::ALL.0 != 0 {
            return bad(format!("permissions {} out of range", a.perms.0));
        }
    }
    Ok(())
}

/// A secret that never shows in `Debug` or `Display` (logs, panics).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself: only for authentication and for writing the
    /// credentials file.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `addauth digest user:password` credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    pub user: String,
    pub secret: Secret,
}

impl DigestCredentials {
    pub fn new(user: impl Into<String>, secret: Secret) -> DigestCredentials {
        DigestCredentials {
            user: user.into(),
            secret,
        }
    }
    /// The bytes of the auth packet: `user:password`.
    pub fn auth_bytes(&self) -> Vec<u8> {
        format!("{}:{}", self.user, self.secret.expose()).into_bytes()
    }
    /// The digest id the server derives from these credentials.
    pub fn digest_id(&self) -> String {
        digest_id(&self.user, self.secret.expose())
    }
    /// The ACL id of these credentials.
    pub fn id(&self) -> Id {
        Id::digest(&self.digest_id())
    }
}

impl fmt::Debug for DigestCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestCredentials")
            .field("user", &self.user)
            .field("secret", &self.secret)
            .finish()
    }
}

/// ZooKeeper's `DigestAuthenticationProvider.generateDigest`:
/// `user:base64(sha1("user:password"))`.
pub fn digest_id(user: &str, password: &str) -> String {
    let hash = Sha1::digest(format!("{user}:{password}").as_bytes());
    format!("{user}:{}", base64(&hash))
}

/// Standard base64 with padding (what `java.util.Base64` and ZooKeeper's
/// `Base64.encode` produce).
fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ids_match_zookeeper() {
        // base64(sha1("super:superpw")), computed independently; the real
        // ZooKeeper tests (`tests/zk_acl.rs`) show the server agrees.
        assert_eq!(
            digest_id("super", "superpw"),
            "super:g9oN2HttPfn8MMWJZ2r45Np/LIA="
        );
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

    #[test]
    fn secrets_never_show() {
        let c = DigestCredentials::new("alice", Secret::new("hunter2"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn acls_are_checked_like_zookeeper() {
        assert!(validate_acl("/a", &[]).is_err());
        assert!(validate_acl("/a", &Acl::open()).is_ok());
        assert!(validate_acl("/a", &[Acl::new(Perms::READ, Id::new("digest", "nohash"))]).is_err());
        assert!(validate_acl("/a", &[Acl::new(Perms::READ, Id::new("x509", "CN=a"))]).is_err());
        assert_eq!(Perms::ALL.to_string(), "cdrwa");
        assert_eq!((Perms::READ | Perms::ADMIN).to_string(), "ra");
    }
}
