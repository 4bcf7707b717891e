//! The level-triggered work queue and the runner that drives reconciles.
//!
//! The queue holds keys only, never events or object snapshots: a reconcile
//! re-reads the spec and the world, so all it needs to know is "look at this
//! key again, no later than T". Its rules:
//!
//! - one slot per key; a second trigger for a queued key does not add a
//!   second entry, and the earliest deadline wins;
//! - never two reconciles of one key at once: a trigger that arrives while the
//!   key runs is held and re-queued when the run ends;
//! - at most `concurrency` reconciles run at once;
//! - an error re-queues the key with per-key exponential backoff (base,
//!   factor 2, cap, a little jitter) that resets on the first success;
//! - every known key is re-queued every `resync` period, so a missed trigger
//!   costs at most one period.
//!
//! Triggers are never delayed by backoff (a change may be what fixes the
//! error), but a periodic resync does not cut a backoff short.
//!
//! [`WorkQueue`] is the state machine (synchronous, behind a mutex, so the
//! runner and the metrics endpoint can share it); [`Controller::run`] is the
//! async driver.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::Notify;
use tokio::task::{Id as TaskId, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use super::key_kind;
use super::metrics::{Metrics, ReconcileResult};

/// What a successful reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run again after this delay even if nothing triggers the key (the
    /// safety net for changes no watch reports).
    RequeueAfter(Duration),
    /// Run again only when a trigger or the periodic resync says so.
    AwaitChange,
}

/// Tuning of the queue.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many reconciles may run at once (at least 1).
    pub concurrency: usize,
    /// Delay after the first error of a key; doubles with each further error.
    pub backoff_base: Duration,
    /// Longest delay between retries.
    pub backoff_max: Duration,
    /// Fraction (0..1) taken off a backoff delay at random, so keys that
    /// failed together do not retry in lockstep.
    pub jitter: f64,
    /// Re-queue every known key this often; `None` turns resync off.
    pub resync: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            concurrency: 4,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
            jitter: 0.1,
            resync: Some(Duration::from_secs(600)),
        }
    }
}

/// What [`WorkQueue::pop`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pop {
    /// This key is due and now counts as running; report its end with
    /// [`WorkQueue::finish`].
    Ready(String),
    /// Nothing is due; the earliest deadline, if any key is queued.
    Idle(Option<Instant>),
    /// The concurrency cap is reached.
    Full,
}

/// How a run ended, for [`WorkQueue::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(Action),
    Failed,
}

#[derive(Debug)]
struct State {
    config: Config,
    /// Queued keys and their deadline; mirrored by `order`.
    queued: HashMap<String, Instant>,
    order: BTreeSet<(Instant, String)>,
    running: HashSet<String>,
    /// Triggers that arrived while the key was running: the earliest deadline.
    held: HashMap<String, Instant>,
    /// Consecutive errors per key (absent = healthy).
    failures: HashMap<String, u32>,
    /// Every key ever queued and not forgotten: what resync visits.
    known: BTreeSet<String>,
    /// Seeds the jitter; per queue so two controllers do not agree.
    seed: std::hash::RandomState,
}

impl State {
    /// Queue `key` no later than `deadline` (earliest wins), or hold it if it
    /// is running. Returns whether anything changed.
    fn schedule(&mut self, key: &str, deadline: Instant) -> bool {
        if !self.known.contains(key) {
            self.known.insert(key.to_string());
        }
        if self.running.contains(key) {
            return match self.held.entry(key.to_string()) {
                Entry::Occupied(mut e) if deadline < *e.get() => {
                    e.insert(deadline);
                    true
                }
                Entry::Occupied(_) => false,
                Entry::Vacant(e) => {
                    e.insert(deadline);
                    true
                }
            };
        }
        match self.queued.get(key) {
            Some(&current) if current <= deadline => false,
            Some(&current) => {
                self.order.remove(&(current, key.to_string()));
                self.order.insert((deadline, key.to_string()));
                self.queued.insert(key.to_string(), deadline);
                true
            }
            None => {
                self.order.insert((deadline, key.to_string()));
                self.queued.insert(key.to_string(), deadline);
                true
            }
        }
    }

    fn unqueue(&mut self, key: &str) {
        if let Some(deadline) = self.queued.remove(key) {
            self.order.remove(&(deadline, key.to_string()));
        }
    }

    fn backoff(&self, key: &str, attempt: u32) -> Duration {
        let c = &self.config;
        // base * 2^(attempt-1), saturating well before overflow.
        let exp = attempt.saturating_sub(1).min(30);
        let full = c
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(c.backoff_max);
        let jitter = c.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return full;
        }
        // A hash of (key, attempt) is random enough here and needs no RNG.
        let r = (self.seed.hash_one((key, attempt)) >> 11) as f64 / (1u64 << 53) as f64;
        full.mul_f64(1.0 - jitter * r)
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the runner when a key is added from outside.
    wake: Notify,
}

/// The queue's state, shared by the runner, trigger sources and the
/// metrics endpoint. Cheap to clone.
#[derive(Clone)]
pub struct WorkQueue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("WorkQueue")
            .field("queued", &s.queued.len())
            .field("running", &s.running.len())
            .field("held", &s.held.len())
            .finish()
    }
}

