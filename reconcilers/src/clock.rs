//! Time, injectable so operations can be tested and time-scaled.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("UTC times format")
}

pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Elapsed time between an RFC 3339 timestamp and now (zero if unparseable or in the future).
pub fn since(start: &str, now: OffsetDateTime) -> Duration {
    parse_rfc3339(start)
        .map(|t| (now - t).try_into().unwrap_or(Duration::ZERO))
        .unwrap_or(Duration::ZERO)
}

/// A clock that moves only when told to: for tests of time-dependent gates.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new(at: OffsetDateTime) -> ManualClock {
        ManualClock(std::sync::Mutex::new(at))
    }
    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap() = at;
    }
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// The wall clock shifted so that it started at a chosen instant: time
/// passes at the normal rate (step timeouts still work) but the calendar is
/// the one a test needs (e.g. inside a maintenance window).
#[derive(Debug)]
pub struct ShiftedClock {
    offset: time::Duration,
}

impl ShiftedClock {
    /// A clock whose `now()` is `at` right now.
    pub fn starting_at(at: OffsetDateTime) -> ShiftedClock {
        ShiftedClock {
            offset: at - OffsetDateTime::now_utc(),
        }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.offset
    }
}
