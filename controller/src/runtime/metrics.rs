//! Prometheus metrics in an explicit registry (no process-global state, so
//! tests and an embedded demo can run several controllers side by side).
//!
//! Names follow controller-runtime's (`reconcile_total`,
//! `reconcile_errors_total`, `reconcile_time_seconds`, `workqueue_depth`,
//! `workqueue_retries_total`, `active_workers`) under the `tritonctl_`
//! prefix, plus what an operation engine needs: active operations and step
//! durations/outcomes.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    kind: String,
    step: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Reconcile durations: 5 ms .. ~80 s.
fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Step durations: 50 ms .. ~3.6 h (a reprovision takes minutes).
fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 18))
}

/// How one reconcile ended, for the `result` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Ok, and asked to run again after a delay.
    Requeue,
    /// Ok, and waits for the next trigger.
    AwaitChange,
    /// Failed (returned an error or panicked); retried with backoff.
    Error,
}

impl ReconcileResult {
    fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Requeue => "requeue",
            ReconcileResult::AwaitChange => "success",
            ReconcileResult::Error => "error",
        }
    }
}

struct Handles {
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<KindLabels, Counter>,
    reconcile_time: HistogramFamily<KindLabels>,
    retries: Family<KindLabels, Counter>,
    queue_depth: Gauge,
    active_workers: Gauge,
    max_concurrent: Gauge,
    active_operations: Family<KindLabels, Gauge>,
    step_time: HistogramFamily<StepLabels>,
    steps_total: Family<StepLabels, Counter>,
    leader: Gauge,
    events_total: Family<EventLabels, Counter>,
    election_ignored: Family<ReasonLabels, Counter>,
}

