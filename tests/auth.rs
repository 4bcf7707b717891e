//! Access control on a real ZooKeeper: an open tree locked down by one
//! command (dry run first), identities with roles, and ZooKeeper itself
//! refusing (NOAUTH) each forbidden write, for each role; the audit log
//! naming identities the server verified. Needs `cargo build -p tritonctl`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use coord::testing::ZkServer;
use coord::{
    Acl, CoordError, Coordination, CreateMode, DigestCredentials, Expect, Id, Secret,
    ZkCoordination, ZkOptions,
};
use crds::Kind;
use e2e::{repo, stderr, stdout, tritonctl_bin};
use tritonctl::layout;

struct Lab {
    zk: ZkServer,
    dir: tempfile::TempDir,
}

impl Lab {
    async fn start() -> Lab {
        Lab {
            zk: ZkServer::start().await.expect("start ZooKeeper"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cred(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.cred"))
    }

    /// tritonctl against this ZooKeeper as `who` (a credentials file in
    /// the lab's directory), or unauthenticated.
    fn run(&self, who: Option<&str>, args: &[&str]) -> Output {
        let mut c = Command::new(tritonctl_bin());
        c.arg("--zk")
            .arg(self.zk.connect_string())
            .args(args)
            .current_dir(repo())
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("TRITONCTL_ZK")
            .env_remove("TRITONCTL_DATA_DIR")
            .env_remove("TRITONCTL_ZK_IDENTITY")
            .env_remove("TRITONCTL_ZK_SECRET")
            .env_remove("TRITONCTL_CREDENTIALS");
        if let Some(who) = who {
            c.env("TRITONCTL_CREDENTIALS", self.cred(who));
        }
        c.output().expect("run tritonctl")
    }

    fn ok(&self, who: Option<&str>, args: &[&str]) -> String {
        let o = self.run(who, args);
        assert!(
            o.status.success(),
            "{who:?} {args:?}: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// Refused by ZooKeeper: exit 1, "not authorized".
    fn refused(&self, who: Option<&str>, args: &[&str]) {
        let o = self.run(who, args);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{who:?} {args:?}: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(
            stderr(&o).contains("not authorized"),
            "{who:?} {args:?}: {}",
            stderr(&o)
        );
    }

    async fn session(&self, who: Option<&str>) -> Arc<ZkCoordination> {
        let auth = who.map(|w| {
            let text = std::fs::read_to_string(self.cred(w)).unwrap();
            let (u, s) = text.trim().split_once(':').unwrap();
            DigestCredentials::new(u, Secret::new(s))
        });
        ZkCoordination::connect_with(
            &self.zk.connect_string(),
            Duration::from_secs(10),
            ZkOptions {
                auth,
                ..ZkOptions::default()
            },
        )
        .await
        .unwrap()
    }
}

fn write_cred(path: &Path, user: &str) {
    std::fs::write(path, format!("{user}:{user}-secret-0123456789abcdef\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn no_auth<T: std::fmt::Debug>(r: Result<T, CoordError>, what: &str) {
    match r {
        Err(e) if matches!(e.root(), CoordError::NoAuth(_)) => {}
        other => panic!("{what}: expected NoAuth from ZooKeeper, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_tree_is_locked_down_and_zookeeper_refuses_each_role() {
    let lab = Lab::start().await;
    // An existing open tree, as tritonctl made it before access control.
    lab.ok(None, &["apply", "-f", "examples/lab/manatee.yaml"]);
    let doc = layout::document_path(Kind::ManateeVersion, "sdc");
    let status = layout::status_path(Kind::ManateeVersion, "sdc");
    let anon = lab.session(None).await;
    assert!(Acl::is_open(&anon.get_acl(&doc).await.unwrap().0));

    // Credentials: never from the command line; a file others may read is
    // refused before anything is sent.
    write_cred(&lab.cred("admin"), "admin");
    std::fs::set_permissions(lab.cred("admin"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = lab.run(Some("admin"), &["auth", "whoami"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    std::fs::set_permissions(lab.cred("admin"), std::fs::Permissions::from_mode(0o600)).unwrap();

    // The dry run lists and changes nothing.
    let ctl = lab.cred("tritonctl");
    let ctl_arg = ctl.to_str().unwrap();
    let out = lab.ok(
        Some("admin"),
        &[
            "auth",
            "init",
            "--controller-credentials",
            ctl_arg,
            "--dry-run",
        ],
    );
    assert!(out.contains(&format!("would set ACL {doc}")), "{out}");
    assert!(out.contains("would create the role table"), "{out}");
    assert!(Acl::is_open(&anon.get_acl(&doc).await.unwrap().0));
    assert!(!ctl.exists());

    let out = lab.ok(
        Some("admin"),
        &["auth", "lock", "--controller-credentials", ctl_arg],
    );
    assert!(out.contains("access control is on"), "{out}");
    let ctl_secret = std::fs::read_to_string(&ctl).unwrap();
    let ctl_secret = ctl_secret.trim().split_once(':').unwrap().1;
    assert!(!out.contains(ctl_secret), "a secret was printed: {out}");
    assert_eq!(
        std::fs::metadata(&ctl).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for (who, role) in [
        ("vera", "viewer"),
        ("otto", "operator"),
        ("anna", "approver"),
    ] {
        let f = lab.cred(who);
        let out = lab.ok(
            Some("admin"),
            &[
                "auth",
                "add",
                who,
                "--role",
                role,
                "--credentials",
                f.to_str().unwrap(),
            ],
        );
        assert!(out.contains(&format!("added {who} ({role})")), "{out}");
        let secret = std::fs::read_to_string(&f).unwrap();
        assert!(!out.contains(secret.trim().split_once(':').unwrap().1));
    }
    let listed = lab.ok(
        Some("vera"),
        &["auth", "list", "-H", "-o", "identity,roles"],
    );
    assert_eq!(
        listed,
        "admin      admin\nanna       approver\notto       operator\ntritonctl  controller\nvera       viewer\n"
    );
    assert!(
        lab.ok(Some("otto"), &["auth", "whoami"])
            .contains("roles: operator")
    );

    let admin = lab.session(Some("admin")).await;
    let ctl = lab.session(Some("tritonctl")).await;
    let vera = lab.session(Some("vera")).await;
    let otto = lab.session(Some("otto")).await;
    let anna = lab.session(Some("anna")).await;
    let approval = layout::approval_path("op-1", "approve-primary");
    // A new document: applying it writes (an unchanged one only checks).
    let changed = std::fs::read_to_string(repo().join("examples/lab/manatee.yaml"))
        .unwrap()
        .replace("name: sdc", "name: sdc2");
    let file = lab.dir.path().join("sdc2.yaml");
    std::fs::write(&file, changed).unwrap();
    let new_file = file.to_str().unwrap();

    // Unauthenticated: reads nothing that holds documents or plans, writes nothing.
    no_auth(anon.get(&doc).await, "anonymous read of a document");
    no_auth(
        anon.children(&layout::kind_dir(Kind::ManateeVersion)).await,
        "anonymous listing",
    );
    no_auth(
        anon.get(&layout::roles_path()).await,
        "anonymous read of the roles",
    );
    no_auth(
        anon.children(&layout::plans_dir()).await,
        "anonymous listing of plans",
    );
    no_auth(anon.mkdirp(&approval).await, "anonymous approve");
    lab.refused(None, &["get", "mv", "sdc"]);

    // Viewer: reads, never applies, pauses or approves.
    assert!(vera.get(&doc).await.is_ok());
    no_auth(vera.set(&doc, b"{}", Expect::Any).await, "viewer's apply");
    no_auth(vera.mkdirp(&approval).await, "viewer's approve");
    lab.ok(Some("vera"), &["get", "mv", "sdc"]);
    lab.refused(Some("vera"), &["apply", "-f", new_file]);
    lab.refused(Some("vera"), &["pause", "mv/sdc", "--reason", "no"]);
    lab.refused(Some("vera"), &["delete", "mv/sdc"]);

    // Operator: applies and pauses, never approves, never forges status.
    no_auth(otto.mkdirp(&approval).await, "operator's approve");
    no_auth(
        otto.create(&status, b"{}", CreateMode::Persistent).await,
        "operator's forged status",
    );
    lab.ok(Some("otto"), &["pause", "mv/sdc", "--reason", "INC-7"]);
    lab.ok(Some("otto"), &["resume", "mv/sdc"]);

    // Approver: approves, never applies.
    anna.mkdirp(&approval).await.unwrap();
    no_auth(anna.set(&doc, b"{}", Expect::Any).await, "approver's apply");
    lab.refused(Some("anna"), &["apply", "-f", new_file]);

    // Status, journals, the election: the controller's alone.
    for (who, s) in [
        ("admin", &admin),
        ("vera", &vera),
        ("otto", &otto),
        ("anna", &anna),
    ] {
        no_auth(
            s.create(&status, b"{}", CreateMode::Persistent).await,
            &format!("{who}'s forged status"),
        );
        no_auth(
            s.create(
                &format!("{}/candidate-", layout::leader_dir()),
                b"x",
                CreateMode::PersistentSequential,
            )
            .await,
            &format!("{who}'s candidate node"),
        );
        // Nobody files an audit record under someone else's name.
        no_auth(
            s.create(
                &format!("{}/r-", layout::audit_identity_dir("tritonctl")),
                b"{}",
                CreateMode::PersistentSequential,
            )
            .await,
            &format!("{who}'s forged audit record"),
        );
    }
    // The controller, as its identity through the policy's session, leads
    // and writes status, events and journals behind its fence; the nodes
    // it makes are readable by the roles and writable by nobody else.
    let ctl_coord: Arc<dyn Coordination> = tritonctl::auth::session::AclSession::new(ctl.clone());
    let leadership = tritonctl::runtime::leader::LeaderElection::new(ctl_coord.clone(), "ctl")
        .campaign()
        .await
        .unwrap();
    let store = tritonctl::store::Store::new(ctl_coord.clone());
    store
        .write_status(
            Kind::ManateeVersion,
            "sdc",
            &crds::Status::default(),
            Some(leadership.fence()),
        )
        .await
        .unwrap();
    tritonctl::runtime::events::Events::new(ctl_coord.clone())
        .record(
            &tritonctl::runtime::events::Event::normal("ManateeVersion/sdc", "Test", "m"),
            Some(leadership.fence()),
        )
        .await
        .unwrap();
    let journal = layout::journal_path(Kind::ManateeVersion, "sdc", "sdc");
    ctl_coord.mkdirp(&journal).await.unwrap();
    for path in [&status, &journal, leadership.node()] {
        assert!(vera.get(path).await.is_ok(), "{path}");
        no_auth(otto.set(path, b"{}", Expect::Any).await, path);
        no_auth(anon.get(path).await, path);
    }
    // The controller's plan key (H2's secret) is unreadable to all others.
    let key = "/tritonctl/v1/secrets/plan-key";
    let ctl_store = tritonctl::auth::session::AclSession::new(ctl.clone());
    ctl_store.mkdirp(key).await.unwrap();
    for s in [&admin, &vera, &otto, &anna] {
        no_auth(s.get(key).await, "a read of the plan key");
    }
    assert!(admin.get_acl(key).await.is_ok());

    // Operator applies a changed document: ZooKeeper lets it, and the audit
    // log names otto, verified by the server.
    lab.ok(Some("otto"), &["apply", "-f", new_file]);
    let new_doc = layout::document_path(Kind::ManateeVersion, "sdc2");
    let acl = admin.get_acl(&new_doc).await.unwrap().0;
    assert!(!Acl::is_open(&acl));
    assert!(acl.iter().all(|a| a.id.scheme == "digest"), "{acl:?}");
    let audit = lab.ok(Some("vera"), &["events", "--audit", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let seen: Vec<(String, String, String, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
            (s("identity"), s("verified"), s("action"), s("object"))
        })
        .collect();
    for want in [
        ("admin", "verified", "auth", "auth"),
        ("otto", "verified", "pause", "manateeversion/sdc"),
        ("otto", "verified", "resume", "manateeversion/sdc"),
        ("otto", "verified", "apply", "manateeversion/sdc2"),
    ] {
        let want = (want.0.into(), want.1.into(), want.2.into(), want.3.into());
        assert!(seen.contains(&want), "{want:?} missing from {seen:?}");
    }
    // The author the server recorded is the one who made it.
    let otto_dir = layout::audit_identity_dir("otto");
    let first = otto.children(&otto_dir).await.unwrap()[0].clone();
    let acl = admin
        .get_acl(&format!("{otto_dir}/{first}"))
        .await
        .unwrap()
        .0;
    assert!(
        acl.iter()
            .any(|a| a.perms == coord::Perms::DELETE
                && a.id == Id::digest(&lab_digest(&lab, "otto")))
    );

    // Removing an identity takes its entries off every node.
    lab.ok(Some("admin"), &["auth", "remove", "vera"]);
    no_auth(vera.get(&doc).await, "a removed identity's read");
    // Only an admin changes roles: the CLI says so, and ZooKeeper refuses anyway.
    let o = lab.run(Some("otto"), &["auth", "remove", "anna"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not an admin"), "{}", stderr(&o));
    no_auth(
        otto.set(&layout::roles_path(), b"{}", Expect::Any).await,
        "operator's edit of the roles",
    );
}

fn lab_digest(lab: &Lab, who: &str) -> String {
    let text = std::fs::read_to_string(lab.cred(who)).unwrap();
    let (u, s) = text.trim().split_once(':').unwrap();
    coord::acl::digest_id(u, s)
}

/// The embedded store keeps working for one user with no credentials, and
/// its audit records name the local user, unverified.
#[test]
fn the_embedded_store_needs_no_credentials_and_audits_the_local_user() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = e2e::run(dir.path(), args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    run(&["apply", "-f", "examples/lab/manatee.yaml"]);
    run(&["pause", "mv/sdc", "--reason", "test"]);
    let audit = run(&["events", "--audit", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{audit}");
    assert_eq!(items[0]["action"], "apply");
    assert_eq!(items[1]["action"], "pause");
    assert!(items.iter().all(|i| i["verified"] == "unverified"));
    let who = run(&["auth", "whoami"]);
    assert!(
        who.contains("embedded store has no authentication"),
        "{who}"
    );
}

/// The plan signing key (`secrets/plan-key`, issue #13) under access
/// control: the controller's identity creates and reads it; an operator
/// cannot read it (ZooKeeper refuses), and `apply --plan` as the operator
/// says so clearly (exit 2) instead of applying an unverifiable plan; as
/// the controller, the same unsigned plan is refused as unsigned (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_controller_identity_reads_the_plan_key() {
    use tritonctl::gitops::plan_key::{KeyError, PlanKey};
    let lab = Lab::start().await;
    write_cred(&lab.cred("admin"), "admin");
    let ctl = lab.cred("tritonctl");
    lab.ok(
        Some("admin"),
        &[
            "auth",
            "lock",
            "--controller-credentials",
            ctl.to_str().unwrap(),
        ],
    );
    let otto = lab.cred("otto");
    lab.ok(
        Some("admin"),
        &[
            "auth",
            "add",
            "otto",
            "--role",
            "operator",
            "--credentials",
            otto.to_str().unwrap(),
        ],
    );
    // Created on first use through the ACL policy, as tritonctl does.
    let controller =
        tritonctl::auth::session::AclSession::new(lab.session(Some("tritonctl")).await);
    let key = PlanKey::load_or_create(controller.as_ref()).await.unwrap();
    assert_eq!(PlanKey::load(controller.as_ref()).await.unwrap(), key);
    let operator = lab.session(Some("otto")).await;
    match PlanKey::load(operator.as_ref()).await {
        Err(KeyError::Unreadable { source, .. }) => {
            assert!(matches!(source, CoordError::NoAuth(_)), "{source:?}")
        }
        other => panic!("an operator read the plan key: {other:?}"),
    }
    no_auth(
        operator.get(&layout::plan_key_path()).await,
        "an operator reads the plan key",
    );
    no_auth(
        lab.session(None).await.get(&layout::plan_key_path()).await,
        "an anonymous client reads the plan key",
    );

    // A plan with no documents (consistent unkeyed hash), unsigned.
    let plan = serde_json::json!({
        "format": tritonctl::gitops::plan::PLAN_FORMAT,
        "id": "plan-test", "createdAt": "t", "tritonctlVersion": "0",
        "documents": [],
        "documentsSha256": tritonctl::gitops::plan::documents_hash(&[]),
        "fingerprint": {"stored": {}, "inFlight": {}, "shards": {}, "images": {}, "ringImage": null},
        "review": {"format": "x", "observed": null, "documents": []},
    });
    let file = lab.dir.path().join("plan.json");
    std::fs::write(&file, plan.to_string()).unwrap();
    let o = lab.run(Some("otto"), &["apply", "--plan", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot read the plan signing key")
            && stderr(&o).contains("controller's credentials"),
        "{}",
        stderr(&o)
    );
    let o = lab.run(
        Some("tritonctl"),
        &["apply", "--plan", file.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not signed"), "{}", stderr(&o));
}

/// A resharding's live cleanup tuning (`tuning/reshard/<op>`, written by
/// `tritonctl reshard tune`, read by the controller's cleanup) under
/// access control: ZooKeeper refuses a viewer, an operator creates and
/// rewrites it, and the controller's identity reads what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_tunes_a_resharding_and_a_viewer_is_refused() {
    let lab = Lab::start().await;
    write_cred(&lab.cred("admin"), "admin");
    let ctl = lab.cred("tritonctl");
    lab.ok(
        Some("admin"),
        &[
            "auth",
            "lock",
            "--controller-credentials",
            ctl.to_str().unwrap(),
        ],
    );
    for (who, role) in [("vera", "viewer"), ("otto", "operator")] {
        let f = lab.cred(who);
        lab.ok(
            Some("admin"),
            &[
                "auth",
                "add",
                who,
                "--role",
                role,
                "--credentials",
                f.to_str().unwrap(),
            ],
        );
    }
    let op = "1.moray-split-7f3a";
    let path = layout::reshard_tuning_path(op);
    lab.refused(Some("vera"), &["reshard", "tune", op, "batch_size", "5000"]);
    lab.ok(Some("otto"), &["reshard", "tune", op, "batch_size", "5000"]);
    lab.refused(Some("vera"), &["reshard", "tune", op, "batch_size", "10"]);
    lab.ok(Some("otto"), &["reshard", "tune", op, "pause_ms", "50"]);
    let viewer = lab.session(Some("vera")).await;
    no_auth(
        viewer.set(&path, b"{}", Expect::Any).await,
        "a viewer rewrites the tuning",
    );
    let controller = lab.session(Some("tritonctl")).await;
    let (data, _) = controller.get(&path).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(v["batch_size"], 5000, "{v}");
    assert_eq!(v["pause_ms"], 50, "{v}");
}
