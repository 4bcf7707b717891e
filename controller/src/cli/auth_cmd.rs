//! `tritonctl auth`: identities and roles on the datacenter's ZooKeeper,
//! run by the admin identity (see [`crate::auth`]).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use coord::{CoordError, Coordination};

use super::listing::{self, Listing, ListingArgs};
use super::{Failure, StoreArgs};
use crate::auth::audit::{self, Action, Principal};
use crate::auth::credentials;
use crate::auth::roles::{Identity, Role, Roles};
use crate::auth::tree::{self, AclChange};
use crate::auth::{Connected, connect_zk};
use crate::layout;
use crate::store::Store;

const CREDENTIALS_HELP: &str = "Credentials (yours) come from the environment, never the command line:\n\
  TRITONCTL_CREDENTIALS=FILE   a file holding IDENTITY:SECRET, mode 0600 (refused otherwise)\n\
  TRITONCTL_ZK_IDENTITY and TRITONCTL_ZK_SECRET\n\
  or ~/.config/tritonctl/credentials when it exists.\n\
They are sent to ZooKeeper as `addauth digest IDENTITY:SECRET` and never printed or logged.";

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Lock down the /tritonctl tree: create the role table (you as admin, the controller's identity) and set every node's ACL.
    #[command(
        visible_alias = "lock",
        after_help = "Run once, as the admin identity, against a tree that is still open (every node\n\
world:anyone cdrwa, as tritonctl made them before access control). Creates the role table\n\
at /tritonctl/v1/auth/roles with you (admin) and the controller's identity (controller),\n\
then sets the ACL of every node under /tritonctl to what its path calls for. After it,\n\
a client without credentials reads and writes nothing there. Give the controller process\n\
the same credentials file (TRITONCTL_CREDENTIALS). --dry-run lists every node whose ACL\n\
would change and changes nothing. Running it again re-applies the ACLs.\n\
Exit status: 0 done (or listed with --dry-run), 1 invalid arguments or refused, 2 error.\n\n\
Examples:\n  umask 077; TRITONCTL_CREDENTIALS=~/admin.cred tritonctl --zk 10.99.99.11:2181 auth init \\\n      --admin admin --controller-credentials /opt/tritonctl/controller.cred --dry-run\n  \
TRITONCTL_CREDENTIALS=~/admin.cred tritonctl --zk 10.99.99.11:2181 auth init \\\n      --controller-credentials /opt/tritonctl/controller.cred"
    )]
    Init(InitArgs),
    /// Add an identity with roles (or change the roles of one), and re-apply ACLs.
    #[command(
        after_help = "Roles: viewer (reads documents, status, events, plans, audit), operator (also\n\
apply, delete, pause, resume, cancel), approver (also approve), admin (manages identities),\n\
controller (the controller process). Repeat --role for several.\n\
The identity's secret is read from --credentials FILE when it exists (mode 0600), or\n\
generated and written to a new FILE with mode 0600; hand that file to its owner. Nothing\n\
secret is printed. --dry-run lists the ACL changes and changes nothing.\n\
Exit status: 0 added, 1 invalid arguments or refused, 2 error.\n\n\
Examples:\n  tritonctl auth add alice --role operator --credentials alice.cred\n  \
tritonctl auth add bob --role approver --role viewer --credentials bob.cred\n  tritonctl auth add alice --role viewer   # change alice's roles"
    )]
    Add(AddArgs),
    /// Remove an identity: its ACL entries go from every node.
    #[command(
        after_help = "Its audit records stay. You cannot remove the last admin.\n\
Exit status: 0 removed, 1 invalid arguments, not found or refused, 2 error.\n\n\
Example:\n  tritonctl auth remove alice"
    )]
    Remove {
        identity: String,
        /// List the ACL changes, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List identities and their roles.
    #[command(
        after_help = "Output: as `get`: -H, -o COL,COL, -j, -o yaml, -o name.\n\
Columns: IDENTITY ROLES ADDED (and, with -o wide, ADDED-BY). Any identity with a role may list.\n\
Exit status: 0 listed, 1 invalid arguments or refused, 2 error.\n\n\
Example:\n  tritonctl auth list -o identity,roles"
    )]
    List {
        #[command(flatten)]
        listing: ListingArgs,
    },
    /// Who this process is to ZooKeeper, where its credentials come from, and its roles.
    #[command(after_help = "Never prints a secret.\n\
