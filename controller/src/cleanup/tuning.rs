//! Live tuning of a cleanup: the settings, their ranges and defaults, and
//! where the engine reads them while it runs.
//!
//! An operator's settings live in one ZooKeeper node per operation,
//! [`crate::layout::reshard_tuning_path`], as a JSON object of the
//! tunables they set (`{"batch_size": 5000}`); the rest keep their
//! defaults. `tritonctl reshard tune` writes it (as manta-reshard's
//! `reshard plan UUID tune`); the engine reads it before each round of
//! batches, so a change takes effect within one batch per connection.

use std::sync::Arc;

use coord::{CoordError, Coordination, CreateMode, Expect};
use serde::{Deserialize, Serialize};

/// The settings a cleanup runs with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tuning {
    /// Direct PostgreSQL connections to the primary, each deleting batches.
    pub connections: u32,
    /// Rows per DELETE.
    pub batch_size: u32,
    /// Pause of each connection between its batches.
    pub pause_ms: u64,
    /// Back off while the shard's read p99 (the probe's) is above this;
    /// None: never throttle.
    pub max_read_p99_ms: Option<f64>,
}

impl Default for Tuning {
    /// tritonctl's defaults: a few connections deleting big batches without
    /// pausing, held back by the read-latency ceiling instead.
    fn default() -> Tuning {
        Tuning {
            connections: 4,
            batch_size: 2000,
            pause_ms: 0,
            max_read_p99_ms: Some(20.0),
        }
    }
}

impl Tuning {
    /// manta-reshard's defaults (`delete_pg_conn_count` 10,
    /// `delete_batch_size` 10, `delete_pause_ms` 1000; it has no latency
    /// ceiling).
    pub fn manta_reshard_defaults() -> Tuning {
        Tuning {
            connections: 10,
            batch_size: 10,
            pause_ms: 1000,
            max_read_p99_ms: None,
        }
    }

    /// These settings with the operator's overrides on top.
    pub fn with(mut self, o: &Overrides) -> Tuning {
        if let Some(v) = o.connections {
            self.connections = v;
        }
        if let Some(v) = o.batch_size {
            self.batch_size = v;
        }
        if let Some(v) = o.pause_ms {
            self.pause_ms = v;
        }
        if let Some(v) = o.max_read_p99_ms {
            self.max_read_p99_ms = if v == 0.0 { None } else { Some(v) };
        }
        self
    }
}

/// What an operator set (the stored JSON object); absent: the default.
/// `max_read_p99_ms: 0` turns the ceiling off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_read_p99_ms: Option<f64>,
}

/// One tunable: its name, range and default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tunable {
    Connections,
    BatchSize,
    PauseMs,
    MaxReadP99Ms,
}

impl Tunable {
    pub const ALL: [Tunable; 4] = [
        Tunable::Connections,
        Tunable::BatchSize,
        Tunable::PauseMs,
        Tunable::MaxReadP99Ms,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tunable::Connections => "connections",
            Tunable::BatchSize => "batch_size",
            Tunable::PauseMs => "pause_ms",
            Tunable::MaxReadP99Ms => "max_read_p99_ms",
        }
    }

    pub fn parse(name: &str) -> Result<Tunable, TuningError> {
        Tunable::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| TuningError::UnknownTunable(name.to_owned()))
    }

    /// Inclusive range.
    pub fn range(self) -> (f64, f64) {
        match self {
            Tunable::Connections => (1.0, 256.0),
            Tunable::BatchSize => (1.0, 100_000.0),
            Tunable::PauseMs => (0.0, 60_000.0),
            Tunable::MaxReadP99Ms => (0.0, 60_000.0),
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Tunable::Connections => "PostgreSQL connections deleting in parallel",
            Tunable::BatchSize => "rows per DELETE",
            Tunable::PauseMs => "pause of each connection between batches (ms)",
            Tunable::MaxReadP99Ms => {
                "back off while the shard's read p99 is above this (ms; 0 = never)"
            }
        }
    }

    /// The value in `t`, as shown.
    pub fn show(self, t: &Tuning) -> String {
        match self {
            Tunable::Connections => t.connections.to_string(),
            Tunable::BatchSize => t.batch_size.to_string(),
            Tunable::PauseMs => t.pause_ms.to_string(),
            Tunable::MaxReadP99Ms => match t.max_read_p99_ms {
                Some(v) => v.to_string(),
                None => "0".into(),
            },
        }
    }

    /// Whether the operator set it.
    pub fn is_set(self, o: &Overrides) -> bool {
        match self {
            Tunable::Connections => o.connections.is_some(),
            Tunable::BatchSize => o.batch_size.is_some(),
            Tunable::PauseMs => o.pause_ms.is_some(),
            Tunable::MaxReadP99Ms => o.max_read_p99_ms.is_some(),
        }
    }

    /// Sets it in `o` from text (`default` unsets it), checking the range.
    pub fn set(self, o: &mut Overrides, value: &str) -> Result<(), TuningError> {
        if value == "default" {
            match self {
                Tunable::Connections => o.connections = None,
                Tunable::BatchSize => o.batch_size = None,
                Tunable::PauseMs => o.pause_ms = None,
                Tunable::MaxReadP99Ms => o.max_read_p99_ms = None,
            }
            return Ok(());
        }
        let (lo, hi) = self.range();
        let bad = || TuningError::OutOfRange {
            name: self.name(),
            value: value.to_owned(),
            lo,
            hi,
        };
        let v: f64 = value.trim().parse().map_err(|_| bad())?;
        if !v.is_finite() || v < lo || v > hi {
            return Err(bad());
        }
        let whole = || {
            if v.fract() == 0.0 {
                Ok(v as u64)
            } else {
                Err(bad())
            }
        };
        match self {
            Tunable::Connections => o.connections = Some(whole()? as u32),
            Tunable::BatchSize => o.batch_size = Some(whole()? as u32),
            Tunable::PauseMs => o.pause_ms = Some(whole()?),
            Tunable::MaxReadP99Ms => o.max_read_p99_ms = Some(v),
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TuningError {
    #[error("unknown tunable {0:?} (known: connections, batch_size, pause_ms, max_read_p99_ms)")]
    UnknownTunable(String),
    #[error("{name}: {value:?} is not a number in {lo}..={hi}")]
    OutOfRange {
        name: &'static str,
        value: String,
        lo: f64,
        hi: f64,
    },
    #[error("{path}: stored tuning is not valid: {message}")]
    Malformed { path: String, message: String },
    #[error("{path}: {error}")]
    Coord { path: String, error: CoordError },
}

/// Where a running cleanup reads its settings.
#[derive(Clone)]
pub enum TuningSource {
    /// Always these.
    Fixed(Tuning),
    /// The operator's overrides at `path` over `base`, read each time.
    Stored {
        coord: Arc<dyn Coordination>,
        path: String,
        base: Tuning,
    },
}

impl std::fmt::Debug for TuningSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TuningSource::Fixed(t) => f.debug_tuple("Fixed").field(t).finish(),
            TuningSource::Stored { path, base, .. } => f
                .debug_struct("Stored")
                .field("path", path)
                .field("base", base)
                .finish_non_exhaustive(),
        }
    }
}

