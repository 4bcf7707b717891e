//! Moving vnodes' rows between shards: the safe order keeps every
//! acknowledged write on exactly one shard, and the verifier catches the
//! unsafe orders.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sim::manta::load::{self, LoadConfig, StopAfter};
use sim::manta::{
    AckedWrite, ElectricMoray, MantaError, MorayTier, MoveError, copy_vnode_rows,
    delete_verified_vnode_rows, move_vnode_rows, verify_acked,
};
use wire::fash::{KeyEncoding, Ring};

const A: &str = "tcp://1.moray.coal.joyent.us:2020";
const B: &str = "tcp://2.moray.coal.joyent.us:2020";

fn region(vnodes: u32, ems: usize) -> (Arc<MorayTier>, Vec<Arc<ElectricMoray>>, Ring) {
    let tier = MorayTier::new();
    tier.add_shard(A);
    tier.add_shard(B);
    let ring = Ring::create(vnodes, &[A]).unwrap();
    let ems = (0..ems)
        .map(|i| {
            let em = ElectricMoray::new(&format!("em-{i}"), tier.clone(), KeyEncoding::Utf8);
            em.load_ring(&ring.to_json()).unwrap();
            em
        })
        .collect();
    (tier, ems, ring)
}

fn roll_out(ems: &[Arc<ElectricMoray>], ring: &Ring) {
    let json = ring.to_json();
    for em in ems {
        em.load_ring(&json).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_in_safe_order_under_load_loses_nothing() {
    let (tier, ems, r0) = region(128, 2);
    let (a, b) = (tier.shard(A).unwrap(), tier.shard(B).unwrap());
    let moving: Vec<u32> = (0..128).filter(|v| v % 2 == 1).collect();
    let set: BTreeSet<u32> = moving.iter().copied().collect();
    let cfg = LoadConfig {
        writers: 4,
        period: Duration::from_millis(3),
        stop: StopAfter::Elapsed(Duration::from_secs(60)),
        dir_fanout: 32,
        ..LoadConfig::default()
    };
    let handle = load::spawn(ems.clone(), cfg);
    let pause = || tokio::time::sleep(Duration::from_millis(60));
    pause().await;

    // 1. The moving vnodes refuse writes on every instance.
    let mut r1 = r0.clone();
    r1.set_read_only(&moving, true).unwrap();
    roll_out(&ems, &r1);
    pause().await;
    // 2. Copy and verify while nothing can change them.
    let copied = copy_vnode_rows(&a, &b, &set).unwrap();
    assert!(copied.selected > 0 && copied.verified == copied.selected);
    // 3. New ring, still read-only, rolled out one instance at a time: a
    //    mixed rollout reads identical rows from either side.
    let mut r2 = r1.clone();
    r2.remap_from(A, &moving, B).unwrap();
    ems[0].install_ring(r2.clone());
    pause().await;
    ems[1].install_ring(r2.clone());
    assert!(
        ems.iter()
            .all(|e| e.status().ring_fingerprint == Some(r2.fingerprint()))
    );
    // 4. Writable again, then 5. the source copies go.
    let mut r3 = r2.clone();
    r3.set_read_only(&moving, false).unwrap();
    roll_out(&ems, &r3);
    let deleted = delete_verified_vnode_rows(&a, &b, &set).unwrap();
    assert!(deleted >= copied.selected);
    pause().await;
    handle.stop();
    let report = handle.wait().await;
    println!("{}", report.summary());

    // Writes to the moving vnodes were refused for a while, nothing else.
    assert!(
        report.failed > 0 && report.acked > 50,
        "{}",
        report.summary()
    );
    assert_eq!(
        report.errors.keys().collect::<Vec<_>>(),
        vec!["ReadOnlyError"]
    );
    for att in report.attempts.iter().filter(|a| a.outcome.is_err()) {
        assert!(set.contains(&att.vnode.unwrap()), "{att:?}");
    }
    assert!(!report.windows.is_empty());

    let v = report.verify(&tier, &ems).await;
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(
        (v.lost.len(), v.duplicated.len(), v.ok as u64),
        (0, 0, report.acked)
    );
    // Each side holds exactly its vnodes.
    assert!(a.rows().iter().all(|r| !set.contains(&r.vnode.unwrap())));
    assert!(b.rows().iter().all(|r| set.contains(&r.vnode.unwrap())));
    assert!(!a.is_empty() && !b.is_empty());
}

/// Writes `n` objects in distinct directories through `em`.
async fn seed(em: &ElectricMoray, n: usize) -> Vec<AckedWrite> {
    let mut out = Vec::new();
    for i in 0..n {
        let key = format!("/a3829ca2-0966-60ce-9dc3-e4e9060f0950/stor/s{i}/obj");
        let value = json!({"i": i});
        em.put_object("manta", &key, value.clone()).await.unwrap();
        out.push(AckedWrite {
            bucket: "manta".into(),
            key,
            value,
        });
    }
    out
}

#[tokio::test]
async fn verifier_catches_lost_duplicated_and_stale_rows() {
    let (tier, ems, _) = region(64, 1);
    let em = &ems[0];
    let (a, b) = (tier.shard(A).unwrap(), tier.shard(B).unwrap());
    let writes = seed(em, 40).await;
    let clean = verify_acked(&writes, &tier, &ems).await;
    assert!(clean.is_clean() && clean.ok == 40 && clean.checked == 40);

    // Copy without deleting: every copied row is now on two shards.
    let set: BTreeSet<u32> = (0..8).collect();
    let report = copy_vnode_rows(&a, &b, &set).unwrap();
    assert!(report.selected > 0);
    let v = verify_acked(&writes, &tier, &ems).await;
    assert_eq!(v.duplicated.len(), report.selected);
    assert!(
        v.duplicated
            .iter()
            .all(|(_, on)| on == &vec![A.to_string(), B.to_string()])
    );
    assert!(!v.is_clean());
    b.delete_vnodes(&set).unwrap();

    // A row deleted behind e-m's back is lost.
    a.delete("manta", &writes[3].key).unwrap();
    // A row whose stored value is not the acknowledged one.
    let vnode = em.locate("manta", &writes[5].key).unwrap().vnode;
    a.put("manta", &writes[5].key, json!("stale"), Some(vnode))
        .unwrap();
    let v = verify_acked(&writes, &tier, &ems).await;
    assert_eq!(v.lost, vec![format!("manta::{}", writes[3].key)]);
    assert_eq!(v.wrong_value, vec![format!("manta::{}", writes[5].key)]);
    assert!(v.duplicated.is_empty());
    assert_eq!(v.ok, 38);
    assert!(!v.is_clean());
}

#[tokio::test]
async fn deleting_before_the_ring_switch_is_caught() {
    let (tier, ems, _) = region(64, 1);
    let (a, b) = (tier.shard(A).unwrap(), tier.shard(B).unwrap());
    let writes = seed(&ems[0], 40).await;
    let set: BTreeSet<u32> = (0..32).collect();
    // Copy, then delete from the source while the ring still routes there:
    // the rows exist once, on B, but no read reaches them.
    let moved = move_vnode_rows(&a, &b, &set).unwrap();
    assert!(moved.deleted > 0 && moved.deleted == moved.selected);
    let v = verify_acked(&writes, &tier, &ems).await;
    assert!(v.lost.is_empty() && v.duplicated.is_empty());
    assert_eq!(v.unreadable.len(), moved.deleted);
    assert!(v.unreadable[0].1.contains("ObjectNotFoundError"));
    // Switching the ring afterwards makes them readable again.
    let mut ring = (*ems[0].ring().unwrap()).clone();
    ring.remap_from(A, &set.iter().copied().collect::<Vec<_>>(), B)
        .unwrap();
    roll_out(&ems, &ring);
    assert!(verify_acked(&writes, &tier, &ems).await.is_clean());
}

#[tokio::test]
async fn a_write_after_the_copy_blocks_the_delete() {
    let (tier, ems, ring) = region(64, 1);
    let em = &ems[0];
    let (a, b) = (tier.shard(A).unwrap(), tier.shard(B).unwrap());
    let mut writes = seed(em, 30).await;
    let late_key = writes[0].key.replace("/obj", "/late");
    let vnode = em.locate("manta", &late_key).unwrap().vnode;
    let set: BTreeSet<u32> = [vnode].into();

    // Forgot to make the vnode read-only: a write lands on the source after
    // the copy.
    copy_vnode_rows(&a, &b, &set).unwrap();
    em.put_object("manta", &late_key, json!("late"))
        .await
        .unwrap();
    writes.push(AckedWrite {
        bucket: "manta".into(),
        key: late_key.clone(),
        value: json!("late"),
    });
    let before = a.len();
    match delete_verified_vnode_rows(&a, &b, &set) {
        Err(MoveError::Unverified { missing, first, .. }) => {
            assert_eq!(missing, 1);
            assert_eq!(first, format!("manta::{late_key}"));
        }
        other => panic!("expected Unverified, got {other:?}"),
    }
    assert_eq!(a.len(), before, "nothing deleted");

    // Had the delete skipped verification, the write would be gone.
    let mut r = ring.clone();
    r.remap_from(A, &[vnode], B).unwrap();
    roll_out(&ems, &r);
    a.delete_vnodes(&set).unwrap();
    let v = verify_acked(&writes, &tier, &ems).await;
    assert_eq!(v.lost, vec![format!("manta::{late_key}")]);
}

#[tokio::test]
async fn copy_is_idempotent_and_refuses_conflicts() {
    let (tier, ems, _) = region(16, 1);
    let (a, b) = (tier.shard(A).unwrap(), tier.shard(B).unwrap());
    seed(&ems[0], 20).await;
    a.put("manta", "/batch/row", json!("no vnode"), None)
        .unwrap();
    let set: BTreeSet<u32> = (0..16).collect();
    let first = copy_vnode_rows(&a, &b, &set).unwrap();
    assert_eq!(
        (first.selected, first.copied, first.null_vnode_rows),
        (20, 20, 1)
    );
    let again = copy_vnode_rows(&a, &b, &set).unwrap();
    assert_eq!((again.selected, again.copied), (20, 0));
    // New rows on the destination keep ids distinct from copied ones.
    let fresh = b.put("manta", "/fresh/row", json!(1), Some(0)).unwrap();
    assert!(b.rows().iter().filter(|r| r.id == fresh.id).count() == 1);

    let victim = a.rows().into_iter().find(|r| r.vnode.is_some()).unwrap();
    b.put(
        &victim.bucket,
        &victim.key,
        json!("different"),
        victim.vnode,
    )
    .unwrap();
    assert!(matches!(
        copy_vnode_rows(&a, &b, &set),
        Err(MoveError::Store(MantaError::RowConflict { .. }))
    ));
    assert_eq!(
        copy_vnode_rows(&a, &a, &set),
        Err(MoveError::SameShard(A.into()))
    );
    // A read-only destination refuses the copy.
    b.delete(&victim.bucket, &victim.key).unwrap();
    b.set_read_only(true);
    assert!(matches!(
        copy_vnode_rows(&a, &b, &set),
        Err(MoveError::Store(MantaError::ReadOnlyPnode { .. }))
    ));
}
