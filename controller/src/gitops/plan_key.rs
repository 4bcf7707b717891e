//! The key saved plans are signed with, and the HMAC-SHA256 of one part of
//! a plan (what is MAC'd is [`super::signature`]'s business).
//!
//! The key is 32 random bytes from the operating system, kept in the
//! coordination store at [`crate::layout::plan_key_path`] and created on
//! first use (a create that only one first user wins; the others read the
//! winner's). Whoever can read that node can sign and verify plans: with
//! access control on (`tritonctl auth lock`, `auth::policy`: `secrets/<name>`
//! is the controller's alone), that is tritonctl's own identity (the
//! controller's, which a GitOps pipeline runs `plan` and `apply --plan`
//! with), and not the operators' roles. A plan's JSON can be read and
//! edited by anyone who holds the file; without the key an edit cannot be
//! signed again, so `apply --plan` refuses it.

use coord::{CoordError, Coordination, CreateMode};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of key.
pub const KEY_LEN: usize = 32;

/// The algorithm named in a signature.
pub const ALGORITHM: &str = "hmac-sha256";

/// The plan signing key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PlanKey([u8; KEY_LEN]);

impl std::fmt::Debug for PlanKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlanKey(id {})", self.id())
    }
}

/// Why the key could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "this store has no plan signing key ({path}), so no plan was signed against it: make the plan with `tritonctl plan` against this store"
    )]
    Missing { path: String },
    #[error(
        "cannot read the plan signing key at {path}: {source}. Plans are signed and verified with a key only tritonctl's own identity (the controller's) can read: run `tritonctl plan` and `tritonctl apply --plan` with the controller's credentials, as the GitOps pipeline does"
    )]
    Unreadable { path: String, source: CoordError },
    #[error(
        "cannot create the plan signing key at {path}: {source}. It is created on first use by an identity allowed to write it (the controller's)"
    )]
    Uncreatable { path: String, source: CoordError },
    #[error(
        "the plan signing key at {path} holds {len} bytes, not {KEY_LEN}: it was not written by tritonctl; nothing can be signed or verified with it"
    )]
    Corrupt { path: String, len: usize },
    #[error("the operating system gave no random bytes for a new plan signing key: {0}")]
    Random(String),
}

impl PlanKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> PlanKey {
        PlanKey(bytes)
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<PlanKey, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(PlanKey(bytes))
    }

    /// The store's key; [`KeyError::Missing`] when there is none yet.
    pub async fn load(coord: &dyn Coordination) -> Result<PlanKey, KeyError> {
        let path = crate::layout::plan_key_path();
        match coord.get(&path).await {
            Ok((data, _)) => match <[u8; KEY_LEN]>::try_from(data.as_slice()) {
                Ok(bytes) => Ok(PlanKey(bytes)),
                Err(_) => Err(KeyError::Corrupt {
                    path,
                    len: data.len(),
                }),
            },
            Err(CoordError::NoNode(_)) => Err(KeyError::Missing { path }),
            Err(source) => Err(KeyError::Unreadable { path, source }),
        }
    }

    /// The store's key, created now if there is none. Safe against a
    /// concurrent first use: one create wins, every other user reads it.
    pub async fn load_or_create(coord: &dyn Coordination) -> Result<PlanKey, KeyError> {
        match PlanKey::load(coord).await {
            Err(KeyError::Missing { path }) => {
                let fresh = PlanKey::generate()?;
                let dir = path.rsplit_once('/').map_or("/", |(d, _)| d);
                let uncreatable = |source| KeyError::Uncreatable {
                    path: path.clone(),
                    source,
                };
                coord.mkdirp(dir).await.map_err(uncreatable)?;
                match coord.create(&path, &fresh.0, CreateMode::Persistent).await {
                    Ok(_) => Ok(fresh),
                    Err(CoordError::NodeExists(_)) => PlanKey::load(coord).await,
                    Err(e) => Err(uncreatable(e)),
                }
            }
            other => other,
        }
    }

    fn mac(&self, part: &str, plan_id: &str, content: &[u8]) -> HmacSha256 {
        let mut m =
            <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for field in [
            super::plan::PLAN_FORMAT.as_bytes(),
            part.as_bytes(),
            plan_id.as_bytes(),
        ] {
            m.update(&(field.len() as u64).to_be_bytes());
            m.update(field);
        }
        m.update(content);
        m
    }

    /// The MAC of one part of a plan, in lowercase hex.
    pub fn sign(&self, part: &str, plan_id: &str, content: &[u8]) -> String {
        hex(&self.mac(part, plan_id, content).finalize().into_bytes())
    }

    /// Whether `tag` (hex) is the MAC of this part (compared in constant time).
    pub fn verify(&self, part: &str, plan_id: &str, content: &[u8], tag: &str) -> bool {
        match unhex(tag) {
            Some(tag) => self.mac(part, plan_id, content).verify_slice(&tag).is_ok(),
            None => false,
        }
    }

    /// Which key this is, safe to print: a MAC of a constant, not the key.
    pub fn id(&self) -> String {
        self.sign("key-id", "", b"")[..16].to_string()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_depends_on_the_key_the_part_the_plan_and_the_content() {
        let (k, other) = (
            PlanKey::from_bytes([1; KEY_LEN]),
            PlanKey::from_bytes([2; KEY_LEN]),
        );
        let tag = k.sign("review", "plan-1", b"{}");
        assert!(k.verify("review", "plan-1", b"{}", &tag));
        assert!(!other.verify("review", "plan-1", b"{}", &tag));
        assert!(!k.verify("fingerprint", "plan-1", b"{}", &tag));
        assert!(!k.verify("review", "plan-2", b"{}", &tag));
        assert!(!k.verify("review", "plan-1", b"{ }", &tag));
        assert!(!k.verify("review", "plan-1", b"{}", "zz"));
        assert_ne!(k.id(), other.id());
        assert!(!format!("{k:?}").contains("0101"));
    }

    #[tokio::test]
    async fn the_key_is_created_once_even_by_concurrent_first_users() {
        let ens = coord::MemEnsemble::new();
        let sessions: Vec<_> = (0..8).map(|_| ens.connect()).collect();
        assert!(matches!(
            PlanKey::load(sessions[0].as_ref()).await,
            Err(KeyError::Missing { .. })
        ));
        let keys = futures::future::join_all(
            sessions
                .iter()
                .map(|s| async move { PlanKey::load_or_create(s.as_ref()).await.unwrap() }),
        )
        .await;
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
        assert_eq!(PlanKey::load(sessions[0].as_ref()).await.unwrap(), keys[0]);
    }

    #[tokio::test]
    async fn a_key_of_the_wrong_length_is_refused() {
        let s = coord::MemEnsemble::new().connect();
        let path = crate::layout::plan_key_path();
        s.mkdirp(path.rsplit_once('/').unwrap().0).await.unwrap();
        s.create(&path, b"short", CreateMode::Persistent)
            .await
            .unwrap();
        assert!(matches!(
            PlanKey::load_or_create(s.as_ref()).await,
            Err(KeyError::Corrupt { len: 5, .. })
        ));
    }
}
