//! Digest authentication and ACLs against a real ZooKeeper: the server
//! itself refuses (NOAUTH) what a node's ACL does not grant, on the main
//! session and on the second (wire-protocol) session a 3.4 server's multis
//! go over, which authenticates too.
#![cfg(feature = "testing")]

use std::sync::Arc;
use std::time::Duration;

use coord::testing::ZkServer;
use coord::{
    Acl, CoordError, Coordination, CreateMode, DigestCredentials, Expect, Id, MultiRoute, Op,
    Perms, Secret, ZkCoordination, ZkOptions,
};

async fn session(
    server: &ZkServer,
    user: Option<(&str, &str)>,
    route: MultiRoute,
) -> Arc<ZkCoordination> {
    let options = ZkOptions {
        multi_route: route,
        auth: user.map(|(u, p)| DigestCredentials::new(u, Secret::new(p))),
    };
    ZkCoordination::connect_with(&server.connect_string(), Duration::from_secs(6), options)
        .await
        .expect("connect")
}

fn no_auth(e: &CoordError) -> bool {
    matches!(e.root(), CoordError::NoAuth(_))
}

fn alice_id() -> Id {
    DigestCredentials::new("alice", Secret::new("alice-secret")).id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_the_server_refuses_what_the_acl_does_not_grant() {
    let server = ZkServer::start().await.expect("start ZooKeeper");
    let alice = session(&server, Some(("alice", "alice-secret")), MultiRoute::Auto).await;
    let mallory = session(&server, Some(("alice", "wrong")), MultiRoute::Auto).await;
    let anonymous = session(&server, None, MultiRoute::Auto).await;

    // Alice may do everything, anyone may read.
    let acl = vec![
        Acl::new(Perms::ALL, alice_id()),
        Acl::new(Perms::READ, Id::anyone()),
    ];
    alice
        .create_with_acl("/doc", b"v1", CreateMode::Persistent, &acl)
        .await
        .unwrap();
    // Our digest is the server's: it reports back what we computed (to a
    // session with ADMIN on the node; since 3.6 others see `alice:x`).
    let (stored, _) = alice.get_acl("/doc").await.unwrap();
    assert_eq!(stored, acl);
    let (masked, _) = anonymous.get_acl("/doc").await.unwrap();
    assert_eq!(masked[0].id.digest_user(), Some("alice"));

    // A wrong password is another identity: read yes, write no.
    assert_eq!(mallory.get("/doc").await.unwrap().0, b"v1");
    for who in [&mallory, &anonymous] {
        assert!(no_auth(
            &who.set("/doc", b"forged", Expect::Any).await.unwrap_err()
        ));
        assert!(no_auth(
            &who.create("/doc/child", b"", CreateMode::Persistent)
                .await
                .unwrap_err()
        ));
        assert!(no_auth(
            &who.set_acl("/doc", &Acl::open(), Expect::Any)
                .await
                .unwrap_err()
        ));
        // Inside a multi too, with nothing applied.
        let err = who
            .multi(vec![
                Op::create("/free", "", CreateMode::Persistent),
                Op::set("/doc", "forged", Expect::Any),
            ])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CoordError::MultiFailed { index: 1, error } if matches!(**error, CoordError::NoAuth(_))),
            "{err:?}"
        );
        assert_eq!(alice.exists("/free").await.unwrap(), None);
    }
    alice.set("/doc", b"v2", Expect::Any).await.unwrap();

    // Nobody but alice may read a private node.
    alice
        .create_with_acl(
            "/private",
            b"secret",
            CreateMode::Persistent,
            &[Acl::new(Perms::ALL, alice_id())],
        )
        .await
        .unwrap();
    assert!(no_auth(&anonymous.get("/private").await.unwrap_err()));
    assert!(no_auth(&mallory.children("/private").await.unwrap_err()));
    assert_eq!(alice.get("/private").await.unwrap().0, b"secret");
    // mkdirp over a node one may not create in still succeeds: it exists.
    anonymous.mkdirp("/private").await.unwrap();
    assert!(no_auth(&anonymous.mkdirp("/private/x").await.unwrap_err()));

    // setACL by the one allowed: now anyone may write.
    alice
        .set_acl("/private", &Acl::open(), Expect::Any)
        .await
        .unwrap();
    anonymous
        .set("/private", b"open", Expect::Any)
        .await
        .unwrap();
}

/// The `auth` scheme makes the server record the creator's authenticated
/// id in the node's ACL: the identity cannot be self-asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_the_auth_scheme_records_the_creators_identity() {
    let server = ZkServer::start().await.expect("start ZooKeeper");
    let alice = session(&server, Some(("alice", "alice-secret")), MultiRoute::Auto).await;
    let anonymous = session(&server, None, MultiRoute::Auto).await;
    let acl = vec![
        Acl::new(Perms::DELETE, Id::creator()),
        Acl::new(Perms::READ, Id::anyone()),
    ];
    alice
        .create_with_acl("/audit-1", b"", CreateMode::Persistent, &acl)
        .await
        .unwrap();
    // Anyone may see who made it (the user part; since 3.6 the hash is
    // shown only to a session with ADMIN on the node).
    let (stored, _) = anonymous.get_acl("/audit-1").await.unwrap();
    assert!(
        stored
            .iter()
            .any(|a| a.perms == Perms::DELETE && a.id.digest_user() == Some("alice")),
        "{stored:?}"
    );
    assert_eq!(stored.len(), 2, "{stored:?}");
    // Without an authenticated id there is nobody to record: refused.
    let err = anonymous
        .create_with_acl("/audit-2", b"", CreateMode::Persistent, &acl)
        .await
        .unwrap_err();
    assert!(matches!(err, CoordError::InvalidAcl(_)), "{err:?}");
}

/// The second session (plain CREATE inside multi, ZooKeeper 3.4's path)
/// authenticates as the main one and sends the caller's ACLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_the_second_session_authenticates_and_sends_acls() {
    let server = ZkServer::start().await.expect("start ZooKeeper");
    let alice = session(&server, Some(("alice", "alice-secret")), MultiRoute::Jute).await;
    let bob = session(&server, Some(("bob", "bob-secret")), MultiRoute::Jute).await;
    let only_alice = vec![
        Acl::new(Perms::ALL, alice_id()),
        Acl::new(Perms::READ, Id::anyone()),
    ];
    alice
        .create_with_acl("/dir", b"", CreateMode::Persistent, &only_alice)
        .await
        .unwrap();
    // Alice's multi creates under /dir: only possible if the second session
    // is alice too. The child gets the ACL the multi names.
    alice
        .multi(vec![Op::create_with_acl(
            "/dir/a",
            "",
            CreateMode::Persistent,
            only_alice.clone(),
        )])
        .await
        .unwrap();
    assert!(alice.multi_session_info().session_id != 0);
    assert_eq!(alice.get_acl("/dir/a").await.unwrap().0, only_alice);
    let err = bob
        .multi(vec![Op::create("/dir/b", "", CreateMode::Persistent)])
        .await
        .unwrap_err();
    assert!(no_auth(&err), "{err:?}");
    assert!(bob.multi_session_info().session_id != 0);
    let err = bob
        .multi(vec![
            Op::create("/bobs", "", CreateMode::Persistent),
            Op::set("/dir/a", "forged", Expect::Any),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CoordError::MultiFailed { index: 1, error } if matches!(**error, CoordError::NoAuth(_))),
        "{err:?}"
    );
    assert_eq!(bob.exists("/bobs").await.unwrap(), None);
}
