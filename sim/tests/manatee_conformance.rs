//! Conformance of the simulated sitters with manatee-state-machine's own test
//! cases (`msm:test/tst.*.js`, research `manatee.md` §3 and §9): same
//! starting state, same events, same resulting cluster state.
//!
//! The state-machine suite runs one real peer against a scripted world; here
//! every peer is a real simulated sitter. Where the script made a dead peer
//! act (its simulator appends asyncs on behalf of any primary), the case
//! drives the same outcome through real peers instead, noted per test.
//!
//! Every case runs on the in-process ensemble and, prefixed `zk_`, on a real
//! ZooKeeper (`coord::testing::ZkServer`).

use std::sync::Arc;
use std::time::Duration;

use coord::CreateMode;
use coord::mem::MemEnsemble;
use coord::testing::ZkServer;
use serde_json::json;
use sim::manatee::{
    BootOptions, ManateeSim, ManateeSimConfig, PeerRole, PgRole, SessionProvider, Shard,
    WriteError, ZkProvider, Zone, ZoneSpec,
};
use time::OffsetDateTime;
use wire::manatee::{ClusterState, Freeze, Lsn, PeerIdent, PromoteRequest, Severity};

const SHARD: &str = "1.moray.test";
/// Real-time patience for anything that should happen.
const T: Duration = Duration::from_secs(30);

/// At most two private ZooKeepers at a time on a small machine.
static ZK_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

struct Fx {
    sim: ManateeSim,
    shard: Shard,
    provider: Arc<dyn SessionProvider>,
    _zk: Option<(ZkServer, tokio::sync::SemaphorePermit<'static>)>,
}

impl Fx {
    async fn mem() -> Fx {
        let provider: Arc<dyn SessionProvider> = Arc::new(MemEnsemble::new());
        let sim = ManateeSim::new(provider.clone(), ManateeSimConfig::scaled(0.02));
        Fx {
            shard: sim.shard(SHARD),
            sim,
            provider,
            _zk: None,
        }
    }

    async fn zk() -> Fx {
        let permit = ZK_SLOTS.acquire().await.unwrap();
        let server = ZkServer::start().await.expect("start zookeeper");
        let provider = ZkProvider {
            connect_string: server.connect_string(),
            session_timeout: Duration::from_secs(4),
        };
        let provider: Arc<dyn SessionProvider> = Arc::new(provider);
        let sim = ManateeSim::new(provider.clone(), ManateeSimConfig::scaled(0.05));
        Fx {
            shard: sim.shard(SHARD),
            sim,
            provider,
            _zk: Some((server, permit)),
        }
    }

    fn spec(n: u8) -> ZoneSpec {
        ZoneSpec::new(&format!("node{n}"), &format!("10.0.0.{n}"))
    }

    fn ident(n: u8) -> PeerIdent {
        Fx::spec(n).ident()
    }

    async fn add(&self, n: u8) -> Zone {
        self.add_with(Fx::spec(n), BootOptions::new(SHARD)).await
    }

    async fn add_onwm(&self, n: u8) -> Zone {
        self.add_with(
            Fx::spec(n),
            BootOptions::new(SHARD).one_node_write_mode(true),
        )
        .await
    }

    async fn add_with(&self, spec: ZoneSpec, boot: BootOptions) -> Zone {
        self.sim.add_zone(spec, boot).await.expect("add zone")
    }

    /// The state-machine suite's "addpeer x(n-1), startPeer": peers 2..=n
    /// are already in ZooKeeper (election nodes of a stand-in session) when
    /// node1's sitter starts, so node1 sets up with all of them:
    /// generation 1, P=node1 S=node2 A=[node3..]. Then their own sitters
    /// start and the stand-in goes away, invisibly: the ids never change.
    async fn setup(&self, n: u8) -> ClusterState {
        let stand_in = self.provider.connect().await.unwrap();
        let c = stand_in.coord.as_ref();
        c.mkdirp(&wire::manatee::election_path(SHARD))
            .await
            .unwrap();
        for k in 2..=n {
            let p = Fx::ident(k);
            c.create(
                &wire::manatee::election_prefix(SHARD, &p.id),
                &p.election_data().to_json(),
                CreateMode::EphemeralSequential,
            )
            .await
            .unwrap();
        }
        self.add(1).await;
        let asyncs: Vec<u8> = (3..=n).collect();
        let st = self.wait("setup", &topo(1, 1, Some(2), &asyncs, &[])).await;
        for k in 2..=n {
            self.add(k).await;
        }
        self.role(2, PeerRole::Sync).await;
        for k in 3..=n {
            self.role(k, PeerRole::Async).await;
        }
        stand_in.coord.close().await;
        if n > 2 {
            self.healthy(&[]).await;
        }
        st
    }

    fn zone(&self, n: u8) -> Zone {
        self.sim.zone(&format!("node{n}")).expect("zone")
    }

    /// Long enough for many backoff rounds: "nothing happens" checks.
    async fn quiet(&self) {
        let c = self.sim.config();
        tokio::time::sleep(c.time_scale.real(c.backoff) * 8).await;
    }