Exit status: 0 shown, 1 invalid arguments, 2 error (credentials unreadable or refused).\n\n\
Example:\n  TRITONCTL_CREDENTIALS=~/alice.cred tritonctl --zk 10.99.99.11:2181 auth whoami")]
    Whoami,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The controller's identity.
    #[arg(long, default_value = "tritonctl")]
    pub controller: String,
    /// The controller's credentials file: read if it exists (mode 0600), else generated (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub controller_credentials: PathBuf,
    /// List what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    pub identity: String,
    /// viewer, operator, approver, admin or controller; repeatable.
    #[arg(long = "role", required = true, value_parser = parse_role)]
    pub roles: Vec<Role>,
    /// The identity's credentials file: read if it exists (mode 0600), else generated (mode 0600). Needed for a new identity.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// List the ACL changes, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        format!(
            "`{s}` is not a role; the roles are {}",
            Role::ALL.map(Role::as_str).join(", ")
        )
    })
}

pub fn credentials_help() -> &'static str {
    CREDENTIALS_HELP
}

fn err(e: impl std::fmt::Display) -> Failure {
    Failure::error(e.to_string())
}

fn coord_failure(e: CoordError) -> Failure {
    if matches!(e.root(), CoordError::NoAuth(_)) {
        Failure::invalid(super::no_auth_message(&e))
    } else {
        err(e)
    }
}

async fn connect(store: &StoreArgs) -> Result<Connected, Failure> {
    let Some(hosts) = &store.zk else {
        return Err(Failure::invalid(
            "the embedded store has no access control: it is one user's, protected by its \
             directory's file permissions; `tritonctl auth` manages identities on a ZooKeeper \
             (--zk HOSTS or TRITONCTL_ZK)",
        ));
    };
    connect_zk(hosts, store.session_timeout).await.map_err(err)
}

