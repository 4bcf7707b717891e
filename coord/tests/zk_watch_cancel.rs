//! Watch calls abandoned mid-flight against a real ZooKeeper: the session
//! stays usable and later watches still fire. (The wire-level proof that no
//! RemoveWatches goes out, which a 3.4 server would answer by dropping the
//! connection, is in `zk34_wire.rs`: the 3.8 server here accepts it.)
#![cfg(feature = "testing")]

use std::time::Duration;

use coord::testing::ZkServer;
use coord::{Coordination, CreateMode, Expect, Op, SessionState, WatchEvent, ZkCoordination};
use futures::FutureExt;

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_dropped_watch_calls_leave_the_session_usable_and_watches_fire() {
    let server = ZkServer::start().await.expect("start ZooKeeper");
    let zk = ZkCoordination::connect(&server.connect_string(), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        zk.server_version().is_some_and(|v| v >= (3, 5, 0)),
        "srvr: {:?}",
        zk.server_version()
    );
    assert!(zk.accepts_create_in_multi());
    let id = zk.session_id();
    zk.create("/w", b"", CreateMode::Persistent).await.unwrap();
    const N: usize = 60;
    for i in 0..N {
        zk.create(&format!("/w/n{i}"), b"", CreateMode::Persistent)
            .await
            .unwrap();
    }

    // Abandon watch calls of every kind, each after exactly one poll.
    let mut in_flight = 0;
    for i in 0..N {
        let path = format!("/w/n{i}");
        let pending = match i % 4 {
            0 => zk.get_watch(&path).now_or_never().is_none(),
            1 => zk.exists_watch(&path).now_or_never().is_none(),
            2 => zk.children_watch(&path).now_or_never().is_none(),
            _ => zk
                .exists_watch(&format!("/w/missing{i}"))
                .now_or_never()
                .is_none(),
        };
        in_flight += usize::from(pending);
    }
    assert!(
        in_flight > N / 2,
        "only {in_flight} calls were in flight when dropped"
    );
    // ...and some as the losing branch of a select.
    for i in 0..10 {
        let path = format!("/w/n{i}");
        tokio::select! {
            biased;
            _ = zk.get_watch(&path) => {}
            _ = std::future::ready(()) => {}
        }
    }

    // The session works: reads, writes, a multi with a create.
    zk.set("/w/n0", b"x", Expect::Any).await.unwrap();
    assert_eq!(zk.get("/w/n0").await.unwrap().0, b"x");
    zk.multi(vec![
        Op::check("/w", Expect::Any),
        Op::create("/w/multi", b"m".to_vec(), CreateMode::Persistent),
    ])
    .await
    .unwrap();

    // Watches still fire, including on paths an abandoned call had watched.
    let (_, _, data) = zk.get_watch("/w/n4").await.unwrap();
    let (_, exists) = zk.exists_watch("/w/missing3").await.unwrap();
    let (_, children) = zk.children_watch("/w/n2").await.unwrap();
    zk.set("/w/n4", b"y", Expect::Any).await.unwrap();
    zk.create("/w/missing3", b"", CreateMode::Persistent)
        .await
        .unwrap();
    zk.create("/w/n2/child", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let fired = |w: coord::Watch| async move {
        tokio::time::timeout(PATIENCE, w)
            .await
            .expect("the watch fired")
    };
    assert_eq!(fired(data).await, WatchEvent::NodeDataChanged);
    assert_eq!(fired(exists).await, WatchEvent::NodeCreated);
    assert_eq!(fired(children).await, WatchEvent::NodeChildrenChanged);

    assert_eq!(zk.session_state(), SessionState::Connected);
    assert_eq!(zk.session_id(), id, "the session was not replaced");
    zk.close().await;
}
