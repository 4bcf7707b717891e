//! A simulated datacenter with a leader-elected controller context over the
//! real HTTP clients, a client writing to a shard throughout, and readers of
//! the simulator's own records (jobs), so tests judge the controller by what
//! the datacenter saw rather than by what the controller says.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coord::Coordination;
use crds::{ConditionType, Document, Kind};
use reconcilers::clock::Clock;
use sim::scenario::{ScenarioOptions, SimScenario};
use tritonctl::clients::{Endpoints, MutationGuard, Timeouts, Triton};
use tritonctl::reconcile::{Context, context};
use tritonctl::runtime::leader::{LeaderElection, Leadership};
use tritonctl::store::Store;
use tritonctl::world::manatee::TritonManatee;

pub fn parse(name: &str, text: &str) -> Document {
    let (mut docs, diags) = crds::parse_documents(name, text);
    assert!(diags.is_empty(), "{name}: {diags:?}");
    docs.remove(0).document
}

pub fn example(rel: &str) -> Document {
    let path = e2e::repo().join("examples").join(rel);
    parse(rel, &std::fs::read_to_string(&path).unwrap())
}

struct LeaderGuard(Arc<Leadership>);

#[async_trait::async_trait]
impl MutationGuard for LeaderGuard {
    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}

pub struct Lab {
    pub scenario: SimScenario,
    pub session: Arc<dyn Coordination>,
    pub store: Store,
    pub cx: Context<TritonManatee>,
    pub leadership: Arc<Leadership>,
}

impl Lab {
    /// The simulator built from `sim_docs`; a controller context on the
    /// real clients, polling every 20 ms, on `clock` (wall clock if None).
    pub async fn start(
        sim_docs: &[Document],
        opts: ScenarioOptions,
        clock: Option<Arc<dyn Clock>>,
    ) -> Lab {
        Self::start_with_timeouts(sim_docs, opts, clock, Timeouts::default()).await
    }

    /// As [`Lab::start`], the clients giving up after `timeouts`.
    pub async fn start_with_timeouts(
        sim_docs: &[Document],
        opts: ScenarioOptions,
        clock: Option<Arc<dyn Clock>>,
        timeouts: Timeouts,
    ) -> Lab {
        let ensemble = coord::mem::MemEnsemble::new();
        let scenario = SimScenario::start(sim_docs, Arc::new(ensemble.clone()), opts)
            .await
            .expect("the simulated datacenter starts");
        let session: Arc<dyn Coordination> = ensemble.connect();
        let store = Store::new(session.clone());
        store.init().await.unwrap();
        let leadership = Arc::new(
            LeaderElection::new(session.clone(), "test-controller")
                .campaign()
                .await
                .unwrap(),
        );
        let urls = scenario.servers.urls().clone();
        let endpoints = Endpoints {
            sapi: urls.sapi.clone(),
            vmapi: urls.vmapi.clone(),
            cnapi: urls.cnapi.clone(),
            imgapi: urls.imgapi.clone(),
        };
        let triton = Triton::with_timeouts(
            &endpoints,
            Arc::new(LeaderGuard(leadership.clone())),
            timeouts,
        );
        let fence = Some(leadership.fence().clone());
        let world = TritonManatee {
            triton,
            coord: session.clone(),
            fence: fence.clone(),
        };
        let mut cx = context(store.clone(), world, fence, Some(Duration::from_millis(20)));
        if let Some(c) = clock {
            cx.clock = c;
        }
        Lab {
            scenario,
            session,
            store,
            cx,
            leadership,
        }
    }

    pub async fn apply(&self, docs: &[Document]) {
        self.store.apply(docs).await.unwrap();
    }

    pub async fn ready(&self, kind: Kind, name: &str) -> bool {
        self.store
            .status(kind, name)
            .await
            .unwrap()
            .is_some_and(|s| s.is_true(ConditionType::Ready))
    }

    /// Stops the simulator, after checking that no request our clients
    /// sent would have crashed the real SAPI (answered 599
    /// `SimulatorWouldCrash`).
    pub async fn shutdown(self) {
        let crashes = self.scenario.dc.sapi_would_crash();
        self.scenario.shutdown().await;
        assert_eq!(crashes, vec![], "requests that crash the real SAPI");
    }
}

/// What a client writing to a shard saw.
#[derive(Default)]
pub struct WriteLog {
    pub acked: Vec<Vec<u8>>,
    pub failed: u64,
    /// (start, end) of each run of failed writes, from the writer's start.
    pub outages: Vec<(Duration, Duration)>,
}

impl WriteLog {
    pub fn longest_outage(&self) -> Duration {
        self.outages
            .iter()
            .map(|(a, b)| *b - *a)
            .max()
            .unwrap_or_default()
    }
    pub fn total_outage(&self) -> Duration {
        self.outages.iter().map(|(a, b)| *b - *a).sum()
    }
}

/// A client writing to a shard every few milliseconds until stopped.
pub struct Writer {
    log: Arc<Mutex<WriteLog>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    pub started: Instant,
}