/// The admin's session: credentials required.
async fn connect_admin(store: &StoreArgs) -> Result<Connected, Failure> {
    let c = connect(store).await?;
    if c.credentials.is_none() {
        return Err(Failure::invalid(format!(
            "this needs the admin identity's credentials, and none were found.\n{CREDENTIALS_HELP}"
        )));
    }
    Ok(c)
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn print_changes(changes: &[AclChange], dry_run: bool) {
    let verb = if dry_run { "would set" } else { "set" };
    for c in changes {
        println!("{verb} ACL {c}");
    }
    println!(
        "{} node(s) {} a new ACL",
        changes.len(),
        if dry_run { "would get" } else { "got" }
    );
}

pub async fn run(cmd: AuthCommand, store: &StoreArgs) -> Result<(), Failure> {
    match cmd {
        AuthCommand::Init(a) => init(store, a).await,
        AuthCommand::Add(a) => add(store, a).await,
        AuthCommand::Remove { identity, dry_run } => remove(store, &identity, dry_run).await,
        AuthCommand::List { listing } => list(store, listing).await,
        AuthCommand::Whoami => whoami(store).await,
    }
}

async fn init(store: &StoreArgs, a: InitArgs) -> Result<(), Failure> {
    let c = connect_admin(store).await?;
    let (admin, _) = c.credentials.clone().expect("checked");
    if a.controller == admin.user {
        return Err(Failure::invalid(format!(
            "the controller's identity must not be the admin's (`{}`): one process, one identity",
            admin.user
        )));
    }
    let coord = c.coord.clone();
    let existing = Roles::load(&coord).await.map_err(err)?;
    let (mut roles, version) = match existing {
        Some((r, v)) => {
            if !r
                .identities
                .get(&admin.user)
                .is_some_and(|i| i.has(Role::Admin))
            {
                return Err(Failure::invalid(format!(
                    "access control is set up already, and `{}` is not an admin in it",
                    admin.user
                )));
            }
            (r, Some(v))
        }
        None => (Roles::default(), None),
    };
    let controller = if a.dry_run && !a.controller_credentials.exists() {
        None
    } else {
        let (creds, generated) =
            credentials::read_or_generate(&a.controller_credentials, &a.controller)
                .map_err(|e| Failure::invalid(e.to_string()))?;
        if generated {
            println!(
                "generated the credentials of `{}` in {} (mode 0600); give them to the controller process as TRITONCTL_CREDENTIALS",
                a.controller,
                a.controller_credentials.display()
            );
        }
        Some(creds)
    };
    let stamp = |digest: String, role: Role| Identity {
        digest,
        roles: [role].into(),
        added: now(),
        added_by: admin.user.clone(),
    };
    roles
        .identities
        .entry(admin.user.clone())
        .or_insert_with(|| stamp(admin.digest_id(), Role::Admin));
    let controller_digest = controller.as_ref().map_or_else(
        // A dry run before the file exists: a placeholder digest.
        || format!("{}:(generated)", a.controller),
        |c| c.digest_id(),
    );
    match roles.identities.get_mut(&a.controller) {
        Some(i) => {
            i.digest = controller_digest;
            i.roles.insert(Role::Controller);
        }
        None => {
            roles.identities.insert(
                a.controller.clone(),
                stamp(controller_digest, Role::Controller),
            );
        }
    }
    if a.dry_run {
        let changes = tree::reapply(&coord, &roles, true)
            .await
            .map_err(coord_failure)?;
        if version.is_none() {
            println!(
                "would create the role table {} (admin: {}, controller: {}) and the layout's directories",
                layout::roles_path(),
                admin.user,
                a.controller
            );
        }
        print_changes(&changes, true);
        return Ok(());
    }
    // The layout first, while the tree is open, then the table, then the
    // ACLs over everything (the table's own included).
    let s = Store::new(coord.clone()).with_principal(c.principal.clone());
    s.init().await.map_err(err)?;
    for name in [admin.user.as_str(), a.controller.as_str()] {
        coord
            .mkdirp(&layout::audit_identity_dir(name))
            .await
            .map_err(coord_failure)?;
    }
    roles.store(&coord, version).await.map_err(err)?;
    let changes = tree::reapply(&coord, &roles, false)
        .await
        .map_err(coord_failure)?;
    print_changes(&changes, false);
    s.audit(
        Action::Auth,
        "auth",
        &format!(
            "locked down /tritonctl: admin {}, controller {} ({} ACLs set)",
            admin.user,
            a.controller,
            changes.len()
        ),
    )
    .await;
    println!(
        "access control is on: run the controller with TRITONCTL_CREDENTIALS={}",
        a.controller_credentials.display()
    );
    Ok(())
}

async fn load_for_admin(c: &Connected) -> Result<(Roles, i32), Failure> {
    let (admin, _) = c.credentials.as_ref().expect("checked");
    let (roles, version) = Roles::load(&c.coord)
        .await
        .map_err(|e| match e {
            crate::auth::roles::RolesError::Coord(e) => coord_failure(e),
            other => err(other),
        })?
        .ok_or_else(|| {
            Failure::invalid(
                "access control is not set up on this ZooKeeper: run `tritonctl auth init` first",
            )
        })?;
    if !roles
        .identities
        .get(&admin.user)
        .is_some_and(|i| i.has(Role::Admin))
    {
        return Err(Failure::invalid(format!(
            "`{}` is not an admin: only an admin manages identities",
            admin.user
        )));
    }
    Ok((roles, version))
}

async fn save_and_reapply(
    c: &Connected,
    roles: &Roles,
    version: i32,
    dry_run: bool,
) -> Result<usize, Failure> {
    if dry_run {
        let changes = tree::reapply(&c.coord, roles, true)
            .await
            .map_err(coord_failure)?;
        print_changes(&changes, true);
        return Ok(changes.len());
    }
    roles
        .store(&c.coord, Some(version))
        .await
        .map_err(|e| match e {
            crate::auth::roles::RolesError::Coord(CoordError::BadVersion(_)) => Failure::invalid(
                "another admin changed the roles at the same time; nothing was changed, try again",
            ),
            other => err(other),
        })?;
    let changes = tree::reapply(&c.coord, roles, false)
        .await
        .map_err(coord_failure)?;
    print_changes(&changes, false);
    Ok(changes.len())
}

async fn add(store: &StoreArgs, a: AddArgs) -> Result<(), Failure> {
    if !Roles::valid_name(&a.identity) {
        return Err(Failure::invalid(format!(
            "identity `{}`: use letters, digits, - _ . @ (at most 64)",
            a.identity
        )));
    }
    let c = connect_admin(store).await?;
    let (mut roles, version) = load_for_admin(&c).await?;
    let admin = c.principal.name().to_string();
    let digest = match (&a.credentials, roles.identities.get(&a.identity)) {
        (Some(path), _) => {
            if a.dry_run && !path.exists() {
                format!("{}:(generated)", a.identity)
            } else {
                let (creds, generated) = credentials::read_or_generate(path, &a.identity)
                    .map_err(|e| Failure::invalid(e.to_string()))?;
                if generated {
                    println!(
                        "generated the credentials of `{}` in {} (mode 0600); hand that file to its owner",
                        a.identity,
                        path.display()
                    );
                }
                creds.digest_id()
            }
        }
        (None, Some(existing)) => existing.digest.clone(),
        (None, None) => {
            return Err(Failure::invalid(format!(
                "`{}` is a new identity: give --credentials FILE (read if it exists, else generated with mode 0600)",
                a.identity
            )));
        }
    };
    let wanted: std::collections::BTreeSet<Role> = a.roles.iter().copied().collect();
    let before = roles.identities.get(&a.identity).cloned();
    if before
        .as_ref()
        .is_some_and(|b| b.has(Role::Admin) && !wanted.contains(&Role::Admin))
        && roles.with_role(Role::Admin).count() == 1
    {
        return Err(Failure::invalid(format!(
            "`{}` is the last admin: add another admin first",
            a.identity
        )));
    }
    roles.identities.insert(
        a.identity.clone(),
        Identity {
            digest,
            roles: wanted.clone(),
            added: before.as_ref().map_or_else(now, |b| b.added.clone()),
            added_by: before
                .as_ref()
                .map_or(admin.clone(), |b| b.added_by.clone()),
        },
    );
    let shown: Vec<&str> = wanted.iter().map(|r| r.as_str()).collect();
    if !a.dry_run {
        // Its audit directory (the policy gives it its ACL).
        match c
            .coord
            .mkdirp(&layout::audit_identity_dir(&a.identity))
            .await
        {
            Ok(()) => {}
            Err(e) => return Err(coord_failure(e)),
        }
    }
    let n = save_and_reapply(&c, &roles, version, a.dry_run).await?;
    if a.dry_run {
        return Ok(());
    }
    let what = if before.is_some() { "changed" } else { "added" };
    println!("{what} {} ({})", a.identity, shown.join(", "));
    audit::record_or_warn(
        &c.coord,
        &c.principal,
        Action::Auth,
        &format!("identity/{}", a.identity),
        &format!("{what} with roles {} ({n} ACLs set)", shown.join(", ")),
    )
    .await;
    Ok(())
}

async fn remove(store: &StoreArgs, identity: &str, dry_run: bool) -> Result<(), Failure> {
    let c = connect_admin(store).await?;
    let (mut roles, version) = load_for_admin(&c).await?;
    let Some(gone) = roles.identities.remove(identity) else {
        return Err(Failure::invalid(format!("no identity `{identity}`")));
    };
    if gone.has(Role::Admin) && roles.with_role(Role::Admin).count() == 0 {
        return Err(Failure::invalid(format!(
            "`{identity}` is the last admin: add another admin first"
        )));
    }
    let n = save_and_reapply(&c, &roles, version, dry_run).await?;
    if dry_run {
        return Ok(());
    }
    println!("removed {identity}");
    audit::record_or_warn(
        &c.coord,
        &c.principal,
        Action::Auth,
        &format!("identity/{identity}"),
        &format!("removed ({n} ACLs set)"),
    )
    .await;
    Ok(())
}

pub const AUTH_COLUMNS: [&str; 4] = ["IDENTITY", "ROLES", "ADDED", "ADDED-BY"];

fn roles_listing(roles: &Roles) -> Listing {
    let rows = roles
        .identities
        .iter()
        .map(|(name, i)| {
            let r: Vec<&str> = i.roles.iter().map(|r| r.as_str()).collect();
            vec![
                name.clone(),
                r.join(","),
                i.added.clone(),
                i.added_by.clone(),
            ]
        })
        .collect();
    let items: Vec<serde_json::Value> = roles
        .identities
        .iter()
        .map(|(name, i)| {
            serde_json::json!({
                "identity": name,
                "roles": i.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "added": i.added,
                "addedBy": i.added_by,
            })
        })
        .collect();
    Listing {
        columns: &AUTH_COLUMNS,
        narrow: 3,
        rows,
        names: roles
            .identities
            .keys()
            .map(|n| format!("identity/{n}"))
            .collect(),
        value: serde_json::json!({"kind": "List", "items": items}),
    }
}

async fn list(store: &StoreArgs, args: ListingArgs) -> Result<(), Failure> {
    let format = args.format();
    if format.is_rows() {
        listing::columns(&AUTH_COLUMNS, 3, &format)?;
    }
    let c = connect(store).await?;
    let roles = match Roles::load(&c.coord).await {
        Ok(Some((r, _))) => r,
        Ok(None) => {
            eprintln!("Access control is not set up on this ZooKeeper (`tritonctl auth init`).");
            return Ok(());
        }
        Err(crate::auth::roles::RolesError::Coord(e)) => return Err(coord_failure(e)),
        Err(e) => return Err(err(e)),
    };
    print!(
        "{}",
        listing::render(&roles_listing(&roles), &format, args.no_headers)?
    );
    Ok(())
}

async fn whoami(store: &StoreArgs) -> Result<(), Failure> {
    let Some(hosts) = &store.zk else {
        println!(
            "identity: {} (the embedded store has no authentication: it is this user's)",
            Principal::of(None)
        );
        return Ok(());
    };
    let c = connect(store).await?;
    match &c.credentials {
        Some((creds, source)) => println!("identity: {} (credentials from {source})", creds.user),
        None => println!(
            "identity: none (no credentials: ZooKeeper sees an unauthenticated client)\n{CREDENTIALS_HELP}"
        ),
    }
    println!("zookeeper: {hosts}");
    match Roles::load(&c.coord).await {
        Ok(None) => {
            println!("access control: off (the tree is open; `tritonctl auth init` locks it)")
        }
        Ok(Some((roles, _))) => {
            let mine = c
                .credentials
                .as_ref()
                .and_then(|(creds, _)| roles.identities.get(&creds.user).map(|i| (creds, i)));
            match mine {
                Some((creds, i)) if i.digest == creds.digest_id() => {
                    let r: Vec<&str> = i.roles.iter().map(|r| r.as_str()).collect();
                    println!("roles: {}", r.join(", "));
                }
                Some(_) => println!(
                    "roles: none: this secret is not the one registered for this identity (ask an admin)"
                ),
                None => println!("roles: none (not in the role table)"),
            }
        }
        Err(crate::auth::roles::RolesError::Coord(e))
            if matches!(e.root(), CoordError::NoAuth(_)) =>
        {
            println!("access control: on; this identity may not read the role table (no role)")
        }
        Err(e) => return Err(err(e)),
    }
    Ok(())
}

/// `tritonctl events --audit`.
pub async fn audit_events(
    coord: &Arc<dyn Coordination>,
    args: &ListingArgs,
) -> Result<(), Failure> {
    let format = args.format();
    if format.is_rows() {
        listing::columns(&AUDIT_COLUMNS, AUDIT_NARROW, &format)?;
    }
    let records = audit::list(coord).await.map_err(coord_failure)?;
    let rows = records
        .iter()
        .map(|l| {
            vec![
                l.record.time.clone(),
                l.record.identity.clone(),
                l.verification.as_str().to_string(),
                l.record.action.as_str().to_string(),
                l.record.object.clone(),
                l.record.decision.clone(),
                l.path.clone(),
            ]
        })
        .collect();
    let items: Vec<serde_json::Value> = records
        .iter()
        .map(|l| {
            let mut v = serde_json::to_value(&l.record).expect("records serialize");
            v["verified"] = serde_json::json!(l.verification.as_str());
            if let audit::Verification::Mismatch(why) = &l.verification {
                v["mismatch"] = serde_json::json!(why);
            }
            v["path"] = serde_json::json!(l.path);
            v
        })
        .collect();
    let l = Listing {
        columns: &AUDIT_COLUMNS,
        narrow: AUDIT_NARROW,
        rows,
        names: records
            .iter()
            .map(|l| format!("audit/{}", l.path.rsplit('/').next().unwrap_or_default()))
            .collect(),
        value: serde_json::json!({"kind": "List", "items": items}),
    };
    print!("{}", listing::render(&l, &format, args.no_headers)?);
    Ok(())
}

pub const AUDIT_COLUMNS: [&str; 7] = [
    "TIME", "IDENTITY", "VERIFIED", "ACTION", "OBJECT", "DECISION", "PATH",
];
pub const AUDIT_NARROW: usize = 6;
