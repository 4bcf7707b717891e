//! Access control on the datacenter's ZooKeeper, and the audit log.
//!
//! - [`roles`]: identities and roles (`controller`, `admin`, `viewer`,
//!   `operator`, `approver`), the table kept at `auth/roles`.
//! - [`policy`]: the one place that decides each node's ACL, by path.
//! - [`session`]: the session wrapper that gives every create that ACL.
//! - [`tree`]: re-applying the policy over the tree (setACL), dry run too.
//! - [`credentials`]: where a process finds its identity (environment or a
//!   0600 file; never the command line, never logged).
//! - [`audit`]: who decided what, verified by ZooKeeper where it can be.
//!
//! The embedded store is one user's: no authentication, no ACLs; its audit
//! records name the local user.

use std::sync::Arc;
use std::time::Duration;

use coord::{Coordination, DigestCredentials, ZkOptions};

pub mod audit;
pub mod credentials;
pub mod policy;
pub mod roles;
pub mod session;
pub mod tree;

pub use audit::Principal;
pub use credentials::{CredentialsError, Source};
pub use roles::{Role, Roles};

/// Why a session as this process's identity could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Credentials(#[from] CredentialsError),
    #[error("cannot connect to ZooKeeper at {hosts}: {error}")]
    Coord {
        hosts: String,
        error: coord::CoordError,
    },
}

/// A ZooKeeper session as this process's identity.
pub struct Connected {
    /// Creates through it get the policy's ACLs ([`session::AclSession`]).
    pub coord: Arc<dyn Coordination>,
    pub principal: Principal,
    pub credentials: Option<(DigestCredentials, Source)>,
}

/// Connect to ZooKeeper with the credentials the environment names (see
/// [`credentials`]), or none.
pub async fn connect_zk(hosts: &str, session_timeout: Duration) -> Result<Connected, ConnectError> {
    connect_zk_with(hosts, session_timeout, None).await
}

/// As [`connect_zk`], with the credentials file a controller's `--config`
/// names (the environment still wins over it).
pub async fn connect_zk_with(
    hosts: &str,
    session_timeout: Duration,
    credentials_file: Option<&std::path::Path>,
) -> Result<Connected, ConnectError> {
    let credentials = credentials::from_environment_or(credentials_file)?;
    let options = ZkOptions {
        auth: credentials.as_ref().map(|(c, _)| c.clone()),
        ..ZkOptions::default()
    };
    let zk = coord::ZkCoordination::connect_with(hosts, session_timeout, options)
        .await
        .map_err(|error| ConnectError::Coord {
            hosts: hosts.to_string(),
            error,
        })?;
    Ok(Connected {
        coord: session::AclSession::new(zk),
        principal: Principal::of(credentials.as_ref().map(|(c, _)| c)),
        credentials,
    })
}
