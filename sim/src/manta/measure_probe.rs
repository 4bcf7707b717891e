//! A per-vnode write prober for the resharding measurement: one key
//! directory per vnode of the ring, each written at a fixed period through
//! the electric-morays in turn, whatever happens to the other vnodes. A
//! vnode's refused time does not depend on how many clients there are or
//! on which keys they happen to retry (mlive's workers stick to a blocked
//! key, so with `n` workers at most `n` keys are ever blocked).
//!
//! Definition: a vnode is blocked from the start of a probe write that
//! electric-moray refused because the vnode or its shard is read-only,
//! until the start of the next acknowledged probe write of that vnode (or
//! the end of the run); failures that are not read-only refusals (a 503
//! while an electric-moray restarts, a timeout) inside such an interval
//! neither end nor start it. [`ProbeReport::blocked_key_seconds`] is the
//! sum of those intervals over every vnode. The resolution is the probe
//! period: an interval is measured between probe starts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use wire::fash::Ring;

use super::em_client::EmClient;
use super::mlive::ring_directories;

/// The outcome of one probe write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Acked,
    /// Refused because the vnode or its shard is read-only.
    ReadOnly,
    /// Any other failure (e-m restarting, timeout, ...).
    Failed,
}

/// One vnode's probes: (start since the run began, outcome), in order.
#[derive(Debug, Clone, Default)]
pub struct VnodeProbes {
    pub probes: Vec<(Duration, Probe)>,
}

impl VnodeProbes {
    /// The refused intervals (see the module docs), run ending at `end`.
    pub fn refused_intervals(&self, end: Duration) -> Vec<(Duration, Duration)> {
        let mut out = Vec::new();
        let mut since: Option<Duration> = None;
        for &(at, p) in &self.probes {
            match p {
                Probe::ReadOnly if since.is_none() => since = Some(at),
                Probe::Acked => {
                    if let Some(s) = since.take() {
                        out.push((s, at));
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = since {
            out.push((s, end.max(s)));
        }
        out
    }

    pub fn count(&self, what: Probe) -> u64 {
        self.probes.iter().filter(|(_, p)| *p == what).count() as u64
    }
}

/// Per vnode probes of one run.
#[derive(Debug, Clone, Default)]
pub struct ProbeReport {
    pub vnodes: BTreeMap<u32, VnodeProbes>,
    pub elapsed: Duration,
}

/// Totals over a set of vnodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeTotals {
    pub vnodes_blocked: usize,
    pub read_only_refusals: u64,
    pub other_failures: u64,
    pub blocked_key_seconds: f64,
    /// The longest refused interval of one vnode.
    pub longest: Duration,
}

impl ProbeReport {
    /// Totals over the vnodes `select` keeps.
    pub fn totals(&self, select: impl Fn(u32) -> bool) -> ProbeTotals {
        let mut t = ProbeTotals::default();
        for (v, p) in &self.vnodes {
            if !select(*v) {
                continue;
            }
            let iv = p.refused_intervals(self.elapsed);
            if !iv.is_empty() {
                t.vnodes_blocked += 1;
            }
            for (a, b) in iv {
                let d = b.saturating_sub(a);
                t.blocked_key_seconds += d.as_secs_f64();
                t.longest = t.longest.max(d);
            }
            t.read_only_refusals += p.count(Probe::ReadOnly);
            t.other_failures += p.count(Probe::Failed);
        }
        t
    }

    /// (moved, unmoved) totals.
    pub fn split(&self, moved: &BTreeSet<u32>) -> (ProbeTotals, ProbeTotals) {
        (
            self.totals(|v| moved.contains(&v)),
            self.totals(|v| !moved.contains(&v)),
        )
    }
}

/// The prober's settings.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Time between two probes of one vnode.
    pub period: Duration,
    pub op_timeout: Duration,
    pub bucket: String,
    pub account: String,
}

pub struct ProbeHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<ProbeReport>,
}

impl ProbeHandle {
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub async fn wait(self) -> ProbeReport {
        self.task.await.expect("prober task panicked")
    }
}

/// Probes every vnode of `ring` (one task per vnode, starts spread over
/// the period) until stopped.
pub fn spawn(targets: Vec<EmClient>, ring: &Ring, cfg: ProbeConfig) -> ProbeHandle {
    assert!(!targets.is_empty() && !cfg.period.is_zero());
    let dirs = ring_directories(ring, &cfg.account, ring.vnode_count() as usize);
    let (stop, stop_rx) = watch::channel(false);
    let targets = Arc::new(targets);
    let cfg = Arc::new(cfg);
    let task = tokio::spawn(async move {
        let origin = Instant::now();
        let n = dirs.len().max(1);
        let handles: Vec<_> = dirs
            .into_iter()
            .enumerate()
            .map(|(i, (dir, vnode))| {
                let offset = cfg.period.mul_f64(i as f64 / n as f64);
                let (targets, cfg, mut stop) = (targets.clone(), cfg.clone(), stop_rx.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval_at(origin + offset, cfg.period);
                    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    let mut probes = VnodeProbes::default();
                    for seq in 0u64.. {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = stop.changed() => break,
                        }
                        if *stop.borrow() {
                            break;
                        }
                        let target = &targets[(i + seq as usize) % targets.len()];
                        let key = format!("{dir}/probe-{vnode}-{seq}");
                        let value = json!({
                            "dirname": dir, "key": key, "name": format!("probe-{vnode}-{seq}"),
                            "owner": cfg.account, "type": "object",
                        });
                        let at = origin.elapsed();
                        let r = tokio::time::timeout(
                            cfg.op_timeout,
                            target.put(&cfg.bucket, &key, &value),
                        )
                        .await;
                        let p = match r {
                            Ok(Ok(_)) => Probe::Acked,
                            Ok(Err(e)) if e.is_read_only() => Probe::ReadOnly,
                            _ => Probe::Failed,
                        };
                        probes.probes.push((at, p));
                    }
                    (vnode, probes)
                })
            })
            .collect();
        let mut report = ProbeReport::default();
        for h in handles {
            let (v, p) = h.await.expect("probe task panicked");
            report.vnodes.insert(v, p);
        }
        report.elapsed = origin.elapsed();
        report
    });
    ProbeHandle { stop, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_refused_interval_runs_from_the_first_refusal_to_the_next_ack() {
        let p = VnodeProbes {
            probes: vec![
                (ms(0), Probe::Acked),
                (ms(100), Probe::Failed),
                (ms(200), Probe::ReadOnly),
                (ms(300), Probe::Failed),
                (ms(400), Probe::ReadOnly),
                (ms(500), Probe::Acked),
                (ms(600), Probe::ReadOnly),
            ],
        };
        assert_eq!(
            p.refused_intervals(ms(1000)),
            vec![(ms(200), ms(500)), (ms(600), ms(1000))]
        );
        let r = ProbeReport {
            vnodes: [(3, p.clone()), (4, VnodeProbes::default())].into(),
            elapsed: ms(1000),
        };
        let (m, u) = r.split(&[3].into());
        assert_eq!(m.vnodes_blocked, 1);
        assert_eq!(m.read_only_refusals, 3);
        assert_eq!(m.other_failures, 2);
        assert!((m.blocked_key_seconds - 0.7).abs() < 1e-9);
        assert_eq!(m.longest, ms(400));
        assert_eq!(u, ProbeTotals::default());
    }
}
