//! The simulated manatee sitters driving real PostgreSQL servers (the
//! opt-in backend, `ManateeSim::with_real_pg`): one postmaster per zone on
//! 127.0.0.1, roles applied as manatee's postgresMgr does (synchronous
//! replication to the sync, chained asyncs, `pg_basebackup` restores,
//! `pg_promote()` on takeover).
//!
//! Needs the PostgreSQL 15 server programs (`postgresql-15`, or
//! `TRITONCTL_PG_BIN`); without them each test says so and passes, unless
//! `TRITONCTL_REQUIRE_PG` is set, as `.ci/run` does after installing them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use coord::CreateMode;
use coord::mem::MemEnsemble;
use coord::testing::ZkServer;
use sim::manatee::{
    BootOptions, ManateeSim, ManateeSimConfig, PeerRole, PgBinaries, PgRole, RealPostgres,
    SessionProvider, Shard, WriteError, ZkProvider, Zone, ZoneSpec,
};
use wire::manatee::{AdmRole, ClusterState, Severity};

const SHARD: &str = "1.moray.test";
/// Real-time patience: real servers start, back up and promote.
const T: Duration = Duration::from_secs(120);

struct Fx {
    sim: ManateeSim,
    shard: Shard,
    provider: Arc<dyn SessionProvider>,
    pg: Arc<RealPostgres>,
    _zk: Option<ZkServer>,
}