impl WorkQueue {
    pub fn new(mut config: Config) -> WorkQueue {
        config.concurrency = config.concurrency.max(1);
        WorkQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    config,
                    queued: HashMap::new(),
                    order: BTreeSet::new(),
                    running: HashSet::new(),
                    held: HashMap::new(),
                    failures: HashMap::new(),
                    known: BTreeSet::new(),
                    seed: std::hash::RandomState::new(),
                }),
                wake: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every method
        // finishes its bookkeeping before anything can panic.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Trigger `key` now.
    pub fn add(&self, key: impl AsRef<str>) {
        self.add_at(key, Instant::now());
    }

    /// Trigger `key` after `delay` (or earlier, if it is already due earlier).
    pub fn add_after(&self, key: impl AsRef<str>, delay: Duration) {
        self.add_at(key, Instant::now() + delay);
    }

    pub fn add_at(&self, key: impl AsRef<str>, deadline: Instant) {
        if self.lock().schedule(key.as_ref(), deadline) {
            self.shared.wake.notify_one();
        }
    }

    /// Stop tracking `key`: drop its queue slot, backoff and resync. A run in
    /// progress finishes, and a trigger held behind it is dropped.
    pub fn forget(&self, key: &str) {
        let mut s = self.lock();
        s.unqueue(key);
        s.held.remove(key);
        s.failures.remove(key);
        s.known.remove(key);
    }

    /// Queue every known key now, except keys that are failing (they are
    /// already queued for their retry, and resync must not defeat backoff).
    pub fn resync(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        let keys: Vec<String> = s
            .known
            .iter()
            .filter(|k| !s.failures.contains_key(*k))
            .cloned()
            .collect();
        let mut changed = false;
        for key in keys {
            changed |= s.schedule(&key, now);
        }
        drop(s);
        if changed {
            self.shared.wake.notify_one();
        }
    }

    /// Take the most overdue key, if one is due and a slot is free.
    pub fn pop(&self, now: Instant) -> Pop {
        let mut s = self.lock();
        if s.running.len() >= s.config.concurrency {
            return Pop::Full;
        }
        let Some((deadline, key)) = s.order.first().cloned() else {
            return Pop::Idle(None);
        };
        if deadline > now {
            return Pop::Idle(Some(deadline));
        }
        s.order.pop_first();
        s.queued.remove(&key);
        s.running.insert(key.clone());
        Pop::Ready(key)
    }

    /// Record the end of a run of `key` and queue it again as the outcome
    /// and any held trigger say. Returns the delay of the backoff retry
    /// when the run failed.
    pub fn finish(&self, key: &str, outcome: Outcome, now: Instant) -> Option<Duration> {
        let mut s = self.lock();
        s.running.remove(key);
        let held = s.held.remove(key);
        if !s.known.contains(key) {
            // Forgotten while it ran (its document was deleted): let it go.
            return None;
        }
        let (next, retry) = match outcome {
            Outcome::Ok(action) => {
                s.failures.remove(key);
                match action {
                    Action::RequeueAfter(d) => (Some(now + d), None),
                    Action::AwaitChange => (None, None),
                }
            }
            Outcome::Failed => {
                let attempt = s.failures.get(key).copied().unwrap_or(0) + 1;
                s.failures.insert(key.to_string(), attempt);
                let delay = s.backoff(key, attempt);
                (Some(now + delay), Some(delay))
            }
        };
        let deadline = match (next, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(deadline) = deadline {
            s.schedule(key, deadline);
        }
        retry
    }

    /// Keys waiting: queued (due or not) plus held behind a running reconcile.
    pub fn depth(&self) -> usize {
        let s = self.lock();
        s.queued.len() + s.held.len()
    }

    /// Reconciles running now.
    pub fn in_flight(&self) -> usize {
        self.lock().running.len()
    }

    /// When `key` is next due, if queued (not counting a held trigger).
    pub fn deadline(&self, key: &str) -> Option<Instant> {
        self.lock().queued.get(key).copied()
    }

    /// Whether `key` is running now.
    pub fn is_running(&self, key: &str) -> bool {
        self.lock().running.contains(key)
    }

    /// Consecutive failures of `key` (0 when healthy).
    pub fn failures(&self, key: &str) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Every key resync visits, sorted.
    pub fn known_keys(&self) -> Vec<String> {
        self.lock().known.iter().cloned().collect()
    }

    /// The backoff delay for the `attempt`-th consecutive failure of `key`.
    pub fn backoff_delay(&self, key: &str, attempt: u32) -> Duration {
        self.lock().backoff(key, attempt)
    }

    pub fn concurrency(&self) -> usize {
        self.lock().config.concurrency
    }

    fn resync_period(&self) -> Option<Duration> {
        self.lock().config.resync
    }

    fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.wake.notified()
    }
}

/// Drives reconciles off a [`WorkQueue`].
pub struct Controller {
    queue: WorkQueue,
    metrics: Option<Metrics>,
}

impl Controller {
    pub fn new(config: Config) -> Controller {
        Controller {
            queue: WorkQueue::new(config),
            metrics: None,
        }
    }

