//! Time scaling and the knobs of the manatee model.

use std::time::Duration;

/// The one time-scale knob: every modelled duration (backoffs, PG starts,
/// restores, replication steps, write timeouts) is multiplied by this factor
/// before it is slept. `TimeScale::new(0.01)` makes manatee's 1 s backoff
/// 10 ms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeScale(f64);

impl TimeScale {
    /// Real time.
    pub const REAL: TimeScale = TimeScale(1.0);

    /// `real = modelled * factor`. Negative or NaN factors are treated as 0.
    pub fn new(factor: f64) -> TimeScale {
        TimeScale(if factor.is_finite() && factor > 0.0 {
            factor
        } else {
            0.0
        })
    }

    pub fn factor(self) -> f64 {
        self.0
    }

    /// The wall-clock duration of a modelled one.
    pub fn real(self, modelled: Duration) -> Duration {
        modelled.mul_f64(self.0)
    }

    /// The modelled duration of a wall-clock one (for reporting lag).
    pub fn modelled(self, real: Duration) -> Duration {
        if self.0 == 0.0 {
            Duration::ZERO
        } else {
            real.div_f64(self.0)
        }
    }

    /// Sleep a modelled duration.
    pub async fn sleep(self, modelled: Duration) {
        let real = self.real(modelled);
        if real.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(real).await;
        }
    }
}

impl Default for TimeScale {
    fn default() -> Self {
        TimeScale::REAL
    }
}

/// How a standby pulls WAL from its upstream: every `step` it makes durable
/// what it received in the previous step and receives up to
/// `bytes_per_second * step` more (at least one record).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplicationModel {
    pub step: Duration,
    pub bytes_per_second: u64,
}

impl Default for ReplicationModel {
    fn default() -> Self {
        ReplicationModel {
            step: Duration::from_millis(50),
            bytes_per_second: 16 * 1024 * 1024,
        }
    }
}

impl ReplicationModel {
    pub(crate) fn step_budget(&self) -> u64 {
        ((self.bytes_per_second as f64) * self.step.as_secs_f64()).max(1.0) as u64
    }
}

/// Everything about the simulated manatee that is not per zone. Durations
/// are modelled time; `time_scale` turns them into wall-clock time.
#[derive(Clone, Debug, PartialEq)]
pub struct ManateeSimConfig {
    pub time_scale: TimeScale,
    /// The sitter's retry backoff (manatee: 1 s, §3.2 step 7).
    pub backoff: Duration,
    /// One PG reconfigure, start or stop (the state-machine simulator uses 1 s).
    pub pg_transition: Duration,
    /// A full restore (zfs send/recv) of a standby with no dataset.
    pub restore: Duration,
    pub replication: ReplicationModel,
    /// How long a client write waits for the sync before it is reported as
    /// not acknowledged.
    pub write_timeout: Duration,
    /// Size of a manatee dataset beyond its WAL (the database files a ZFS
    /// send carries): what makes a transplant's copy take time.
    pub dataset_base_bytes: u64,
    /// `zfs send | zfs recv` within one server (bytes per modelled second).
    pub local_send_rate: u64,
    /// `zfs send | nc` over the admin network (JPC: 30+ minutes).
    pub network_send_rate: u64,
}

impl Default for ManateeSimConfig {
    fn default() -> Self {
        ManateeSimConfig {
            time_scale: TimeScale::REAL,
            backoff: Duration::from_secs(1),
            pg_transition: Duration::from_secs(1),
            restore: Duration::from_secs(10),
            replication: ReplicationModel::default(),
            write_timeout: Duration::from_secs(10),
            dataset_base_bytes: 4 << 30,
            local_send_rate: 800 << 20,
            network_send_rate: 110 << 20,
        }
    }
}

impl ManateeSimConfig {
    /// The defaults with every duration scaled by `factor`.
    pub fn scaled(factor: f64) -> ManateeSimConfig {
        ManateeSimConfig {
            time_scale: TimeScale::new(factor),
            ..ManateeSimConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale() {
        let t = TimeScale::new(0.01);
        assert_eq!(t.real(Duration::from_secs(1)), Duration::from_millis(10));
        assert_eq!(
            t.modelled(Duration::from_millis(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            TimeScale::new(-1.0).real(Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(ReplicationModel::default().step_budget(), 838_860);
    }
}
