//! Moving a vnode set between shards through the `RowStore` interface, and
//! the rows a `_vnode` query cannot see: a batch (MPU commit) leaves
//! `_vnode` NULL, so a move by `_vnode` alone strands the row on the old
//! shard, unreachable through the new ring (research 3.11-2). Placing NULL
//! rows by their key moves them too.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use sim::manta::moves::{NullVnodes, copy_rows, delete_moved_rows};
use sim::manta::verify::{AckedWrite, verify_acked};
use sim::manta::{BatchOp, ElectricMoray, IndexShard, MorayTier};
use wire::fash::{KeyEncoding, Ring};

const A: &str = "tcp://1.moray.test:2020";
const B: &str = "tcp://2.moray.test:2020";
const C: &str = "tcp://3.moray.test:2020";
const ACCT: &str = "/a3829ca2-0966-60ce-9dc3-e4e9060f0950";

struct Fx {
    tier: Arc<MorayTier>,
    em: Arc<ElectricMoray>,
    ring: Ring,
    dir: String,
    vnode: u32,
    acked: Vec<AckedWrite>,
}

/// A directory on B holding two putObject rows and an MPU commit's two
/// batch rows (NULL `_vnode`).
async fn fixture() -> Fx {
    let tier = MorayTier::new();
    for p in [A, B, C] {
        tier.add_shard(p);
    }
    let ring = Ring::create(64, &[A, B]).unwrap();
    let em = ElectricMoray::new("em-0", tier.clone(), KeyEncoding::Utf8);
    em.install_ring(ring.clone());
    em.configure_index_shards(vec![
        IndexShard::new("1.moray.test", false),
        IndexShard::new("2.moray.test", false),
        IndexShard::new("3.moray.test", false),
    ]);
    let dir = (0..1000)
        .map(|i| format!("{ACCT}/stor/dir{i}"))
        .find(|d| em.locate("manta", &format!("{d}/x")).unwrap().pnode == B)
        .unwrap();
    let vnode = em.locate("manta", &format!("{dir}/x")).unwrap().vnode;
    let mut acked = Vec::new();
    for name in ["a", "b"] {
        let key = format!("{dir}/{name}");
        let value = json!({"dirname": dir, "name": name});
        em.put_object("manta", &key, value.clone()).await.unwrap();
        acked.push(AckedWrite {
            bucket: "manta".into(),
            key,
            value,
        });
    }
    let mpu_key = format!("{dir}/big.iso");
    let upload = format!("0f1e2d3c:{dir}/big.iso");
    let value = json!({"dirname": dir, "name": "big.iso"});
    em.batch(&[
        BatchOp::Put {
            bucket: "manta".into(),
            key: mpu_key.clone(),
            value: value.clone(),
        },
        BatchOp::Put {
            bucket: "manta_uploads".into(),
            key: upload.clone(),
            value: json!({"state": "done"}),
        },
    ])
    .await
    .unwrap();
    acked.push(AckedWrite {
        bucket: "manta".into(),
        key: mpu_key,
        value,
    });
    acked.push(AckedWrite {
        bucket: "manta_uploads".into(),
        key: upload,
        value: json!({"state": "done"}),
    });
    Fx {
        tier,
        em,
        ring,
        dir,
        vnode,
        acked,
    }
}

/// Copy, switch the ring, delete the source's rows.
async fn move_vnode(fx: &Fx, nulls: NullVnodes<'_>) -> sim::manta::reshard::MoveReport {
    let set: BTreeSet<u32> = [fx.vnode].into();
    let (b, c) = (fx.tier.store(B).unwrap(), fx.tier.store(C).unwrap());
    let report = copy_rows(b.as_ref(), c.as_ref(), &set, nulls)
        .await
        .unwrap();
    let mut next = fx.ring.clone();
    next.remap(&[fx.vnode], C).unwrap();
    fx.em.install_ring(next);
    delete_moved_rows(b.as_ref(), &set, nulls).await.unwrap();
    report
}

#[tokio::test]
async fn a_move_by_vnode_alone_strands_batch_rows_on_the_old_shard() {
    let fx = fixture().await;
    let report = move_vnode(&fx, NullVnodes::Leave).await;
    assert_eq!(report.selected, 2);
    assert_eq!(report.null_vnode_rows, 2);
    let check = verify_acked(&fx.acked, &fx.tier, std::slice::from_ref(&fx.em)).await;
    // On one shard, but not where the ring routes: unreadable.
    assert!(check.lost.is_empty());
    assert_eq!(check.unreadable.len(), 2, "{check:?}");
    assert_eq!(
        fx.em
            .get_object("manta", &format!("{}/big.iso", fx.dir))
            .await
            .unwrap_err()
            .name(),
        "ObjectNotFoundError"
    );
}

#[tokio::test]
async fn placing_null_vnode_rows_by_key_moves_them_too() {
    let fx = fixture().await;
    let report = move_vnode(&fx, NullVnodes::ByKey(&fx.ring)).await;
    assert_eq!(report.selected, 4);
    assert_eq!(report.null_vnode_rows, 0);
    let check = verify_acked(&fx.acked, &fx.tier, std::slice::from_ref(&fx.em)).await;
    assert!(check.is_clean(), "{check:?}");
    // Nothing of the vnode is left on B; the batch rows kept `_vnode` NULL.
    let b = fx.tier.store(B).unwrap();
    assert!(b.all_rows().await.unwrap().is_empty());
    let c = fx.tier.store(C).unwrap();
    assert_eq!(
        c.get("manta", &format!("{}/big.iso", fx.dir))
            .await
            .unwrap()
            .vnode,
        None
    );
}
