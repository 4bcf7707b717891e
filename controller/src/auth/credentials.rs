//! Where a tritonctl process finds its ZooKeeper identity: never the
//! command line (it shows in `ps` and shell history), never a log line.
//!
//! In order:
//! 1. `TRITONCTL_ZK_IDENTITY` and `TRITONCTL_ZK_SECRET` (both, or neither);
//! 2. `TRITONCTL_CREDENTIALS`: the path of a credentials file;
//! 3. the controller's `--config` file's `credentials_file`, when given;
//! 4. `$XDG_CONFIG_HOME/tritonctl/credentials` (or
//!    `~/.config/tritonctl/credentials`) when it exists.
//!
//! A credentials file holds one line, `IDENTITY:SECRET` (what ZooKeeper's
//! `addauth digest` takes), and is refused unless only its owner may read
//! it (mode 0600 or 0400).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use coord::{DigestCredentials, Secret};

use super::roles::Roles;

pub const IDENTITY_ENV: &str = "TRITONCTL_ZK_IDENTITY";
pub const SECRET_ENV: &str = "TRITONCTL_ZK_SECRET";
pub const FILE_ENV: &str = "TRITONCTL_CREDENTIALS";

/// Why credentials could not be had. The messages name files and
/// variables, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "{path}: a credentials file must be readable by its owner only, and this one has mode {mode:04o}; nothing was sent. Fix it with `chmod 600 {path}`"
    )]
    TooOpen { path: String, mode: u32 },
    #[error("{path}: {message}")]
    Unreadable { path: String, message: String },
    #[error(
        "{path}: expected one line IDENTITY:SECRET (an identity of letters, digits, - _ . @, and a secret of at least 16 characters)"
    )]
    Malformed { path: String },
    #[error("{0} is set but {1} is not: set both, or neither")]
    HalfSet(&'static str, &'static str),
    #[error("{0}")]
    Invalid(String),
}

/// Where the credentials came from (shown by `auth whoami`, never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Environment,
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Environment => write!(f, "{IDENTITY_ENV}/{SECRET_ENV}"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The shortest secret accepted (generated ones are 43 characters).
pub const MIN_SECRET: usize = 16;

fn check(user: &str, secret: &str) -> Result<(), String> {
    if !Roles::valid_name(user) {
        return Err(format!(
            "identity `{user}`: use letters, digits, - _ . @ (at most 64)"
        ));
    }
    if secret.chars().count() < MIN_SECRET || secret.chars().any(char::is_control) {
        return Err(format!(
            "the secret of `{user}` must be at least {MIN_SECRET} characters, without control characters"
        ));
    }
    Ok(())
}

/// The credentials of this process, if any (see module docs).
pub fn from_environment() -> Result<Option<(DigestCredentials, Source)>, CredentialsError> {
    from_environment_or(None)
}

/// As [`from_environment`], with a configuration file's credentials file
/// after the environment and before the default path.
pub fn from_environment_or(
    configured: Option<&Path>,
) -> Result<Option<(DigestCredentials, Source)>, CredentialsError> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var(IDENTITY_ENV), var(SECRET_ENV)) {
        (Some(user), Some(secret)) => {
            check(&user, &secret).map_err(CredentialsError::Invalid)?;
            return Ok(Some((
                DigestCredentials::new(user, Secret::new(secret)),
                Source::Environment,
            )));
        }
        (Some(_), None) => return Err(CredentialsError::HalfSet(IDENTITY_ENV, SECRET_ENV)),
        (None, Some(_)) => return Err(CredentialsError::HalfSet(SECRET_ENV, IDENTITY_ENV)),
        (None, None) => {}
    }
    if let Some(path) = var(FILE_ENV) {
        let path = PathBuf::from(path);
        return read_file(&path).map(|c| Some((c, Source::File(path))));
    }
    if let Some(path) = configured {
        return read_file(path).map(|c| Some((c, Source::File(path.to_path_buf()))));
    }
    let default = default_path();
    if default.exists() {
        return read_file(&default).map(|c| Some((c, Source::File(default))));
    }
    Ok(None)
}

/// `$XDG_CONFIG_HOME/tritonctl/credentials` or `~/.config/tritonctl/credentials`.
pub fn default_path() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("tritonctl/credentials");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".config/tritonctl/credentials")
}

/// Read a credentials file, refusing one others may read.
pub fn read_file(path: &Path) -> Result<DigestCredentials, CredentialsError> {
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| CredentialsError::Unreadable {
        path: shown.clone(),
        message: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::TooOpen { path: shown, mode });
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let Some((user, secret)) = line.trim().split_once(':') else {
        return Err(CredentialsError::Malformed { path: shown });
    };
    check(user, secret).map_err(|_| CredentialsError::Malformed {
        path: shown.clone(),
    })?;
    Ok(DigestCredentials::new(user, Secret::new(secret)))
}

/// 32 random bytes from the kernel, as URL-safe base64 without padding.
pub fn generate_secret() -> Result<Secret, CredentialsError> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| CredentialsError::Unreadable {
            path: "/dev/urandom".into(),
            message: e.to_string(),
        })?;
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(TABLE[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(TABLE[((acc << (6 - bits)) & 63) as usize] as char);
    }
    Ok(Secret::new(out))
}

/// `--credentials FILE` of `auth init`/`auth add`: the identity's secret
/// from FILE when it exists (mode 0600, its identity must be `user`), or a
/// new secret written to a new FILE with mode 0600. Returns whether it was
/// generated.
pub fn read_or_generate(
    path: &Path,
    user: &str,
) -> Result<(DigestCredentials, bool), CredentialsError> {
    if path.exists() {
        let creds = read_file(path)?;
        if creds.user != user {
            return Err(CredentialsError::Invalid(format!(
                "{} holds the credentials of `{}`, not `{user}`",
                path.display(),
                creds.user
            )));
        }
        return Ok((creds, false));
    }
    if !Roles::valid_name(user) {
        return Err(CredentialsError::Invalid(format!(
            "identity `{user}`: use letters, digits, - _ . @ (at most 64)"
        )));
    }
    let secret = generate_secret()?;
    let creds = DigestCredentials::new(user, secret);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CredentialsError::Unreadable {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    writeln!(f, "{user}:{}", creds.secret.expose())
        .and_then(|()| f.sync_all())
        .map_err(|e| CredentialsError::Unreadable {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    Ok((creds, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_others_may_read_are_refused_and_nothing_secret_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        let (made, generated) = read_or_generate(&path, "otto").unwrap();
        assert!(generated);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_file(&path).unwrap(), made);
        let (again, generated) = read_or_generate(&path, "otto").unwrap();
        assert!(!generated && again == made);
        assert!(read_or_generate(&path, "anna").is_err());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_file(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, CredentialsError::TooOpen { mode: 0o644, .. }),
            "{msg}"
        );
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(!msg.contains(made.secret.expose()), "{msg}");

        let bad = dir.path().join("bad");
        std::fs::write(&bad, "no-colon-here\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            read_file(&bad),
            Err(CredentialsError::Malformed { .. })
        ));
    }

    #[test]
    fn generated_secrets_are_long_and_differ() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
    }
}