fn binaries(test: &str) -> Option<PgBinaries> {
    match PgBinaries::find() {
        Ok(b) => Some(b),
        Err(e) if std::env::var_os("TRITONCTL_REQUIRE_PG").is_some() => {
            panic!("{test}: TRITONCTL_REQUIRE_PG is set and {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            None
        }
    }
}

fn config() -> ManateeSimConfig {
    let mut cfg = ManateeSimConfig::scaled(0.05);
    // A write waits up to 3 s (real) for the sync on a loaded machine.
    cfg.write_timeout = Duration::from_secs(60);
    cfg
}

impl Fx {
    fn new(bins: PgBinaries, provider: Arc<dyn SessionProvider>, zk: Option<ZkServer>) -> Fx {
        let pg = RealPostgres::new(bins).expect("real postgres root");
        let sim = ManateeSim::with_real_pg(provider.clone(), config(), pg.clone());
        Fx {
            shard: sim.shard(SHARD),
            sim,
            provider,
            pg,
            _zk: zk,
        }
    }

    fn mem(bins: PgBinaries) -> Fx {
        Fx::new(bins, Arc::new(MemEnsemble::new()), None)
    }

    async fn zk(bins: PgBinaries) -> Fx {
        let server = ZkServer::start().await.expect("start zookeeper");
        let provider = ZkProvider {
            connect_string: server.connect_string(),
            session_timeout: Duration::from_secs(6),
        };
        Fx::new(bins, Arc::new(provider), Some(server))
    }

    fn spec(n: u8) -> ZoneSpec {
        ZoneSpec::new(&format!("node{n}"), &format!("10.0.0.{n}"))
    }

    fn zone(&self, n: u8) -> Zone {
        self.sim.zone(&format!("node{n}")).expect("zone")
    }

    /// Three peers, generation 1: P=node1 S=node2 A=[node3], as the
    /// conformance suite's setup (peers 2 and 3 in the election first).
    async fn setup(&self) -> ClusterState {
        let stand_in = self.provider.connect().await.unwrap();
        let c = stand_in.coord.as_ref();
        c.mkdirp(&wire::manatee::election_path(SHARD))
            .await
            .unwrap();
        for k in 2..=3 {
            let p = Fx::spec(k).ident();
            c.create(
                &wire::manatee::election_prefix(SHARD, &p.id),
                &p.election_data().to_json(),
                CreateMode::EphemeralSequential,
            )
            .await
            .unwrap();
        }
        self.add(1).await;
        let st = self
            .wait("setup", |s| {
                s.generation == 1 && s.sync.as_ref().is_some_and(|p| p.id == Fx::id(2))
            })
            .await;
        self.add(2).await;
        self.add(3).await;
        self.role(2, PeerRole::Sync).await;
        self.role(3, PeerRole::Async).await;
        stand_in.coord.close().await;
        self.writable().await;
        st
    }

    fn id(n: u8) -> String {
        Fx::spec(n).ident().id
    }

    async fn add(&self, n: u8) -> Zone {
        self.sim
            .add_zone(Fx::spec(n), BootOptions::new(SHARD))
            .await
            .expect("add zone")
    }

    async fn wait(&self, what: &str, pred: impl Fn(&ClusterState) -> bool) -> ClusterState {
        match self.shard.wait_for_state(T, what, pred).await {
            Ok(s) => s,
            Err(e) => panic!("{e}\n{}", self.peers()),
        }
    }

    async fn role(&self, n: u8, role: PeerRole) {
        if let Err(e) = self
            .zone(n)
            .wait_for(T, &format!("role {role:?}"), |p| p.role == role)
            .await
        {
            panic!("{e}\n{}", self.peers());
        }
    }

    /// Until `pred` holds for a zone's postgres as the server reports it.
    async fn until_pg(&self, n: u8, what: &str, pred: impl Fn(&Zone) -> bool) {
        let z = self.zone(n);
        let ok = tokio::time::timeout(T, async {
            while !pred(&z) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(ok.is_ok(), "node{n}: {what}\n{}", self.peers());
    }

    fn peers(&self) -> String {
        let mut out = format!("postgres logs under {}\n", self.pg.root().display());
        for z in self.sim.zones() {
            let p = z.peer();
            out.push_str(&format!(
                "{}: running={} fatal={:?} role={:?} gen={:?} pg_online={} pg_role={:?} ro={} lsn={:?} repl_err={:?}\n",
                z.zone_id(),
                z.is_running(),
                z.fatal_error(),
                p.role,
                p.generation,
                z.pg_online(),
                z.pg_role(),
                z.pg_read_only(),
                z.lsn(),
                z.replication_error(),
            ));
        }
        out
    }

    /// Until the primary acknowledges a write.
    async fn writable(&self) {
        let r = tokio::time::timeout(T, async {
            loop {
                match self.shard.write(b"probe").await {
                    Ok(_) => return,
                    Err(e @ WriteError::UnknownPrimary(_)) => panic!("write failed: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await;
        assert!(r.is_ok(), "primary never became writable\n{}", self.peers());
    }

    async fn done(self) {
        self.sim.shutdown().await;
    }
}

fn lost(acked: &[Vec<u8>], rows: &[Vec<u8>]) -> Vec<String> {
    let have: HashSet<&Vec<u8>> = rows.iter().collect();
    acked
        .iter()
        .filter(|w| !have.contains(w))
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

/// Writes acknowledged by the primary are on the sync: the primary's
/// postmaster dies with them, the sync is promoted, and every one is there.
/// Then the new primary loses its sync: a write it commits locally is not
/// acknowledged, because the sync never had it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_sync_replication_acknowledges_only_what_the_sync_has() {
    let Some(bins) = binaries("pg_sync_replication_acknowledges_only_what_the_sync_has") else {
        return;
    };
    let f = Fx::mem(bins);
    let st = f.setup().await;

    // The real servers are in their roles, and pg-status reads them.
    assert_eq!(f.zone(1).pg_role(), PgRole::Primary);
    assert_eq!(f.zone(2).pg_role(), PgRole::Sync);
    f.until_pg(3, "an async streaming from the sync", |z| {
        z.pg_role() == PgRole::Async && z.replication_error().is_none()
    })
    .await;
    let report = f.shard.pg_status().await.unwrap();
    let primary_row = &report.peers[0];
    assert_eq!(primary_row.role, AdmRole::Primary);
    let repl = primary_row
        .repl
        .as_ref()
        .expect("the primary streams to its sync");
    assert_eq!(repl.sync_state, "sync", "{report:?}");
    assert_eq!(repl.client_addr, "10.0.0.2");
    assert!(
        report.peers[1].repl.is_some(),
        "the sync streams to the async (manatee chains): {report:?}"
    );

    let mut acked = Vec::new();
    for i in 0..40 {
        let row = format!("acked-{i}").into_bytes();
        f.shard.write(&row).await.expect("write on a healthy shard");
        acked.push(row);
    }

    // The primary's zone dies (postmaster SIGKILLed); its session expires.
    f.zone(1).kill().await;
    f.wait("the sync takes over", |s| {
        s.generation == st.generation + 1
            && s.primary.id == Fx::id(2)
            && s.sync.as_ref().is_some_and(|p| p.id == Fx::id(3))
    })
    .await;
    f.until_pg(2, "promoted", |z| z.pg_role() == PgRole::Primary)
        .await;
    f.writable().await;
    let rows = f.shard.primary_writes().await.unwrap();
    let missing = lost(&acked, &rows);
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");

    // node3 followed node2 across its promotion and holds them too.
    let on_3: Vec<Vec<u8>> = tokio::time::timeout(T, async {
        loop {
            let rows = f.zone(3).writes();
            if lost(&acked, &rows).is_empty() {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("node3 never caught up\n{}", f.peers()));
    assert!(lost(&acked, &on_3).is_empty());

    // The sync dies, its session not yet expired: the primary commits the
    // next row locally but does not acknowledge it, and (PostgreSQL holds a
    // commit waiting for its sync) nobody sees it yet.
    let dangling = f.zone(3).kill_keep_session().await;
    let err = f
        .shard
        .write(b"held-for-the-sync")
        .await
        .expect_err("a write acknowledged with the sync dead");
    assert!(
        matches!(err, WriteError::NotAcknowledged { .. }),
        "unexpected {err:?}"
    );
    let rows = f.shard.primary_writes().await.unwrap();
    assert!(!rows.iter().any(|r| r == b"held-for-the-sync"));
    // The sync comes back and receives it: the held commit completes, so
    // the row had been committed on the primary all along.
    f.zone(3).start().await.unwrap();
    let appeared = tokio::time::timeout(T, async {
        loop {
            let rows = f.shard.primary_writes().await.unwrap_or_default();
            if rows.iter().any(|r| r == b"held-for-the-sync") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        appeared.is_ok(),
        "the held row never appeared once the sync was back\n{}",
        f.peers()
    );
    drop(dangling);
    f.done().await;
}

/// The dead-primary fault on real PostgreSQL and a real ZooKeeper, with a
/// writer running throughout: the sync takes over with a new generation,
/// the old primary is deposed, and no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_takeover_on_real_postgres_loses_no_acknowledged_write() {
    let Some(bins) = binaries("pg_takeover_on_real_postgres_loses_no_acknowledged_write") else {
        return;
    };
    let f = Fx::zk(bins).await;
    let st = f.setup().await;

    let shard = f.shard.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let (mut acked, mut failed) = (Vec::new(), 0u64);
        let (mut last_ack, mut longest_gap) = (None::<std::time::Instant>, Duration::ZERO);
        let mut i = 0u64;
        while !*stop_rx.borrow() {
            let payload = format!("row-{i}").into_bytes();
            i += 1;
            match shard.write(&payload).await {
                Ok(_) => {
                    let now = std::time::Instant::now();
                    if let Some(t) = last_ack {
                        longest_gap = longest_gap.max(now - t);
                    }
                    last_ack = Some(now);
                    acked.push(payload);
                }
                Err(_) => {
                    failed += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        (acked, failed, longest_gap)
    });
    // Some writes before the fault.
    let before = tokio::time::timeout(T, async {
        loop {
            if f.shard.primary_writes().await.map_or(0, |r| r.len()) > 20 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(before.is_ok(), "the writer made no progress\n{}", f.peers());

    f.zone(1).kill().await;
    let after = f
        .wait("takeover", |s| {
            s.generation == st.generation + 1
                && s.primary.id == Fx::id(2)
                && s.sync.as_ref().is_some_and(|p| p.id == Fx::id(3))
                && s.deposed.iter().any(|p| p.id == Fx::id(1))
        })
        .await;
    assert!(after.asyncs.is_empty());
    f.until_pg(2, "promoted", |z| z.pg_role() == PgRole::Primary)
        .await;
    // Writes resume on the new primary once its sync caught up.
    let resumed = tokio::time::timeout(T, async {
        let n = f.shard.primary_writes().await.map_or(0, |r| r.len());
        loop {
            if f.shard.primary_writes().await.map_or(0, |r| r.len()) > n + 10 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(resumed.is_ok(), "writes never resumed\n{}", f.peers());
    stop_tx.send(true).unwrap();
    let (acked, failed, gap) = writer.await.unwrap();
    eprintln!(
        "takeover on real postgres: {} writes acknowledged, {failed} failed, \
         longest gap between acknowledgements {gap:?}",
        acked.len()
    );
    assert!(acked.len() > 20, "too few acknowledged: {}", acked.len());

    let rows = f.shard.primary_writes().await.unwrap();
    let missing = lost(&acked, &rows);
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");

    // The dead primary reboots: deposed, its postgres stays off.
    f.zone(1).start().await.unwrap();
    f.role(1, PeerRole::Deposed).await;
    assert!(!f.zone(1).pg_online());

    // `manatee-adm rebuild`: its diverged data goes, pg_basebackup from the
    // primary restores it, and it follows the sync as the new async.
    f.shard.rebuild(&f.zone(1)).await.unwrap();
    f.wait("the rebuilt peer rejoins as an async", |s| {
        s.asyncs.iter().any(|p| p.id == Fx::id(1)) && s.deposed.is_empty()
    })
    .await;
    f.until_pg(1, "streaming from node3 with every acknowledged row", |z| {
        z.pg_role() == PgRole::Async
            && z.replication_error().is_none()
            && lost(&acked, &z.writes()).is_empty()
    })
    .await;
    let report = f.shard.pg_status().await.unwrap();
    assert!(
        report
            .verify()
            .iter()
            .all(|i| i.severity == Severity::Warning),
        "{:?}",
        report.verify()
    );
    f.done().await;
}
