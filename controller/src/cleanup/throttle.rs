//! Throttling by read latency: a probe measures how long a point read
//! takes on the shard while the cleanup runs, and [`Backoff`] turns its
//! p99 into the settings actually used (pause grows, connections shrink
//! while the p99 is over the ceiling; they recover one level at a time once
//! it is back under 80% of it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::Tuning;

/// Samples kept: the p99 is over the last this many probes.
const WINDOW: usize = 64;
/// Time between probes.
pub const PROBE_EVERY: Duration = Duration::from_millis(20);
/// The deepest back-off level (pause x 2^10 at most, connections / 2^10).
const MAX_LEVEL: u32 = 10;
/// The pause a backed-off connection starts from when none is configured.
const MIN_BACKOFF_PAUSE_MS: u64 = 10;
/// Longest pause back-off ever imposes.
const MAX_BACKOFF_PAUSE_MS: u64 = 10_000;

/// The last probe latencies.
#[derive(Debug, Default)]
pub struct Window {
    samples: VecDeque<Duration>,
}

impl Window {
    pub fn push(&mut self, d: Duration) {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(d);
    }

    /// p99 of the window in ms (None before the first sample).
    pub fn p99_ms(&self) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut s: Vec<Duration> = self.samples.iter().copied().collect();
        s.sort();
        let i = ((s.len() as f64) * 0.99).ceil() as usize;
        Some(s[i.clamp(1, s.len()) - 1].as_secs_f64() * 1000.0)
    }
}

/// The back-off state of one cleanup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    level: u32,
    /// Ever backed off.
    pub engaged: bool,
}

impl Backoff {
    pub fn level(&self) -> u32 {
        self.level
    }

    /// One look at the latency: deeper while over the ceiling, one level
    /// back once under 80% of it.
    pub fn observe(&mut self, p99_ms: Option<f64>, ceiling_ms: Option<f64>) {
        let (Some(p), Some(c)) = (p99_ms, ceiling_ms) else {
            self.level = self.level.saturating_sub(1);
            return;
        };
        if p > c {
            self.level = (self.level + 1).min(MAX_LEVEL);
            self.engaged = true;
        } else if p < 0.8 * c {
            self.level = self.level.saturating_sub(1);
        }
    }

    /// The settings to use now.
    pub fn apply(&self, t: &Tuning) -> Tuning {
        if self.level == 0 {
            return *t;
        }
        let pause = t
            .pause_ms
            .max(MIN_BACKOFF_PAUSE_MS)
            .saturating_mul(1 << self.level)
            .min(MAX_BACKOFF_PAUSE_MS.max(t.pause_ms));
        Tuning {
            connections: (t.connections >> self.level).max(1),
            pause_ms: pause,
            ..*t
        }
    }
}

/// Runs point reads on the shard every [`PROBE_EVERY`] until dropped;
/// `window` holds their latencies.
pub struct Probe {
    pub window: Arc<Mutex<Window>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Probe {
    /// Probes `bucket` (an index read by `_key`) over its own connection.
    pub fn start(client: Client, bucket: String) -> Probe {
        let window = Arc::new(Mutex::new(Window::default()));
        let w = window.clone();
        let sql = format!("SELECT _key FROM {bucket} WHERE _key >= $1 ORDER BY _key LIMIT 1");
        let task = tokio::spawn(async move {
            let mut n: u64 = 0;
            loop {
                n = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let from = format!("/{:016x}", n);
                let t0 = Instant::now();
                let ok = client.query_opt(sql.as_str(), &[&from]).await.is_ok();
                let took = t0.elapsed();
                if ok {
                    w.lock().expect("probe window").push(took);
                }
                tokio::time::sleep(PROBE_EVERY.saturating_sub(took)).await;
            }
        });
        Probe { window, task }
    }

    pub fn p99_ms(&self) -> Option<f64> {
        self.window.lock().expect("probe window").p99_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Tuning {
        Tuning {
            connections: 8,
            batch_size: 1000,
            pause_ms: 0,
            max_read_p99_ms: Some(10.0),
        }
    }

    #[test]
    fn over_the_ceiling_pause_grows_and_connections_shrink() {
        let mut b = Backoff::default();
        b.observe(Some(5.0), Some(10.0));
        assert_eq!(b.apply(&t()), t());
        b.observe(Some(25.0), Some(10.0));
        let one = b.apply(&t());
        assert_eq!((one.connections, one.pause_ms), (4, 20));
        b.observe(Some(25.0), Some(10.0));
        let two = b.apply(&t());
        assert_eq!((two.connections, two.pause_ms), (2, 40));
        for _ in 0..20 {
            b.observe(Some(99.0), Some(10.0));
        }
        let deep = b.apply(&t());
        assert_eq!((deep.connections, deep.pause_ms), (1, 10_000));
        // Between 80% and 100% of the ceiling: held.
        b.observe(Some(9.0), Some(10.0));
        assert_eq!(b.level(), MAX_LEVEL);
        b.observe(Some(7.0), Some(10.0));
        assert_eq!(b.level(), MAX_LEVEL - 1);
        assert!(b.engaged);
    }

    #[test]
    fn window_p99() {
        let mut w = Window::default();
        assert_eq!(w.p99_ms(), None);
        for i in 1..=100u64 {
            w.push(Duration::from_millis(i));
        }
        // Only the last 64 (37..=100) are kept; p99 of 64 is the 64th.
        assert_eq!(w.p99_ms(), Some(100.0));
        w.push(Duration::from_millis(1));
        assert_eq!(w.p99_ms(), Some(100.0));
    }
}
