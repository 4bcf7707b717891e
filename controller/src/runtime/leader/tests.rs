use coord::MemEnsemble;
use futures::FutureExt;

use super::*;

async fn leads_soon(e: &LeaderElection) -> Leadership {
    tokio::time::timeout(Duration::from_secs(5), e.campaign())
        .await
        .expect("campaign timed out")
        .expect("campaign failed")
}

/// Polls the campaign a while; true if it is still waiting.
async fn still_waiting<F: Future>(f: &mut std::pin::Pin<Box<F>>) -> bool {
    tokio::time::timeout(Duration::from_millis(100), f.as_mut())
        .await
        .is_err()
}

#[tokio::test]
async fn lowest_candidate_leads_and_successors_follow_in_order() {
    let ens = MemEnsemble::new();
    let (a, b, c) = (ens.connect(), ens.connect(), ens.connect());
    let ea = LeaderElection::new(a.clone(), "a");
    let eb = LeaderElection::new(b.clone(), "b");
    let ec = LeaderElection::new(c.clone(), "c");
    let la = leads_soon(&ea).await;
    assert_eq!(ea.current_leader().await.unwrap().as_deref(), Some("a"));
    let mut fb = Box::pin(eb.campaign());
    assert!(still_waiting(&mut fb).await);
    let mut fc = Box::pin(ec.campaign());
    assert!(still_waiting(&mut fc).await);

    // The middle candidate leaves: c must now wait for a, not lead.
    drop(fb);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(still_waiting(&mut fc).await);
    assert_eq!(a.children(&default_dir()).await.unwrap().len(), 2);

    // The leader resigns: c leads.
    let lost = la.lost();
    la.resign().await;
    assert_eq!(lost.await, LossReason::Resigned);
    let lc = tokio::time::timeout(Duration::from_secs(5), fc)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ec.current_leader().await.unwrap().as_deref(), Some("c"));
    lc.check().await.unwrap();
}

#[tokio::test]
async fn an_abandoned_campaign_leaves_no_candidate_behind() {
    let ens = MemEnsemble::new();
    let a = ens.connect();
    let _la = leads_soon(&LeaderElection::new(a.clone(), "a")).await;
    let eb = LeaderElection::new(ens.connect(), "b");
    // Dropped mid-registration, and dropped while waiting.
    for polls in [1, 2, 3] {
        let mut f = Box::pin(eb.campaign());
        for _ in 0..polls {
            assert!(futures::poll!(f.as_mut()).is_pending());
            tokio::task::yield_now().await;
        }
        drop(f);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            a.children(&default_dir()).await.unwrap().len(),
            1,
            "after {polls} polls"
        );
    }
    let mut f = Box::pin(eb.campaign());
    assert!(still_waiting(&mut f).await);
    assert_eq!(a.children(&default_dir()).await.unwrap().len(), 2);
    drop(f);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(a.children(&default_dir()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn expiry_loses_leadership_for_good() {
    let ens = MemEnsemble::new();
    let a = ens.connect();
    let ea = LeaderElection::new(a.clone(), "a");
    let la = leads_soon(&ea).await;
    la.check().await.unwrap();
    let lost = la.lost();
    assert!(ens.expire_session(a.session_id()));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), lost)
            .await
            .unwrap(),
        LossReason::SessionExpired
    );
    assert_eq!(
        la.check().await,
        Err(LeaderError::Lost(LossReason::SessionExpired))
    );
    // Never regained on this session.
    assert!(matches!(
        ea.campaign().await,
        Err(LeaderError::SessionEnded(SessionState::Expired))
    ));
    // Another session takes over; the old fence is dead.
    let b = ens.connect();
    let lb = leads_soon(&LeaderElection::new(b.clone(), "b")).await;
    let store = crate::store::Store::new(b.clone());
    store.init().await.unwrap();
    let status = crds::Status::default();
    assert!(
        store
            .write_status(crds::Kind::ManateeVersion, "x", &status, Some(la.fence()))
            .await
            .is_err()
    );
    store
        .write_status(crds::Kind::ManateeVersion, "x", &status, Some(lb.fence()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_deleted_node_is_a_lost_leadership() {
    let ens = MemEnsemble::new();
    let a = ens.connect();
    let la = leads_soon(&LeaderElection::new(a.clone(), "a")).await;
    let admin = ens.connect();
    admin.delete(la.node(), Expect::Any).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), la.lost())
            .await
            .unwrap(),
        LossReason::NodeVanished
    );
    assert!(la.check().await.is_err());
}

#[tokio::test]
async fn dropping_leadership_resigns_and_a_campaign_waiting_on_a_dead_session_fails() {
    let ens = MemEnsemble::new();
    let (a, b) = (ens.connect(), ens.connect());
    let la = leads_soon(&LeaderElection::new(a.clone(), "a")).await;
    let eb = LeaderElection::new(b.clone(), "b");
    let mut fb = Box::pin(eb.campaign());
    assert!(still_waiting(&mut fb).await);
    drop(la);
    let lb = tokio::time::timeout(Duration::from_secs(5), fb)
        .await
        .unwrap()
        .unwrap();
    assert!(lb.lost().now_or_never().is_none());

    let c = ens.connect();
    let ec = LeaderElection::new(c.clone(), "c");
    let mut fc = Box::pin(ec.campaign());
    assert!(still_waiting(&mut fc).await);
    ens.expire_session(c.session_id());
    let r = tokio::time::timeout(Duration::from_secs(5), fc)
        .await
        .unwrap();
    assert!(matches!(r, Err(LeaderError::SessionEnded(_))), "{r:?}");
}