impl Writer {
    pub fn start(shard: sim::manatee::Shard, tag: &str) -> Writer {
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let task = {
            let (log, stop, tag) = (log.clone(), stop.clone(), tag.to_string());
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut in_outage: Option<Duration> = None;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let payload = format!("{tag}-{n}").into_bytes();
                    let r =
                        tokio::time::timeout(Duration::from_secs(2), shard.write(&payload)).await;
                    let at = started.elapsed();
                    {
                        let mut l = log.lock().unwrap();
                        match r {
                            Ok(Ok(_)) => {
                                l.acked.push(payload);
                                if let Some(s) = in_outage.take() {
                                    l.outages.push((s, at));
                                }
                            }
                            _ => {
                                l.failed += 1;
                                in_outage.get_or_insert(at);
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if let Some(s) = in_outage {
                    log.lock().unwrap().outages.push((s, started.elapsed()));
                }
            })
        };
        Writer {
            log,
            stop,
            task,
            started,
        }
    }

    pub async fn stop(self) -> WriteLog {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        Arc::try_unwrap(self.log)
            .ok()
            .expect("writer finished")
            .into_inner()
            .unwrap()
    }
}

/// Acknowledged writes missing from the shard's primary now.
pub async fn lost_writes(shard: &sim::manatee::Shard, log: &WriteLog) -> usize {
    let durable = shard.primary_writes().await.unwrap();
    let durable: HashSet<&Vec<u8>> = durable.iter().collect();
    log.acked.iter().filter(|w| !durable.contains(w)).count()
}

/// A reprovision as the simulator recorded it: (vm, image, start, end) in
/// milliseconds since the epoch.
#[derive(Clone, Debug)]
pub struct JobSpan {
    pub task: String,
    pub vm: String,
    pub start: i128,
    pub end: i128,
}

fn ms(iso: &str) -> i128 {
    let t = time::OffsetDateTime::parse(iso, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{iso}: {e}"));
    t.unix_timestamp_nanos() / 1_000_000
}

/// Every finished job of `task` (`reprovision`, `provision`) from the simulator.
pub fn job_spans(dc: &sim::dc::Datacenter, task: &str) -> Vec<JobSpan> {
    let mut out: Vec<JobSpan> = dc
        .jobs()
        .into_iter()
        .filter(|j| j.params.get("task").and_then(|v| v.as_str()) == Some(task))
        .filter_map(|j| {
            let vm = j.params.get("vm_uuid")?.as_str()?.to_string();
            let start = ms(j.created_at.as_deref()?);
            let end = ms(j.chain_results.last()?.finished_at.as_deref()?);
            Some(JobSpan {
                task: task.into(),
                vm,
                start,
                end,
            })
        })
        .collect();
    out.sort_by_key(|s| s.start);
    out
}

/// Client timeouts far shorter than a SAPI call that waits for its job
/// under [`slow_jobs`]: every create, upgrade and delete loses its answer.
pub fn impatient_timeouts() -> Timeouts {
    Timeouts {
        sapi_job: Duration::from_millis(100),
        sapi_delete: Duration::from_millis(100),
        job_poll: Duration::from_millis(20),
        settle: Duration::from_millis(50),
        ..Timeouts::default()
    }
}

/// A datacenter time scale where a reprovision takes 2.25 s, a provision
/// 300 ms and a destroy 150 ms: longer than [`impatient_timeouts`].
pub fn slow_jobs() -> ScenarioOptions {
    ScenarioOptions {
        dc_time_scale: 1.0 / 400.0,
        ..ScenarioOptions::default()
    }
}

/// Every span lasted longer than `client` waits: each call that waited for
/// it lost its answer (SAPI answers only once the job ends).
pub fn assert_outlasted(spans: &[JobSpan], client: Duration) {
    for s in spans {
        assert!(
            s.end - s.start > client.as_millis() as i128,
            "{} job of {} took {} ms, not longer than the client's {client:?}",
            s.task,
            s.vm,
            s.end - s.start
        );
    }
}

/// VMs with more than one job of `task`, from the simulator's record.
pub fn vms_with_repeated_jobs(dc: &sim::dc::Datacenter, task: &str) -> Vec<String> {
    let mut count: std::collections::HashMap<String, usize> = Default::default();
    for j in dc.jobs() {
        if j.task() == Some(task)
            && let Some(vm) = j.vm_uuid()
        {
            *count.entry(vm.to_string()).or_default() += 1;
        }
    }
    count
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(vm, _)| vm)
        .collect()
}

/// Drive a reconcile function until `done` holds or the deadline passes;
/// any reconcile error fails the test (nothing may be decided, not even an
/// error reported, while a call's outcome is unknown).
pub async fn drive_without_errors<F, Fut, E, D, DFut>(deadline: Duration, mut step: F, mut done: D)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tritonctl::runtime::queue::Action, E>>,
    E: std::fmt::Display,
    D: FnMut() -> DFut,
    DFut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        let after = match step().await {
            Ok(tritonctl::runtime::queue::Action::RequeueAfter(d)) => d,
            Ok(_) => Duration::from_millis(50),
            Err(e) => panic!("reconcile error: {e}"),
        };
        if done().await {
            return;
        }
        assert!(
            Instant::now() < until,
            "did not converge within {deadline:?}"
        );
        tokio::time::sleep(after.min(Duration::from_millis(50))).await;
    }
}

/// Drive a reconcile function until `done` holds or the deadline passes.
pub async fn drive<F, Fut, E, D, DFut>(deadline: Duration, mut step: F, mut done: D)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tritonctl::runtime::queue::Action, E>>,
    E: std::fmt::Display,
    D: FnMut() -> DFut,
    DFut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        let after = match step().await {
            Ok(tritonctl::runtime::queue::Action::RequeueAfter(d)) => d,
            Ok(_) => Duration::from_millis(50),
            Err(e) => {
                eprintln!("reconcile error (retried): {e}");
                Duration::from_millis(100)
            }
        };
        if done().await {
            return;
        }
        assert!(
            Instant::now() < until,
            "did not converge within {deadline:?}"
        );
        tokio::time::sleep(after.min(Duration::from_millis(50))).await;
    }
}
