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