/// A `set` on the leader's own candidate node moves its version, so every
/// fenced write (a check of version 0) fails from then on: the leader must
/// see it and step down rather than go on "leading" with a dead fence.
#[tokio::test]
async fn a_modified_candidate_node_is_a_lost_leadership() {
    let ens = MemEnsemble::new();
    let a = ens.connect();
    let la = leads_soon(&LeaderElection::new(a.clone(), "a")).await;
    let admin = ens.connect();
    admin
        .set(la.node(), b"someone else", Expect::Any)
        .await
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), la.lost())
        .await
        .expect("leadership is lost once the node changed");
    assert_eq!(reason, LossReason::NodeModified);
    assert_eq!(
        la.check().await,
        Err(LeaderError::Lost(LossReason::NodeModified))
    );
}

/// A persistent node named like a candidate, lower than every real one
/// (anyone can create it), never blocks the election.
#[tokio::test]
async fn a_persistent_candidate_node_does_not_block_the_election() {
    let ens = MemEnsemble::new();
    let admin = ens.connect();
    admin.mkdirp(&default_dir()).await.unwrap();
    admin
        .create(
            &format!("{}/candidate-0000000000", default_dir()),
            b"forged",
            coord::CreateMode::Persistent,
        )
        .await
        .unwrap();
    admin
        .create(
            &format!("{}/candidate-x", default_dir()),
            b"forged",
            coord::CreateMode::Persistent,
        )
        .await
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let a = ens.connect();
    let ea = LeaderElection::new(a.clone(), "a").on_ignored(Arc::new(move |i| {
        hook_seen.lock().unwrap().push(i.clone());
    }));
    let la = leads_soon(&ea).await;
    la.check().await.unwrap();
    assert_eq!(ea.current_leader().await.unwrap().as_deref(), Some("a"));
    // Each reported once, however often the election looked.
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by(|a, b| a.node.cmp(&b.node));
    assert_eq!(
        seen,
        [
            IgnoredCandidate {
                node: format!("{}/candidate-0000000000", default_dir()),
                reason: IgnoredReason::NotEphemeral,
            },
            IgnoredCandidate {
                node: format!("{}/candidate-x", default_dir()),
                reason: IgnoredReason::NotSequential,
            },
        ]
    );
}

/// Only the tripwire can tell here (no watch on the node): a fenced write
/// refused at the fence marks leadership lost at once.
#[tokio::test]
async fn a_fenced_write_refused_at_the_fence_is_a_lost_leadership() {
    let ens = MemEnsemble::new();
    let a = ens.connect();
    a.mkdirp(&default_dir()).await.unwrap();
    let node = a
        .create(
            &format!("{}/candidate-", default_dir()),
            b"a",
            CreateMode::EphemeralSequential,
        )
        .await
        .unwrap();
    let la = Leadership::unmonitored(a.clone(), node.clone());
    let store = crate::store::Store::new(la.tripwire(a.clone()));
    store.init().await.unwrap();
    let status = crds::Status::default();
    let write = || store.write_status(crds::Kind::ManateeVersion, "x", &status, Some(la.fence()));
    write().await.unwrap();
    assert_eq!(la.lost_reason(), None);
    ens.connect()
        .set(&node, b"tampered", Expect::Any)
        .await
        .unwrap();
    assert!(write().await.is_err());
    assert_eq!(la.lost_reason(), Some(LossReason::NodeModified));
    assert_eq!(
        la.check().await,
        Err(LeaderError::Lost(LossReason::NodeModified))
    );
}

#[test]
fn the_fence_checks_the_version_a_candidate_is_created_with() {
    let fence = crate::store::Fence { path: "/n".into() };
    assert_eq!(
        fence.op(),
        coord::Op::check("/n", Expect::Version(leadership::CREATED_VERSION))
    );
}

#[test]
fn a_node_is_ours_only_ephemeral_owned_and_unchanged() {
    use leadership::{NodeCheck, judge};
    let stat = |owner: i64, version: i32| coord::Stat {
        version,
        cversion: 0,
        ctime_ms: 0,
        mtime_ms: 0,
        ephemeral_owner: owner,
        num_children: 0,
        data_length: 0,
    };
    assert_eq!(judge(Some(&stat(7, 0)), 7), NodeCheck::Ours);
    assert_eq!(judge(None, 7), NodeCheck::Gone);
    assert_eq!(judge(Some(&stat(0, 0)), 7), NodeCheck::NotOurs);
    assert_eq!(judge(Some(&stat(8, 0)), 7), NodeCheck::NotOurs);
    assert_eq!(judge(Some(&stat(7, 1)), 7), NodeCheck::Modified);
}
