//! Maintenance windows (`spec.rollout.maintenanceWindow`): when disruptive
//! steps may start. Pure: the caller passes the time.
//!
//! A window opens at `start` (UTC) on each listed day (every day when the
//! list is empty) and lasts `duration`; a window that opened yesterday and
//! runs past midnight still counts on the day it was opened for. Outside a
//! window a disruptive step waits and the status says when it may start.

use std::time::Duration;

use crds::manatee::MaintenanceWindow;
use time::{OffsetDateTime, Weekday};

pub use crate::error::InvalidWindow;

const DAYS: [(&str, Weekday); 7] = [
    ("Mon", Weekday::Monday),
    ("Tue", Weekday::Tuesday),
    ("Wed", Weekday::Wednesday),
    ("Thu", Weekday::Thursday),
    ("Fri", Weekday::Friday),
    ("Sat", Weekday::Saturday),
    ("Sun", Weekday::Sunday),
];

/// Where `now` falls relative to the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowState {
    /// Inside a window that closes at this instant.
    Open { closes: OffsetDateTime },
    /// Outside; the next window opens at this instant.
    Closed { opens: OffsetDateTime },
}

fn parse(w: &MaintenanceWindow) -> Result<(Vec<Weekday>, u8, u8, Duration), InvalidWindow> {
    let mut days = Vec::new();
    for d in &w.days {
        let day = DAYS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(d))
            .map(|(_, wd)| *wd)
            .ok_or_else(|| {
                InvalidWindow(format!(
                    "spec.rollout.maintenanceWindow.days: `{d}` is not Mon..Sun"
                ))
            })?;
        days.push(day);
    }
    let (h, m) = w
        .start
        .split_once(':')
        .and_then(|(h, m)| Some((h.parse::<u8>().ok()?, m.parse::<u8>().ok()?)))
        .filter(|(h, m)| *h < 24 && *m < 60)
        .ok_or_else(|| {
            InvalidWindow(format!(
                "spec.rollout.maintenanceWindow.start: `{}` is not HH:MM (UTC)",
                w.start
            ))
        })?;
    let len = crds::common::parse_duration(&w.duration)
        .map_err(|e| InvalidWindow(format!("spec.rollout.maintenanceWindow.duration: {e}")))?;
    if len.is_zero() {
        return Err(InvalidWindow(
            "spec.rollout.maintenanceWindow.duration: must be more than 0".into(),
        ));
    }
    Ok((days, h, m, len))
}

/// Where `now` is relative to the window. Errors name the field at fault.
pub fn window_state(
    w: &MaintenanceWindow,
    now: OffsetDateTime,
) -> Result<WindowState, InvalidWindow> {
    let (days, h, m, len) = parse(w)?;
    let len = time::Duration::try_from(len).map_err(|e| InvalidWindow(e.to_string()))?;
    let today = now.replace_time(time::Time::from_hms(h, m, 0).expect("checked"));
    let counts = |t: OffsetDateTime| days.is_empty() || days.contains(&t.weekday());
    // Openings from 8 days back (a window may last up to 7 days) to 8 ahead.
    let mut next_open = None;
    for k in -8i64..=8 {
        let opens = today + time::Duration::days(k);
        if !counts(opens) {
            continue;
        }
        let closes = opens + len;
        if opens <= now && now < closes {
            return Ok(WindowState::Open { closes });
        }
        if opens > now && next_open.is_none() {
            next_open = Some(opens);
        }
    }
    Ok(WindowState::Closed {
        opens: next_open.expect("some listed day comes within a week"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn w(days: &[&str], start: &str, duration: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            duration: duration.into(),
        }
    }

    #[test]
    fn inside_and_outside_a_weekly_window() {
        let win = w(&["Tue", "Wed", "Thu"], "14:00", "4h");
        // 2026-01-06 is a Tuesday.
        assert_eq!(
            window_state(&win, datetime!(2026-01-06 15:30 UTC)).unwrap(),
            WindowState::Open {
                closes: datetime!(2026-01-06 18:00 UTC)
            }
        );
        assert_eq!(
            window_state(&win, datetime!(2026-01-06 18:00 UTC)).unwrap(),
            WindowState::Closed {
                opens: datetime!(2026-01-07 14:00 UTC)
            }
        );
        // Friday evening: next Tuesday.
        assert_eq!(
            window_state(&win, datetime!(2026-01-09 20:00 UTC)).unwrap(),
            WindowState::Closed {
                opens: datetime!(2026-01-13 14:00 UTC)
            }
        );
        assert_eq!(
            window_state(&win, datetime!(2026-01-06 13:59 UTC)).unwrap(),
            WindowState::Closed {
                opens: datetime!(2026-01-06 14:00 UTC)
            }
        );
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_opened() {
        let win = w(&["Sat"], "22:00", "6h");
        // 2026-01-11 is a Sunday: 03:00 is inside Saturday's window.
        assert_eq!(
            window_state(&win, datetime!(2026-01-11 03:00 UTC)).unwrap(),
            WindowState::Open {
                closes: datetime!(2026-01-11 04:00 UTC)
            }
        );
        // Every day when no day is listed.
        let daily = w(&[], "02:00", "1h");
        assert!(matches!(
            window_state(&daily, datetime!(2026-01-08 02:30 UTC)).unwrap(),
            WindowState::Open { .. }
        ));
    }

    #[test]
    fn errors_name_the_field() {
        let e = window_state(
            &w(&["Caturday"], "14:00", "1h"),
            datetime!(2026-01-06 0:00 UTC),
        )
        .unwrap_err();
        assert!(e.0.contains("maintenanceWindow.days"), "{e}");
        let e = window_state(&w(&[], "25:00", "1h"), datetime!(2026-01-06 0:00 UTC)).unwrap_err();
        assert!(e.0.contains("maintenanceWindow.start"), "{e}");
    }
}