    /// Record reconcile counts, durations, retries and queue gauges.
    pub fn with_metrics(mut self, metrics: Metrics) -> Controller {
        metrics.set_max_concurrent(self.queue.concurrency());
        self.metrics = Some(metrics);
        self
    }

    /// The queue, to add keys from elsewhere and for introspection.
    pub fn queue(&self) -> WorkQueue {
        self.queue.clone()
    }

    /// Run until `shutdown` resolves, then wait for the reconciles in flight
    /// (they are not cancelled mid-step) and return.
    ///
    /// `reconcile` gets the key and re-reads everything itself. An `Err` or a
    /// panic re-queues the key with backoff. Every key from `triggers` is
    /// queued now; the stream ending is not shutdown (requeues and resync
    /// carry on).
    pub async fn run<R, Fut, E, S, Sh>(self, reconcile: R, triggers: S, shutdown: Sh)
    where
        R: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: Display + Send + 'static,
        S: Stream<Item = String> + Send,
        Sh: Future<Output = ()> + Send,
    {
        let queue = self.queue;
        let metrics = self.metrics;
        let reconcile = Arc::new(reconcile);
        let mut triggers = std::pin::pin!(triggers.fuse());
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tasks: JoinSet<(String, Result<Action, String>, Duration)> = JoinSet::new();
        let mut running: HashMap<TaskId, String> = HashMap::new();
        let mut resync = queue.resync_period().map(|period| {
            let mut t = tokio::time::interval_at(Instant::now() + period, period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });

        loop {
            // Start everything that is due, up to the cap.
            let wake_at = loop {
                match queue.pop(Instant::now()) {
                    Pop::Ready(key) => {
                        let reconcile = reconcile.clone();
                        let span = tracing::info_span!("reconcile", key = %key);
                        let task_key = key.clone();
                        let handle = tasks.spawn(
                            async move {
                                let start = Instant::now();
                                let result =
                                    reconcile(task_key.clone()).await.map_err(|e| e.to_string());
                                (task_key, result, start.elapsed())
                            }
                            .instrument(span),
                        );
                        running.insert(handle.id(), key);
                    }
                    Pop::Idle(at) => break at,
                    // A finishing task wakes us.
                    Pop::Full => break None,
                }
            };
            if let Some(m) = &metrics {
                m.set_queue(queue.depth(), queue.in_flight());
            }

            let sleep = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let tick = async {
                match resync.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    finished(&queue, metrics.as_ref(), &mut running, joined);
                    // Reap whatever else is done before going round again.
                    while let Some(joined) = tasks.try_join_next_with_id() {
                        finished(&queue, metrics.as_ref(), &mut running, joined);
                    }
                }
                Some(key) = triggers.next() => queue.add(key),
                _ = queue.notified() => {}
                _ = sleep => {}
                _ = tick => queue.resync(),
            }
        }

        // Graceful: let running reconciles finish their current step.
        while let Some(joined) = tasks.join_next_with_id().await {
            finished(&queue, metrics.as_ref(), &mut running, joined);
        }
        if let Some(m) = &metrics {
            m.set_queue(queue.depth(), queue.in_flight());
        }
    }
}

type Joined = Result<(TaskId, (String, Result<Action, String>, Duration)), tokio::task::JoinError>;

fn finished(
    queue: &WorkQueue,
    metrics: Option<&Metrics>,
    running: &mut HashMap<TaskId, String>,
    joined: Joined,
) {
    let now = Instant::now();
    let (key, result, elapsed) = match joined {
        Ok((id, (key, result, elapsed))) => {
            running.remove(&id);
            (key, result, elapsed)
        }
        Err(e) => {
            // A panicking reconcile is an error like any other; the key must
            // not be lost, so it comes from our own map, not from the task.
            let Some(key) = running.remove(&e.id()) else {
                tracing::error!(error = %e, "a reconcile task vanished without a key");
                return;
            };
            let why = if e.is_panic() {
                "reconcile panicked".to_string()
            } else {
                e.to_string()
            };
            (key, Err(why), Duration::ZERO)
        }
    };
    let kind = key_kind(&key).to_string();
    match result {
        Ok(action) => {
            queue.finish(&key, Outcome::Ok(action), now);
            tracing::debug!(key = %key, ?action, elapsed_ms = elapsed.as_millis() as u64, "reconciled");
            if let Some(m) = metrics {
                let r = match action {
                    Action::RequeueAfter(_) => ReconcileResult::Requeue,
                    Action::AwaitChange => ReconcileResult::AwaitChange,
                };
                m.reconcile_finished(&kind, r, elapsed);
            }
        }
        Err(error) => {
            let retry = queue.finish(&key, Outcome::Failed, now);
            tracing::warn!(
                key = %key,
                error = %error,
                failures = queue.failures(&key),
                retry_ms = retry.map(|d| d.as_millis() as u64),
                "reconcile failed"
            );
            if let Some(m) = metrics {
                m.reconcile_finished(&kind, ReconcileResult::Error, elapsed);
                if retry.is_some() {
                    m.retried(&kind);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