/// The controller's metrics. Cheap to clone; every clone updates the same
/// series.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    h: Arc<Handles>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::with_extra(|_| {})
    }

    /// Like [`Metrics::new`], letting the caller register more metrics (HTTP
    /// client counters, ...) in the same registry before it is frozen.
    pub fn with_extra(extra: impl FnOnce(&mut Registry)) -> Metrics {
        let mut root = Registry::default();
        let reg = root.sub_registry_with_prefix("tritonctl");
        let h = Handles {
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_time: Family::new_with_constructor(reconcile_histogram),
            retries: Family::default(),
            queue_depth: Gauge::default(),
            active_workers: Gauge::default(),
            max_concurrent: Gauge::default(),
            active_operations: Family::default(),
            step_time: Family::new_with_constructor(step_histogram),
            steps_total: Family::default(),
            leader: Gauge::default(),
            events_total: Family::default(),
            election_ignored: Family::default(),
        };
        reg.register(
            "reconcile",
            "Reconciles by kind and result (success, requeue, error)",
            h.reconcile_total.clone(),
        );
        reg.register(
            "reconcile_errors",
            "Reconciles that failed, by kind",
            h.reconcile_errors.clone(),
        );
        reg.register_with_unit(
            "reconcile_time",
            "Duration of one reconcile, by kind",
            Unit::Seconds,
            h.reconcile_time.clone(),
        );
        reg.register(
            "workqueue_retries",
            "Keys requeued with backoff after an error, by kind",
            h.retries.clone(),
        );
        reg.register(
            "workqueue_depth",
            "Keys waiting in the work queue (scheduled or held behind a running reconcile)",
            h.queue_depth.clone(),
        );
        reg.register(
            "active_workers",
            "Reconciles running now",
            h.active_workers.clone(),
        );
        reg.register(
            "max_concurrent_reconciles",
            "The work queue's concurrency cap",
            h.max_concurrent.clone(),
        );
        reg.register(
            "active_operations",
            "Operations in progress, by kind",
            h.active_operations.clone(),
        );
        reg.register_with_unit(
            "operation_step_time",
            "Duration of one operation step, by kind, step and outcome",
            Unit::Seconds,
            h.step_time.clone(),
        );
        reg.register(
            "operation_steps",
            "Operation steps finished, by kind, step and outcome",
            h.steps_total.clone(),
        );
        reg.register(
            "leader",
            "1 while this controller holds leadership",
            h.leader.clone(),
        );
        reg.register("events", "Events recorded, by type", h.events_total.clone());
        reg.register(
            "election_ignored_candidates",
            "Nodes under the election directory the election ignored (not ephemeral, not sequential), by reason; each counted once",
            h.election_ignored.clone(),
        );
        extra(&mut root);
        Metrics {
            registry: Arc::new(root),
            h: Arc::new(h),
        }
    }

    /// The OpenMetrics text exposition (serve with content type
    /// `application/openmetrics-text; version=1.0.0; charset=utf-8`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn reconcile_finished(&self, kind: &str, result: ReconcileResult, elapsed: Duration) {
        let kind = kind.to_string();
        self.h
            .reconcile_total
            .get_or_create(&ResultLabels {
                kind: kind.clone(),
                result: result.as_str().to_string(),
            })
            .inc();
        if result == ReconcileResult::Error {
            self.h
                .reconcile_errors
                .get_or_create(&KindLabels { kind: kind.clone() })
                .inc();
        }
        self.h
            .reconcile_time
            .get_or_create(&KindLabels { kind })
            .observe(elapsed.as_secs_f64());
    }

    pub fn retried(&self, kind: &str) {
        self.h
            .retries
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn set_queue(&self, depth: usize, active_workers: usize) {
        self.h.queue_depth.set(depth as i64);
        self.h.active_workers.set(active_workers as i64);
    }

    pub fn set_max_concurrent(&self, cap: usize) {
        self.h.max_concurrent.set(cap as i64);
    }

    pub fn set_active_operations(&self, kind: &str, n: usize) {
        self.h
            .active_operations
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .set(n as i64);
    }

    /// One step of an operation ended; `outcome` is e.g. `succeeded`,
    /// `failed`, `timed_out`, `skipped`, `rolled_back`.
    pub fn step_finished(&self, kind: &str, step: &str, outcome: &str, elapsed: Duration) {
        let labels = StepLabels {
            kind: kind.to_string(),
            step: step.to_string(),
            outcome: outcome.to_string(),
        };
        self.h
            .step_time
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.h.steps_total.get_or_create(&labels).inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.h.leader.set(i64::from(leading));
    }

    /// A node the leader election ignores (`not_ephemeral`, `not_sequential`).
    pub fn election_ignored(&self, reason: &str) {
        self.h
            .election_ignored
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn event_recorded(&self, event_type: &str) {
        self.h
            .events_total
            .get_or_create(&EventLabels {
                r#type: event_type.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_with_labels() {
        let m = Metrics::new();
        m.reconcile_finished(
            "ManateeVersion",
            ReconcileResult::Requeue,
            Duration::from_millis(20),
        );
        m.reconcile_finished(
            "ManateeVersion",
            ReconcileResult::Error,
            Duration::from_millis(3),
        );
        m.retried("ManateeVersion");
        m.set_queue(7, 2);
        m.set_max_concurrent(4);
        m.set_active_operations("ShardTopology", 1);
        m.step_finished(
            "ManateeVersion",
            "reprovision-sync",
            "succeeded",
            Duration::from_secs(90),
        );
        m.set_leader(true);
        m.event_recorded("Warning");
        m.election_ignored("not_ephemeral");
        let text = m.render();
        for want in [
            "tritonctl_reconcile_total{kind=\"ManateeVersion\",result=\"requeue\"} 1",
            "tritonctl_reconcile_total{kind=\"ManateeVersion\",result=\"error\"} 1",
            "tritonctl_reconcile_errors_total{kind=\"ManateeVersion\"} 1",
            "tritonctl_reconcile_time_seconds_count{kind=\"ManateeVersion\"} 2",
            "tritonctl_workqueue_retries_total{kind=\"ManateeVersion\"} 1",
            "tritonctl_workqueue_depth 7",
            "tritonctl_active_workers 2",
            "tritonctl_max_concurrent_reconciles 4",
            "tritonctl_active_operations{kind=\"ShardTopology\"} 1",
            "tritonctl_operation_step_time_seconds_count{kind=\"ManateeVersion\",step=\"reprovision-sync\",outcome=\"succeeded\"} 1",
            "tritonctl_operation_steps_total{kind=\"ManateeVersion\",step=\"reprovision-sync\",outcome=\"succeeded\"} 1",
            "tritonctl_leader 1",
            "tritonctl_events_total{type=\"Warning\"} 1",
            "tritonctl_election_ignored_candidates_total{reason=\"not_ephemeral\"} 1",
        ] {
            assert!(text.contains(want), "missing `{want}` in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn extra_metrics_share_the_registry() {
        let c: Counter = Counter::default();
        let m = Metrics::with_extra(|r| r.register("http_requests", "HTTP requests", c.clone()));
        c.inc();
        assert!(m.render().contains("http_requests_total 1"));
    }
}