    async fn wait(&self, what: &str, want: &Topo) -> ClusterState {
        match self
            .shard
            .wait_for_state(T, what, |s| Topo::of(s) == *want)
            .await
        {
            Ok(s) => s,
            Err(e) => panic!("{e}\nwanted {want:?}\n{}", self.peers()),
        }
    }

    /// Every sitter's own view, for failure messages.
    fn peers(&self) -> String {
        let mut out = String::new();
        for z in self.sim.zones() {
            let p = z.peer();
            out.push_str(&format!(
                "{}: running={} fatal={:?} role={:?} gen={:?} pending={:?} zkpeers={:?} pg_online={} lsn={:?} repl_err={:?}\n",
                z.zone_id(),
                z.is_running(),
                z.fatal_error(),
                p.role,
                p.generation,
                p.pending,
                p.zkpeers,
                z.pg_online(),
                z.lsn(),
                z.replication_error(),
            ));
        }
        out
    }

    async fn state(&self) -> ClusterState {
        self.shard.state().await.unwrap().expect("state exists")
    }

    async fn role(&self, n: u8, role: PeerRole) {
        self.zone(n)
            .wait_for(T, &format!("role {role:?}"), |p| p.role == role)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Until the primary accepts writes: its sync has caught up.
    async fn writable(&self) {
        let r = tokio::time::timeout(T, async {
            loop {
                match self.shard.write(b"probe").await {
                    Ok(_) => return,
                    Err(e @ WriteError::UnknownPrimary(_)) => panic!("write failed: {e}"),
                    // Read-only, offline or reconfigured mid-write: try again.
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        r.expect("primary never became writable");
    }

    /// Until `manatee-adm verify` reports no errors and only `warnings`.
    async fn healthy(&self, warnings: &[&str]) {
        let mut last = Vec::new();
        let ok = tokio::time::timeout(T, async {
            loop {
                if let Ok(issues) = self.shard.verify().await {
                    let msgs: Vec<String> = issues.iter().map(|i| i.message.clone()).collect();
                    if issues.iter().all(|i| i.severity == Severity::Warning) && msgs == warnings {
                        return;
                    }
                    last = msgs;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(ok.is_ok(), "never healthy; last issues: {last:?}");
    }

    async fn done(self) {
        self.sim.shutdown().await;
    }
}

/// The parts of a state the state-machine tests compare, by zone name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Topo {
    generation: u64,
    primary: String,
    sync: Option<String>,
    asyncs: Vec<String>,
    deposed: Vec<String>,
}

impl Topo {
    fn of(s: &ClusterState) -> Topo {
        Topo {
            generation: s.generation,
            primary: s.primary.zone_id.clone(),
            sync: s.sync.as_ref().map(|p| p.zone_id.clone()),
            asyncs: s.asyncs.iter().map(|p| p.zone_id.clone()).collect(),
            deposed: s.deposed.iter().map(|p| p.zone_id.clone()).collect(),
        }
    }
}

fn topo(generation: u64, primary: u8, sync: Option<u8>, asyncs: &[u8], deposed: &[u8]) -> Topo {
    let n = |i: &u8| format!("node{i}");
    Topo {
        generation,
        primary: n(&primary),
        sync: sync.as_ref().map(n),
        asyncs: asyncs.iter().map(n).collect(),
        deposed: deposed.iter().map(n).collect(),
    }
}

fn lsn(s: &ClusterState) -> Lsn {
    s.init_wal_lsn().unwrap()
}

/// `bootstrap(primary, sync, asyncs)` of the state-machine simulator: the
/// state written from outside, generation 1, initWal 0/00000000.
fn bootstrap(primary: u8, sync: u8, asyncs: &[u8]) -> ClusterState {
    ClusterState::initial(
        Fx::ident(primary),
        Fx::ident(sync),
        asyncs.iter().map(|n| Fx::ident(*n)).collect(),
    )
}

macro_rules! both {
    ($($case:ident => $mem:ident, $zk:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $mem() {
            cases::$case(Fx::mem().await).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $zk() {
            cases::$case(Fx::zk().await).await;
        }
    )*};
}

both! {
    cluster_setup_immediate => cluster_setup_immediate, zk_cluster_setup_immediate;
    cluster_setup_delayed => cluster_setup_delayed, zk_cluster_setup_delayed;
    cluster_setup_passive => cluster_setup_passive, zk_cluster_setup_passive;
    cluster_setup_onwm => cluster_setup_onwm, zk_cluster_setup_onwm;
    existing_database_never_sets_up => existing_database_never_sets_up, zk_existing_database_never_sets_up;
    freeze => freeze, zk_freeze;
    noflap => noflap, zk_noflap;
    onwm => onwm, zk_onwm;
    onwm_newpeer => onwm_newpeer, zk_onwm_newpeer;
    onwm_upgrade => onwm_upgrade, zk_onwm_upgrade;
    onwm_upgrade_by_restart => onwm_upgrade_by_restart, zk_onwm_upgrade_by_restart;
    onwm_config_with_normal_state_is_fatal => onwm_config_with_normal_state_is_fatal, zk_onwm_config_with_normal_state_is_fatal;
    promote_primary => promote_primary, zk_promote_primary;
    promote_sync => promote_sync, zk_promote_sync;
    start_primary => start_primary, zk_start_primary;
    start_sync => start_sync, zk_start_sync;
    start_deposed => start_deposed, zk_start_deposed;
    restart_within_session_timeout => restart_within_session_timeout, zk_restart_within_session_timeout;
    primary_killed_sync_takes_over_no_acked_write_lost => primary_killed_sync_takes_over_no_acked_write_lost, zk_primary_killed_sync_takes_over_no_acked_write_lost;
    primary_session_expiry_deposes_live_primary => primary_session_expiry_deposes_live_primary, zk_primary_session_expiry_deposes_live_primary;
    disabled_sitter => disabled_sitter, zk_disabled_sitter;
    backup_transplant => backup_transplant, zk_backup_transplant;
}

mod cases {
    use super::*;

    /// tst.cluster_setup_immed: peers present at once; the first active peer
    /// (lexicographically smallest id) writes generation 1.
    pub(super) async fn cluster_setup_immediate(f: Fx) {
        let st = f.setup(3).await;
        assert_eq!(lsn(&st), Lsn::ZERO);
        assert!(!st.is_frozen() && st.one_node_write_mode.is_none());
        f.role(1, PeerRole::Primary).await;
        f.role(2, PeerRole::Sync).await;
        f.role(3, PeerRole::Async).await;
        // One write, with its history copy, and nothing since: the stand-in
        // election nodes being replaced was invisible.
        f.quiet().await;
        let history = f.shard.history().await.unwrap();
        assert_eq!(history.len(), 1);
        assert!(history[0].name.starts_with("1-"));
        assert_eq!(history[0].state.as_ref(), Some(&f.state().await));

        // What `manatee-adm pg-status` shows for a healthy 3-peer shard.
        f.healthy(&[]).await;
        let report = f.shard.pg_status().await.unwrap();
        type Row = (String, bool, Option<(String, String, String)>);
        let rows: Vec<Row> = report
            .peers
            .iter()
            .map(|p| {
                (
                    p.role.to_string(),
                    p.online(),
                    p.repl
                        .as_ref()
                        .map(|r| (r.client_addr.clone(), r.state.clone(), r.sync_state.clone())),
                )
            })
            .collect();
        let repl = |ip: &str, kind: &str| Some((ip.to_string(), "streaming".into(), kind.into()));
        assert_eq!(
            rows,
            vec![
                ("primary".into(), true, repl("10.0.0.2", "sync")),
                ("sync".into(), true, repl("10.0.0.3", "async")),
                ("async".into(), true, None),
            ]
        );
        assert_eq!(report.peers[0].lag, None);
        assert_eq!(report.peers[2].lag, Some(Duration::ZERO));
        let table = report.render_table();
        assert!(table.lines().nth(1).unwrap().starts_with("primary  node1"));
        f.done().await;
    }

    /// tst.cluster_setup_delay: alone, the peer waits unassigned with PG off;
    /// when a second peer appears it sets the cluster up.
    pub(super) async fn cluster_setup_delayed(f: Fx) {
        let z1 = f.add(1).await;
        f.role(1, PeerRole::Unassigned).await;
        f.quiet().await;
        assert!(f.shard.state().await.unwrap().is_none());
        assert!(!z1.pg_online());
        assert_eq!(z1.peer().zkpeers, Some(vec![Fx::ident(1).id]));

        f.add(2).await;
        f.wait("setup", &topo(1, 1, Some(2), &[], &[])).await;
        let p = z1
            .wait_for(T, "primary, pg online", |p| {
                p.role == PeerRole::Primary && p.pg_online == Some(true)
            })
            .await
            .unwrap();
        let cfg = p.pg_config.unwrap();
        assert_eq!(cfg.role, PgRole::Primary);
        assert_eq!(cfg.downstream.unwrap().id, Fx::ident(2).id);
        f.done().await;
    }

    /// tst.cluster_setup_passive: a peer that is not first in the active list
    /// never sets the cluster up; it takes the role it is given. (node2 starts
    /// alone and waits; node1, smaller id, joins and sets up.)
    pub(super) async fn cluster_setup_passive(f: Fx) {
        let z2 = f.add(2).await;
        f.role(2, PeerRole::Unassigned).await;
        f.quiet().await;
        assert!(f.shard.state().await.unwrap().is_none());
        f.add(1).await;
        f.wait("setup by node1", &topo(1, 1, Some(2), &[], &[]))
            .await;
        let p = z2
            .wait_for(T, "sync online", |p| {
                p.role == PeerRole::Sync && p.pg_online == Some(true)
            })
            .await
            .unwrap();
        assert_eq!(
            p.pg_config.unwrap().upstream.unwrap().pg_url,
            "tcp://postgres@10.0.0.1:5432/postgres"
        );
        let history = f.shard.history().await.unwrap();
        assert_eq!(history[0].state.as_ref().unwrap().primary.zone_id, "node1");
        f.done().await;
    }

    /// tst.cluster_setup_onwm: a singleton sets up at once, frozen.
    pub(super) async fn cluster_setup_onwm(f: Fx) {
        let z1 = f.add_onwm(1).await;
        let st = f
            .shard
            .wait_for_state(T, "onwm setup", |s| s.generation == 1)
            .await
            .unwrap();
        assert_eq!(st.primary.zone_id, "node1");
        assert!(st.sync.is_none() && st.asyncs.is_empty() && st.deposed.is_empty());
        assert_eq!(st.one_node_write_mode, Some(true));
        assert_eq!(lsn(&st), Lsn::ZERO);
        assert_eq!(
            st.freeze.reason(),
            Some("manatee setup: one node write mode")
        );
        assert!(wire::manatee::parse_iso8601(st.freeze.date().unwrap()).is_some());
        f.role(1, PeerRole::Primary).await;
        // Writable with no replica at all.
        f.writable().await;
        assert!(!z1.pg_read_only());
        f.healthy(&[]).await;
        f.done().await;
    }

    /// The v1→v2 migration guard (§3.2 step 2): peers with an existing database
    /// never create the first state; a backfilled state is then obeyed.
    pub(super) async fn existing_database_never_sets_up(f: Fx) {
        // Replicas of one v1 database: copies of the same dataset.
        let seed = sim::manatee::PgBackup::initdb();
        for n in 1..=3 {
            f.add_with(
                Fx::spec(n).with_dataset(seed.clone()),
                BootOptions::new(SHARD),
            )
            .await;
        }
        for n in 1..=3 {
            f.role(n, PeerRole::Unassigned).await;
        }
        f.quiet().await;
        assert!(f.shard.state().await.unwrap().is_none());
        // state-backfill: generation 0, frozen.
        let mut st = bootstrap(1, 3, &[2]);
        st.generation = 0;
        st.init_wal = "0/0000000".into();
        st.freeze = Freeze::with_date("manatee-adm state-backfill", "2024-01-01T00:00:00.000Z");
        f.shard.create_state(&st).await.unwrap();
        f.role(1, PeerRole::Primary).await;
        f.role(3, PeerRole::Sync).await;
        f.role(2, PeerRole::Async).await;
        f.healthy(&[]).await;
        assert_eq!(Topo::of(&f.state().await), topo(0, 1, Some(3), &[2], &[]));
        f.done().await;
    }

    /// tst.freeze: no takeover while frozen; async add/remove still happen and
    /// keep the freeze; after unfreeze a takeover works.
    pub(super) async fn freeze(f: Fx) {
        f.setup(3).await;
        f.shard.freeze("frozen by test").await.unwrap();

        // No takeover while the cluster is frozen.
        f.zone(2).kill().await;
        f.quiet().await;
        let st = f.state().await;
        assert_eq!(Topo::of(&st), topo(1, 1, Some(2), &[3], &[]));
        assert_eq!(st.freeze.reason(), Some("frozen by test"));
        f.zone(2).start().await.unwrap();
        f.role(2, PeerRole::Sync).await;
        f.quiet().await;
        assert_eq!(Topo::of(&f.state().await), topo(1, 1, Some(2), &[3], &[]));

        // Remains frozen across async removal and re-addition.
        f.zone(3).kill().await;
        let st = f
            .wait("async removed", &topo(1, 1, Some(2), &[], &[]))
            .await;
        assert_eq!(st.freeze.reason(), Some("frozen by test"));
        f.zone(3).start().await.unwrap();
        let st = f
            .wait("async re-added", &topo(1, 1, Some(2), &[3], &[]))
            .await;
        assert_eq!(st.freeze.reason(), Some("frozen by test"));

        // Takeover works after unfreeze.
        f.healthy(&[]).await;
        f.shard.unfreeze().await.unwrap();
        f.zone(2).kill().await;
        let st = f
            .wait("sync replaced", &topo(2, 1, Some(3), &[], &[]))
            .await;
        assert!(!st.is_frozen());
        f.done().await;
    }

    /// tst.noflap: a two-peer shard never fails over, in either direction. The
    /// state-machine script made the dead primary append an async; here the
    /// primary comes back instead, then a third peer lets it replace its sync.
    pub(super) async fn noflap(f: Fx) {
        f.shard.create_state(&bootstrap(2, 1, &[])).await.unwrap();
        f.add(1).await;
        f.add(2).await;
        f.role(1, PeerRole::Sync).await;
        f.writable().await;

        // Primary gone, no async: the sync waits.
        f.zone(2).kill().await;
        f.quiet().await;
        assert_eq!(Topo::of(&f.state().await), topo(1, 2, Some(1), &[], &[]));
        assert_eq!(f.zone(1).role(), PeerRole::Sync);

        // It returns as primary of the same generation.
        f.zone(2).start().await.unwrap();
        f.role(2, PeerRole::Primary).await;
        f.writable().await;
        assert_eq!(Topo::of(&f.state().await), topo(1, 2, Some(1), &[], &[]));

        // Sync gone, no async: the primary keeps it (writes block).
        f.zone(1).kill().await;
        f.quiet().await;
        assert_eq!(Topo::of(&f.state().await), topo(1, 2, Some(1), &[], &[]));
        assert!(matches!(
            f.shard.write(b"blocked").await,
            Err(WriteError::NotAcknowledged { .. })
        ));

        // A new peer is appended as async, then becomes the new sync.
        f.add(3).await;
        f.wait("sync replaced", &topo(2, 2, Some(3), &[], &[]))
            .await;
        f.writable().await;
        f.done().await;
    }

    /// tst.onwm: an ONWM primary ignores new peers; they stay unassigned, PG off.
    pub(super) async fn onwm(f: Fx) {
        f.add_onwm(1).await;
        let before = f
            .shard
            .wait_for_state(T, "onwm setup", |s| s.generation == 1)
            .await
            .unwrap();
        f.writable().await;
        let z2 = f.add(2).await;
        f.role(2, PeerRole::Unassigned).await;
        f.quiet().await;
        assert!(!z2.pg_online());
        assert_eq!(f.state().await, before);
        z2.stop().await;
        f.quiet().await;
        assert_eq!(f.state().await, before);
        assert_eq!(f.zone(1).role(), PeerRole::Primary);
        f.shard.write(b"still writable").await.unwrap();
        f.done().await;
    }

    /// tst.onwm_newpeer: an ONWM-configured peer that is not the primary stays
    /// unassigned, even when the primary dies.
    pub(super) async fn onwm_newpeer(f: Fx) {
        f.add_onwm(2).await;
        let before = f
            .shard
            .wait_for_state(T, "onwm setup by node2", |s| s.primary.zone_id == "node2")
            .await
            .unwrap();
        let z1 = f.add_onwm(1).await;
        f.role(1, PeerRole::Unassigned).await;
        assert!(!z1.pg_online());
        f.zone(2).kill().await;
        f.quiet().await;
        assert_eq!(z1.role(), PeerRole::Unassigned);
        assert!(!z1.pg_online());
        assert!(z1.fatal_error().is_none());
        assert_eq!(f.state().await, before);
        f.done().await;
    }

    /// tst.onwm_upgrade, literally: an ONWM state (`freeze: true`), the peer
    /// started in normal mode, unfreeze, add a peer: generation 2 with
    /// P=node1 S=node2 initWal 0/0000000a; then sync failure in normal mode.
    pub(super) async fn onwm_upgrade(f: Fx) {
        let mut st = ClusterState::initial_onwm(Fx::ident(1), "2024-01-01T00:00:00.000Z");
        st.freeze = Freeze::Bool(true);
        f.shard.create_state(&st).await.unwrap();
        let z1 = f.add(1).await;
        f.role(1, PeerRole::Primary).await;
        // No client write here: it would move initWal off the suite's 0/0000000a.
        z1.wait_for(T, "pg online", |p| p.pg_online == Some(true))
            .await
            .unwrap();
        assert!(!z1.pg_read_only(), "no sync in ONWM: writable at once");
        f.quiet().await;
        assert_eq!(f.state().await, st);

        // Unfrozen, but no other peer: still nothing.
        let unfrozen = f.shard.unfreeze().await.unwrap();
        f.quiet().await;
        assert_eq!(f.state().await, unfrozen);
        assert_eq!(unfrozen.one_node_write_mode, Some(true));

        f.add(2).await;
        let st = f.wait("normal mode", &topo(2, 1, Some(2), &[], &[])).await;
        assert_eq!(lsn(&st), Lsn(0xa));
        assert!(st.one_node_write_mode.is_none() && st.freeze.is_absent());

        // Reconfiguration in normal mode.
        f.writable().await;
        f.add(3).await;
        f.wait("async added", &topo(2, 1, Some(2), &[3], &[])).await;
        f.healthy(&[]).await;
        f.zone(2).kill().await;
        let st = f
            .wait("sync replaced", &topo(3, 1, Some(3), &[], &[]))
            .await;
        // 0/00000014 in the state-machine suite, plus what the probes wrote.
        assert!(lsn(&st) >= Lsn(0x14));
        f.zone(2).start().await.unwrap();
        f.wait("old sync back as async", &topo(3, 1, Some(3), &[2], &[]))
            .await;
        f.done().await;
    }

    /// The upgrade as sdcadm's ha-manatee runs it (§7.3, §3.8): ONWM shard, new
    /// peer unassigned, restart the primary with ONWM off — still frozen, so
    /// nothing; unfreeze, and generation 2 appears.
    pub(super) async fn onwm_upgrade_by_restart(f: Fx) {
        let z1 = f.add_onwm(1).await;
        f.shard
            .wait_for_state(T, "onwm setup", |s| s.generation == 1)
            .await
            .unwrap();
        f.writable().await;
        f.shard.write(b"before").await.unwrap();
        f.add(2).await;
        f.role(2, PeerRole::Unassigned).await;

        z1.restart(BootOptions::new(SHARD)).await.unwrap();
        f.role(1, PeerRole::Primary).await;
        f.quiet().await;
        let st = f.state().await;
        assert_eq!(st.generation, 1);
        assert!(st.is_frozen() && st.is_one_node_write_mode());

        f.shard.unfreeze().await.unwrap();
        f.wait("normal mode", &topo(2, 1, Some(2), &[], &[])).await;
        f.role(2, PeerRole::Sync).await;
        f.healthy(&["cluster has no async peers"]).await;
        f.writable().await;
        // What was written in ONWM reached the new sync by restore.
        assert!(f.zone(2).writes().contains(&b"before".to_vec()));
        f.done().await;
    }

    /// §3.2 step 3: configured for ONWM, state in normal mode: fatal.
    pub(super) async fn onwm_config_with_normal_state_is_fatal(f: Fx) {
        f.setup(3).await;
        let z3 = f.zone(3);
        z3.restart(BootOptions::new(SHARD).one_node_write_mode(true))
            .await
            .unwrap();
        let r = tokio::time::timeout(T, async {
            while z3.fatal_error().is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(r.is_ok(), "sitter did not die");
        assert!(z3.fatal_error().unwrap().contains("one-node-write mode"));
        assert!(!z3.is_running() && !z3.pg_online());
        // The primary notices it left and drops it from the async list.
        f.wait("async dropped", &topo(1, 1, Some(2), &[], &[]))
            .await;
        f.done().await;
    }

    pub(super) fn later() -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(60)
    }

    /// tst.promote_primary: promotions the primary handles, and requests every
    /// peer must ignore (the primary deletes them).
    pub(super) async fn promote_primary(f: Fx) {
        f.setup(6).await;

        // Promote the first async: new generation, the old sync goes to the tail.
        f.shard
            .promote(&PromoteRequest::async_at(&Fx::ident(3).id, 0, 1, later()))
            .await
            .unwrap();
        let st = f
            .wait("promote async[0]", &topo(2, 1, Some(3), &[4, 5, 6, 2], &[]))
            .await;
        assert_eq!(lsn(&st), Lsn(0xa));
        assert!(st.promote.is_none());

        // Promote the last async (index 3): same generation.
        f.shard
            .promote(&PromoteRequest::async_at(&Fx::ident(2).id, 3, 2, later()))
            .await
            .unwrap();
        f.wait("promote async[3]", &topo(2, 1, Some(3), &[4, 5, 2, 6], &[]))
            .await;

        // Promote the second async (index 1).
        f.shard
            .promote(&PromoteRequest::async_at(&Fx::ident(5).id, 1, 2, later()))
            .await
            .unwrap();
        let ignored = topo(2, 1, Some(3), &[5, 2, 6, 4], &[]);
        f.wait("promote async[1]", &ignored).await;

        let exp = wire::manatee::iso8601(later());
        let past = wire::manatee::iso8601(OffsetDateTime::now_utc() - time::Duration::seconds(1));
        let id = |n: u8| Fx::ident(n).id;
        let cases = [
            (
                "promote primary",
                json!({"id": id(1), "role": "primary", "generation": 2, "expireTime": exp}),
            ),
            (
                "expired",
                json!({"id": id(5), "role": "async", "asyncIndex": 2, "generation": 2, "expireTime": past}),
            ),
            (
                "invalid id at role",
                json!({"id": id(4), "role": "sync", "generation": 2, "expireTime": exp}),
            ),
            (
                "invalid id at async index",
                json!({"id": id(2), "role": "async", "asyncIndex": 2, "generation": 2, "expireTime": exp}),
            ),
            (
                "async index too big",
                json!({"id": id(2), "role": "async", "asyncIndex": 999, "generation": 2, "expireTime": exp}),
            ),
            (
                "async index negative",
                json!({"id": id(2), "role": "async", "asyncIndex": -1, "generation": 2, "expireTime": exp}),
            ),
            (
                "generation ahead",
                json!({"id": id(2), "role": "async", "asyncIndex": 1, "generation": 100, "expireTime": exp}),
            ),
            (
                "generation behind",
                json!({"id": id(2), "role": "async", "asyncIndex": 1, "generation": 1, "expireTime": exp}),
            ),
            (
                "generation not a number",
                json!({"id": id(2), "role": "async", "asyncIndex": 1, "generation": "test", "expireTime": exp}),
            ),
            (
                "expireTime invalid",
                json!({"id": id(2), "role": "async", "asyncIndex": 1, "generation": 2, "expireTime": "test"}),
            ),
            (
                "nonexistent id",
                json!({"id": "node999", "role": "sync", "generation": 2, "expireTime": exp}),
            ),
            (
                "id missing",
                json!({"role": "async", "asyncIndex": 1, "generation": 2, "expireTime": exp}),
            ),
            (
                "invalid role",
                json!({"id": id(1), "role": "test", "generation": 2, "expireTime": exp}),
            ),
        ];
        for (what, req) in cases {
            f.shard
                .update_state(|s| {
                    s.promote = Some(req.clone());
                    Ok(())
                })
                .await
                .unwrap();
            let st = f
                .shard
                .wait_for_state(T, what, |s| s.promote.is_none())
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(Topo::of(&st), ignored, "{what}");
        }
        f.done().await;
    }

    /// tst.promote_sync: the sync acts on a sync promotion once an async exists;
    /// the primary is deposed.
    pub(super) async fn promote_sync(f: Fx) {
        f.shard.create_state(&bootstrap(2, 1, &[])).await.unwrap();
        f.add(1).await;
        f.add(2).await;
        f.role(1, PeerRole::Sync).await;
        f.writable().await;

        // No async: valid but impossible, so it stays until cleared or replaced.
        let soon = OffsetDateTime::now_utc() + time::Duration::milliseconds(400);
        f.shard
            .promote(&PromoteRequest::sync(&Fx::ident(1).id, 1, soon))
            .await
            .unwrap();
        f.quiet().await;
        let st = f.state().await;
        assert_eq!(Topo::of(&st), topo(1, 2, Some(1), &[], &[]));
        assert!(st.promote.is_some());
        tokio::time::sleep(Duration::from_millis(500)).await;

        for n in 3..=5 {
            f.add(n).await;
            f.role(n, PeerRole::Async).await;
        }
        f.wait("asyncs", &topo(1, 2, Some(1), &[3, 4, 5], &[]))
            .await;
        f.healthy(&[]).await;

        f.shard
            .promote(&PromoteRequest::sync(&Fx::ident(1).id, 1, later()))
            .await
            .unwrap();
        let st = f
            .wait("promote sync", &topo(2, 1, Some(3), &[4, 5], &[2]))
            .await;
        // 0/0000000a in the state-machine suite; here the probe writes add to it.
        assert!(lsn(&st) >= Lsn(0xa));
        f.role(2, PeerRole::Deposed).await;
        f.quiet().await;
        assert!(!f.zone(2).pg_online());
        f.writable().await;
        f.done().await;
    }

    /// tst.start_primary: start as the primary of a bootstrapped state; the sync
    /// fails and the async replaces it; it comes back as an async.
    pub(super) async fn start_primary(f: Fx) {
        f.shard.create_state(&bootstrap(1, 2, &[3])).await.unwrap();
        for n in 1..=3 {
            f.add(n).await;
        }
        let p = f
            .zone(1)
            .wait_for(T, "primary online", |p| {
                p.role == PeerRole::Primary && p.pg_online == Some(true)
            })
            .await
            .unwrap();
        assert_eq!(p.pg_config.unwrap().downstream.unwrap().id, Fx::ident(2).id);
        f.healthy(&[]).await;

        f.zone(2).kill().await;
        let st = f.wait("sync fail", &topo(2, 1, Some(3), &[], &[])).await;
        assert_eq!(lsn(&st), Lsn(0xa));
        f.zone(2).start().await.unwrap();
        f.wait("back as async", &topo(2, 1, Some(3), &[2], &[]))
            .await;
        f.healthy(&[]).await;
        f.done().await;
    }

    /// tst.start_sync: start as the sync; the primary fails, the sync takes over
    /// (initWal 0/0000000a), the old primary is rebuilt and rejoins; then the
    /// new sync fails and is replaced (initWal 0/00000014).
    pub(super) async fn start_sync(f: Fx) {
        f.shard.create_state(&bootstrap(3, 1, &[2])).await.unwrap();
        for n in 1..=3 {
            f.add(n).await;
        }
        let s = f
            .zone(1)
            .wait_for(T, "sync online", |p| {
                p.role == PeerRole::Sync && p.pg_online == Some(true)
            })
            .await
            .unwrap();
        assert_eq!(s.pg_config.unwrap().upstream.unwrap().id, Fx::ident(3).id);
        f.healthy(&[]).await;

        f.zone(3).kill().await;
        let st = f.wait("takeover", &topo(2, 1, Some(2), &[], &[3])).await;
        assert_eq!(lsn(&st), Lsn(0xa));
        f.shard.rebuild(&f.zone(3)).await.unwrap();
        f.wait(
            "rebuilt peer back as async",
            &topo(2, 1, Some(2), &[3], &[]),
        )
        .await;
        f.healthy(&[]).await;

        f.zone(2).kill().await;
        let st = f.wait("sync fail", &topo(3, 1, Some(3), &[], &[])).await;
        assert_eq!(lsn(&st), Lsn(0x14));
        f.zone(2).start().await.unwrap();
        f.wait("back as async", &topo(3, 1, Some(3), &[2], &[]))
            .await;
        f.done().await;
    }

    /// tst.start_deposed: a peer listed in `deposed[]` starts deposed with PG
    /// off, and the primary never makes it an async.
    pub(super) async fn start_deposed(f: Fx) {
        let mut st = bootstrap(2, 3, &[]);
        st.generation = 2;
        st.deposed = vec![Fx::ident(1)];
        st.init_wal = "0/0000000a".into();
        f.shard.create_state(&st).await.unwrap();
        for n in 1..=3 {
            f.add(n).await;
        }
        f.role(1, PeerRole::Deposed).await;
        f.healthy(&["cluster has a deposed peer", "cluster has no async peers"])
            .await;
        f.quiet().await;
        assert!(!f.zone(1).pg_online());
        assert_eq!(Topo::of(&f.state().await), topo(2, 2, Some(3), &[], &[1]));
        f.done().await;
    }

    /// A sitter restarted before its old session expired is invisible: the
    /// active list (deduplicated by id) does not change, so nothing is written.
    pub(super) async fn restart_within_session_timeout(f: Fx) {
        f.setup(3).await;
        let history_before = f.shard.history().await.unwrap().len();
        let z3 = f.zone(3);
        let dangling = z3.kill_keep_session().await.expect("had a session");
        z3.start().await.unwrap();
        f.role(3, PeerRole::Async).await;
        dangling.expire().await.unwrap();
        f.healthy(&[]).await;
        f.quiet().await;
        assert_eq!(f.shard.history().await.unwrap().len(), history_before);
        assert_eq!(Topo::of(&f.state().await), topo(1, 1, Some(2), &[3], &[]));
        f.done().await;
    }

    /// Fault: the primary's zone dies (its session expires) under write load.
    /// The sync takes over in generation+1, the old primary is deposed, and no
    /// acknowledged write is missing from the new primary.
    pub(super) async fn primary_killed_sync_takes_over_no_acked_write_lost(f: Fx) {
        let st = f.setup(3).await;

        let shard = f.shard.clone();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !*stop_rx.borrow() {
                let payload = format!("row-{i}").into_bytes();
                i += 1;
                if shard.write(&payload).await.is_ok() {
                    acked.push(payload);
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            acked
        });
        tokio::time::sleep(Duration::from_millis(300)).await;

        f.zone(1).kill().await;
        let after = f
            .wait("takeover", &topo(st.generation + 1, 2, Some(3), &[], &[1]))
            .await;
        assert!(lsn(&after) > lsn(&st));
        // Writes resume on the new primary once its sync caught up.
        f.writable().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop_tx.send(true).unwrap();
        let acked = writer.await.unwrap();
        assert!(
            acked.len() > 5,
            "too few writes acknowledged: {}",
            acked.len()
        );

        let on_primary: std::collections::HashSet<Vec<u8>> =
            f.zone(2).writes().into_iter().collect();
        let lost: Vec<String> = acked
            .iter()
            .filter(|w| !on_primary.contains(*w))
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");

        // The dead primary reboots: it stays deposed with PG off.
        f.zone(1).start().await.unwrap();
        f.role(1, PeerRole::Deposed).await;
        f.quiet().await;
        assert!(!f.zone(1).pg_online());
        f.done().await;
    }

    /// Fault: the primary's zone is cut off from ZooKeeper long enough for its
    /// session to expire (the zone and its postgres live). The sync takes over;
    /// when the partition heals, the old primary's sitter, on a new session,
    /// sees the new generation and deposes itself.
    pub(super) async fn primary_session_expiry_deposes_live_primary(f: Fx) {
        f.setup(3).await;
        let z1 = f.zone(1);
        let old = z1.session_id().unwrap();
        assert!(z1.partition(Duration::from_secs(60)).await.unwrap());
        f.wait("takeover", &topo(2, 2, Some(3), &[], &[1])).await;
        f.role(1, PeerRole::Deposed).await;
        let r = tokio::time::timeout(T, async {
            while z1.pg_online() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(r.is_ok(), "deposed primary kept postgres running");
        assert_ne!(z1.session_id(), Some(old));
        assert!(z1.is_running());
        f.writable().await;
        f.done().await;
    }

    /// `DISABLE_SITTER`: the zone boots, its sitter does not; postgres and
    /// ZooKeeper never hear of it until it is enabled.
    pub(super) async fn disabled_sitter(f: Fx) {
        f.setup(2).await;
        let z3 = f
            .add_with(Fx::spec(3), BootOptions::new(SHARD).disable_sitter(true))
            .await;
        f.quiet().await;
        assert!(!z3.is_running() && !z3.pg_online() && z3.session_id().is_none());
        assert_eq!(f.shard.active().await.unwrap().len(), 2);
        assert_eq!(Topo::of(&f.state().await), topo(1, 1, Some(2), &[], &[]));
        z3.restart(BootOptions::new(SHARD)).await.unwrap();
        f.wait("enabled peer joins", &topo(1, 1, Some(2), &[3], &[]))
            .await;
        f.healthy(&[]).await;
        f.done().await;
    }

    /// A backup of the primary carries every acknowledged write; a zone
    /// provisioned from it, given a one-node-write-mode state by hand (the
    /// way a transplant or manta-reshard writes the state), serves them.
    pub(super) async fn backup_transplant(f: Fx) {
        f.setup(3).await;
        f.writable().await;
        let mut acked = Vec::new();
        for i in 0..20 {
            let row = format!("row-{i}").into_bytes();
            f.shard.write(&row).await.unwrap();
            acked.push(row);
        }
        let backup = f.zone(1).backup();
        assert!(acked.iter().all(|r| backup.writes().contains(r)));
        assert_eq!(backup.lsn(), f.zone(1).lsn().unwrap());

        // Loading data into a running zone is refused.
        assert!(f.zone(3).load_backup(&backup).await.is_err());

        let other = "2.moray.test";
        let onwm = ClusterState::initial_onwm(Fx::ident(7), "2024-01-01T00:00:00.000Z");
        f.sim.shard(other).create_state(&onwm).await.unwrap();
        let z7 = f
            .add_with(
                Fx::spec(7).with_dataset(backup.clone()),
                BootOptions::new(other).one_node_write_mode(true),
            )
            .await;
        z7.wait_for(T, "primary online", |p| {
            p.role == PeerRole::Primary && p.pg_online == Some(true)
        })
        .await
        .unwrap();
        let new_shard = f.sim.shard(other);
        new_shard.write(b"after").await.unwrap();
        let on_new: Vec<Vec<u8>> = new_shard.primary_writes().await.unwrap();
        assert!(acked.iter().all(|r| on_new.contains(r)));
        assert!(on_new.contains(&b"after".to_vec()));
        // The old shard did not notice.
        assert_eq!(Topo::of(&f.state().await), topo(1, 1, Some(2), &[3], &[]));
        f.done().await;
    }
}