impl TuningSource {
    /// The operation's node over tritonctl's defaults.
    pub fn for_operation(coord: Arc<dyn Coordination>, op_id: &str) -> TuningSource {
        TuningSource::Stored {
            coord,
            path: crate::layout::reshard_tuning_path(op_id),
            base: Tuning::default(),
        }
    }

    /// The settings now.
    pub async fn current(&self) -> Result<Tuning, TuningError> {
        match self {
            TuningSource::Fixed(t) => Ok(*t),
            TuningSource::Stored { coord, path, base } => {
                let (o, _) = read_overrides(coord.as_ref(), path).await?;
                Ok(base.with(&o))
            }
        }
    }
}

/// The overrides stored at `path` and the node's version (None: no node).
pub async fn read_overrides(
    coord: &dyn Coordination,
    path: &str,
) -> Result<(Overrides, Option<i32>), TuningError> {
    match coord.get(path).await {
        Ok((data, stat)) => {
            let o = if data.is_empty() {
                Overrides::default()
            } else {
                serde_json::from_slice(&data).map_err(|e| TuningError::Malformed {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            };
            Ok((o, Some(stat.version)))
        }
        Err(CoordError::NoNode(_)) => Ok((Overrides::default(), None)),
        Err(error) => Err(TuningError::Coord {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Writes the overrides at `path`, only over the version read (`None`:
/// the node must not exist yet); a concurrent writer makes this fail with
/// `BadVersion`/`NodeExists` and nothing is written.
pub async fn write_overrides(
    coord: &dyn Coordination,
    path: &str,
    o: &Overrides,
    read_version: Option<i32>,
) -> Result<(), TuningError> {
    let data = serde_json::to_vec(o).expect("overrides serialize");
    let err = |error| TuningError::Coord {
        path: path.to_owned(),
        error,
    };
    match read_version {
        Some(v) => coord
            .set(path, &data, Expect::Version(v))
            .await
            .map(|_| ())
            .map_err(err),
        None => {
            if let Some((parent, _)) = path.rsplit_once('/') {
                coord.mkdirp(parent).await.map_err(err)?;
            }
            coord
                .create(path, &data, CreateMode::Persistent)
                .await
                .map(|_| ())
                .map_err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_checks_ranges_and_default_unsets() {
        let mut o = Overrides::default();
        Tunable::BatchSize.set(&mut o, "5000").unwrap();
        assert_eq!(o.batch_size, Some(5000));
        assert!(Tunable::BatchSize.set(&mut o, "0").is_err());
        assert!(Tunable::Connections.set(&mut o, "257").is_err());
        assert!(Tunable::Connections.set(&mut o, "2.5").is_err());
        assert!(Tunable::PauseMs.set(&mut o, "nope").is_err());
        Tunable::MaxReadP99Ms.set(&mut o, "0").unwrap();
        assert_eq!(Tuning::default().with(&o).max_read_p99_ms, None);
        Tunable::BatchSize.set(&mut o, "default").unwrap();
        assert_eq!(o.batch_size, None);
        assert!(matches!(
            Tunable::parse("batch"),
            Err(TuningError::UnknownTunable(_))
        ));
    }

    #[tokio::test]
    async fn stored_overrides_apply_over_the_base() {
        let ens = coord::mem::MemEnsemble::new();
        let c: Arc<dyn Coordination> = ens.connect();
        let src = TuningSource::for_operation(c.clone(), "op1");
        assert_eq!(src.current().await.unwrap(), Tuning::default());
        let path = crate::layout::reshard_tuning_path("op1");
        let (mut o, v) = read_overrides(c.as_ref(), &path).await.unwrap();
        Tunable::Connections.set(&mut o, "9").unwrap();
        write_overrides(c.as_ref(), &path, &o, v).await.unwrap();
        let t = src.current().await.unwrap();
        assert_eq!(t.connections, 9);
        assert_eq!(t.batch_size, Tuning::default().batch_size);
        // A writer that read before this write is refused.
        assert!(write_overrides(c.as_ref(), &path, &o, v).await.is_err());
    }
}
