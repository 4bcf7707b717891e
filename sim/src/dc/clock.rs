//! Simulated time: real-world durations multiplied by one scale knob.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long things take in a real datacenter. Every one of them is
/// multiplied by the time scale before the simulator sleeps.
#[derive(Clone, Debug, PartialEq)]
pub struct SimDurations {
    /// A workflow job waiting in the queue before a runner picks it up.
    pub job_queue: Duration,
    pub provision: Duration,
    pub start: Duration,
    pub stop: Duration,
    pub kill: Duration,
    pub reboot: Duration,
    pub update: Duration,
    pub reprovision: Duration,
    pub destroy: Duration,
    pub server_setup: Duration,
}

impl Default for SimDurations {
    fn default() -> Self {
        SimDurations {
            job_queue: Duration::from_secs(2),
            provision: Duration::from_secs(120),
            start: Duration::from_secs(30),
            stop: Duration::from_secs(30),
            kill: Duration::from_secs(5),
            reboot: Duration::from_secs(60),
            update: Duration::from_secs(10),
            reprovision: Duration::from_secs(15 * 60),
            destroy: Duration::from_secs(60),
            server_setup: Duration::from_secs(10 * 60),
        }
    }
}

/// The scale knob, adjustable while running (tests slow a phase down to
/// observe it, or speed everything up).
#[derive(Debug)]
pub struct Clock {
    scale_bits: AtomicU64,
    durations: SimDurations,
}

impl Clock {
    pub fn new(scale: f64, durations: SimDurations) -> Self {
        let c = Clock {
            scale_bits: AtomicU64::new(0),
            durations,
        };
        c.set_scale(scale);
        c
    }

    pub fn scale(&self) -> f64 {
        f64::from_bits(self.scale_bits.load(Ordering::Relaxed))
    }

    /// Negative, NaN or infinite scales are clamped to 0 (everything instant).
    pub fn set_scale(&self, scale: f64) {
        let s = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            0.0
        };
        self.scale_bits.store(s.to_bits(), Ordering::Relaxed);
    }

    pub fn durations(&self) -> &SimDurations {
        &self.durations
    }

    /// A real-world duration as the simulator spends it.
    pub fn scaled(&self, real: Duration) -> Duration {
        real.mul_f64(self.scale())
    }

    /// Sleep for the scaled equivalent of `real`.
    pub async fn sleep(&self, real: Duration) {
        let d = self.scaled(real);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

/// Current wall time as the APIs print it: `2024-01-02T03:04:05.000Z`.
pub fn now_iso() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_minutes_at_one_six_thousandth_is_150ms() {
        let c = Clock::new(1.0 / 6000.0, SimDurations::default());
        let d = c.scaled(c.durations().reprovision);
        assert!((d.as_secs_f64() - 0.150).abs() < 1e-6, "{d:?}");
        c.set_scale(-1.0);
        assert_eq!(c.scaled(Duration::from_secs(60)), Duration::ZERO);
    }

    #[test]
    fn iso_timestamps_have_millis_and_z() {
        let s = now_iso();
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T');
    }
}
