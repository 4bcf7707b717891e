//! Reconcile events: `{time, object, type, reason, message, operation,
//! step}`, stored as persistent sequential nodes `events/e-<seq>` so their
//! order is the server's commit order, bounded to the newest N, listable by
//! object and streamable for `tritonctl events -w`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord::{
    CoordError, Coordination, CreateMode, Expect, Op, OpResult, Watch, WatchEvent, split_sequence,
};
use futures::Stream;
use serde::{Deserialize, Serialize};

use super::detached;
use crate::store::{Fence, StoreError};

pub const DEFAULT_LIMIT: usize = 1000;
const PREFIX: &str = "e-";
/// Deletes per trimming multi-op (keeps each request far below jute.maxbuffer).
const TRIM_BATCH: usize = 100;

/// `/tritonctl/v1/events`.
pub fn default_dir() -> String {
    crate::layout::events_dir()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC.
    pub time: String,
    /// `"<Kind>/<name>"`.
    pub object: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// CamelCase, machine-readable (`StepStarted`, `PrimaryNotCaughtUp`).
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("the current time formats as RFC 3339")
}

impl Event {
    pub fn new(
        event_type: EventType,
        object: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Event {
        Event {
            time: now_rfc3339(),
            object: object.into(),
            event_type,
            reason: reason.into(),
            message: message.into(),
            operation: None,
            step: None,
        }
    }

    pub fn normal(
        object: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Event {
        Event::new(EventType::Normal, object, reason, message)
    }

    pub fn warning(
        object: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Event {
        Event::new(EventType::Warning, object, reason, message)
    }

    pub fn with_operation(mut self, operation: impl Into<String>) -> Event {
        self.operation = Some(operation.into());
        self
    }

    pub fn with_step(mut self, step: impl Into<String>) -> Event {
        self.step = Some(step.into());
        self
    }
}

/// An event as stored, with its sequence number (commit order; a watch
/// resumes after it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub seq: u64,
    pub event: Event,
}

/// The event log under one directory.
#[derive(Clone)]
pub struct Events {
    coord: Arc<dyn Coordination>,
    dir: String,
    limit: usize,
    /// Lowest sequence believed still stored: lets `record` skip listing the
    /// directory until the log may have outgrown its bound.
    oldest: Arc<Mutex<Option<u64>>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("dir", &self.dir)
            .field("limit", &self.limit)
            .finish()
    }
}

fn parse_seq(name: &str) -> Option<u64> {
    match split_sequence(name) {
        Some((PREFIX, seq)) => Some(seq),
        _ => None,
    }
}

/// Whether a failed create says the events directory is missing (and not
/// the fence: a missing fence must fail the write, never be "fixed").
fn missing_dir(e: &CoordError, fenced: bool) -> bool {
    match e {
        CoordError::NoNode(_) => !fenced,
        CoordError::MultiFailed { index, error } => {
            fenced && *index == 1 && matches!(**error, CoordError::NoNode(_))
        }
        _ => false,
    }
}

fn decode(path: &str, data: &[u8]) -> Result<Event, StoreError> {
    serde_json::from_slice(data).map_err(|e| StoreError::Corrupt {
        path: path.to_string(),
        message: e.to_string(),
    })
}

impl Events {
    pub fn new(coord: Arc<dyn Coordination>) -> Events {
        Events {
            coord,
            dir: default_dir(),
            limit: DEFAULT_LIMIT,
            oldest: Arc::default(),
        }
    }

    pub fn with_dir(mut self, dir: impl Into<String>) -> Events {
        self.dir = dir.into();
        self
    }

    /// Keep the newest `limit` events (at least 1).
    pub fn with_limit(mut self, limit: usize) -> Events {
        self.limit = limit.max(1);
        self
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn path(&self, seq: u64) -> String {
        format!("{}/{PREFIX}{seq:010}", self.dir)
    }

    /// How far past `limit` the log may grow before `record` trims it, so
    /// that trimming (a directory listing) happens once per `slack` events,
    /// not on every one.
    fn slack(&self) -> usize {
        (self.limit / 10).max(1)
    }

    /// Store an event; with a fence, as one multi-op that fails unless the
    /// fence holds. Returns its sequence number. Trims the oldest events when
    /// the log outgrows its bound.
    pub async fn record(&self, event: &Event, fence: Option<&Fence>) -> Result<u64, StoreError> {
        let data = serde_json::to_vec(event).expect("events serialize");
        let prefix = format!("{}/{PREFIX}", self.dir);
        let created = match self.create(&prefix, &data, fence).await {
            Err(e) if missing_dir(&e, fence.is_some()) => {
                // First event ever: make the directory and try once more.
                self.coord.mkdirp(&self.dir).await?;
                self.create(&prefix, &data, fence).await?
            }
            other => other?,
        };
        let name = created.rsplit('/').next().unwrap_or_default();
        let seq = parse_seq(name).ok_or_else(|| StoreError::Corrupt {
            path: created.clone(),
            message: "created event node has no sequence suffix".into(),
        })?;
        let due = {
            let oldest = self.oldest.lock().expect("events lock poisoned");
            match *oldest {
                Some(o) => seq.saturating_sub(o) as usize + 1 > self.limit + self.slack(),
                None => true,
            }
        };
        if due {
            self.trim(fence).await?;
        }
        Ok(seq)
    }

    async fn create(
        &self,
        prefix: &str,
        data: &[u8],
        fence: Option<&Fence>,
    ) -> Result<String, CoordError> {
        match fence {
            // Without a fence a plain create is enough (and works on a 3.4
            // server, whose multi cannot carry a create from our client).
            None => {
                self.coord
                    .create(prefix, data, CreateMode::PersistentSequential)
                    .await
            }
            Some(fence) => {
                let ops = vec![
                    fence.op(),
                    Op::create(prefix, data.to_vec(), CreateMode::PersistentSequential),
                ];
                match self.coord.multi(ops).await?.pop() {
                    Some(OpResult::Created(path)) => Ok(path),
                    other => Err(CoordError::Backend(format!(
                        "unexpected multi result {other:?}"
                    ))),
                }
            }
        }
    }

    /// Sequence numbers stored now, ascending.
    async fn seqs(&self) -> Result<Vec<u64>, CoordError> {
        let mut seqs: Vec<u64> = match self.coord.children(&self.dir).await {
            Ok(names) => names.iter().filter_map(|n| parse_seq(n)).collect(),
            Err(CoordError::NoNode(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Delete all but the newest `limit` events.
    pub async fn trim(&self, fence: Option<&Fence>) -> Result<(), StoreError> {
        let seqs = self.seqs().await?;
        let excess = seqs.len().saturating_sub(self.limit);
        for batch in seqs[..excess].chunks(TRIM_BATCH) {
            let mut ops: Vec<Op> = fence.map(Fence::op).into_iter().collect();
            ops.extend(batch.iter().map(|s| Op::delete(self.path(*s), Expect::Any)));
            match self.coord.multi(ops).await {
                Ok(_) => {}
                // Someone trimmed concurrently: fall back to one at a time,
                // skipping what is already gone.
                Err(CoordError::MultiFailed { error, .. })
                    if matches!(*error, CoordError::NoNode(_)) =>
                {
                    for s in batch {
                        let mut ops: Vec<Op> = fence.map(Fence::op).into_iter().collect();
                        ops.push(Op::delete(self.path(*s), Expect::Any));
                        match self.coord.multi(ops).await {
                            Ok(_) => {}
                            Err(CoordError::MultiFailed { index, error })
                                if matches!(*error, CoordError::NoNode(_))
                                    && index == usize::from(fence.is_some()) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        *self.oldest.lock().expect("events lock poisoned") = seqs.get(excess).copied();
        Ok(())
    }

    /// The newest `limit` events, oldest first, optionally only those of one
    /// object (`"Kind/name"`).
    pub async fn list(&self, object: Option<&str>) -> Result<Vec<EventRecord>, StoreError> {
        let seqs = self.seqs().await?;
        let newest = &seqs[seqs.len().saturating_sub(self.limit)..];
        let mut out = Vec::new();
        for &seq in newest {
            let path = self.path(seq);
            let event = match self.coord.get(&path).await {
                Ok((data, _)) => decode(&path, &data)?,
                // Trimmed between the listing and the read.
                Err(CoordError::NoNode(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            if object.is_none_or(|o| o == event.object) {
                out.push(EventRecord { seq, event });
            }
        }
        Ok(out)
    }

    /// Events in commit order as they are recorded: first those stored after
    /// `after` (all stored ones for `None`), then each new one. Built on a
    /// re-armed children watch; ends after an error it cannot retry (the
    /// session ended).
    pub fn watch(
        &self,
        object: Option<String>,
        after: Option<u64>,
    ) -> impl Stream<Item = Result<EventRecord, StoreError>> + Send + 'static {
        let state = WatchState {
            events: self.clone(),
            object,
            last: after,
            pending: VecDeque::new(),
            watch: None,
            done: false,
        };
        futures::stream::unfold(state, |mut st| async move {
            let item = st.next().await?;
            Some((item, st))
        })
    }
}

struct WatchState {
    events: Events,
    object: Option<String>,
    last: Option<u64>,
    pending: VecDeque<u64>,
    watch: Option<Watch>,
    done: bool,
}

impl WatchState {
    async fn next(&mut self) -> Option<Result<EventRecord, StoreError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(seq) = self.pending.pop_front() {
                let path = self.events.path(seq);
                match self.events.coord.get(&path).await {
                    Ok((data, _)) => {
                        self.last = Some(seq);
                        match decode(&path, &data) {
                            Ok(event)
                                if self.object.as_ref().is_none_or(|o| *o == event.object) =>
                            {
                                return Some(Ok(EventRecord { seq, event }));
                            }
                            Ok(_) => continue,
                            Err(e) => return Some(Err(e)),
                        }
                    }
                    // Trimmed before we got to it.
                    Err(CoordError::NoNode(_)) => {
                        self.last = Some(seq);
                        continue;
                    }
                    Err(e) => {
                        self.pending.push_front(seq);
                        return Some(self.failed(e).await);
                    }
                }
            }
            if let Some(watch) = self.watch.take() {
                match watch.await {
                    WatchEvent::SessionExpired => {
                        return Some(self.failed(CoordError::SessionExpired).await);
                    }
                    WatchEvent::SessionClosed => {
                        return Some(self.failed(CoordError::SessionClosed).await);
                    }
                    _ => {}
                }
            }
            // Re-arm first, then read what is new: nothing can slip between.
            match detached::children_watch(&self.events.coord, &self.events.dir).await {
                Ok((names, watch)) => {
                    self.watch = Some(watch);
                    let mut seqs: Vec<u64> = names
                        .iter()
                        .filter_map(|n| parse_seq(n))
                        .filter(|s| self.last.is_none_or(|l| *s > l))
                        .collect();
                    seqs.sort_unstable();
                    self.pending.extend(seqs);
                }
                Err(CoordError::NoNode(_)) => {
                    // No event yet; the directory appears with the first one.
                    match detached::exists_watch(&self.events.coord, &self.events.dir).await {
                        Ok((None, watch)) => self.watch = Some(watch),
                        Ok((Some(_), _)) => {}
                        Err(e) => return Some(self.failed(e).await),
                    }
                }
                Err(e) => return Some(self.failed(e).await),
            }
        }
    }

    /// Report an error; the stream ends if the session is gone, otherwise it
    /// carries on after a pause.
    async fn failed(&mut self, e: CoordError) -> Result<EventRecord, StoreError> {
        if e.is_session_lost() {
            self.done = true;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(e.into())
    }
}

#[cfg(test)]
mod tests {
    use coord::MemEnsemble;
    use futures::StreamExt;

    use super::*;
    use crate::runtime::leader::LeaderElection;

    #[tokio::test]
    async fn events_round_trip_filter_and_stay_bounded() {
        let ens = MemEnsemble::new();
        let events = Events::new(ens.connect()).with_limit(20);
        for i in 0..75 {
            let object = if i % 3 == 0 {
                "ManateeVersion/sdc"
            } else {
                "ShardTopology/1"
            };
            let e = Event::normal(object, "StepStarted", format!("event {i}"))
                .with_operation("op-1")
                .with_step(format!("step-{i}"));
            events.record(&e, None).await.unwrap();
        }
        let stored = ens.connect().children(&default_dir()).await.unwrap().len();
        assert!(stored <= 20 + 2, "{stored} stored");
        let all = events.list(None).await.unwrap();
        assert_eq!(all.len(), 20);
        let messages: Vec<String> = all.iter().map(|r| r.event.message.clone()).collect();
        let want: Vec<String> = (55..75).map(|i| format!("event {i}")).collect();
        assert_eq!(messages, want, "newest 20, oldest first");
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        let sdc = events.list(Some("ManateeVersion/sdc")).await.unwrap();
        assert!(sdc.iter().all(|r| r.event.object == "ManateeVersion/sdc"));
        assert_eq!(sdc.len(), (55..75).filter(|i| i % 3 == 0).count());
        let e = &sdc[0].event;
        assert_eq!(e.operation.as_deref(), Some("op-1"));
        assert!(
            time::OffsetDateTime::parse(&e.time, &time::format_description::well_known::Rfc3339)
                .is_ok()
        );
        let json = serde_json::to_value(e).unwrap();
        assert_eq!(json["type"], "Normal");
    }

    #[tokio::test]
    async fn fenced_events_need_the_fence() {
        let ens = MemEnsemble::new();
        let a = ens.connect();
        let leadership = LeaderElection::new(a.clone(), "a")
            .campaign()
            .await
            .unwrap();
        let events = Events::new(a.clone());
        events
            .record(
                &Event::normal("X/y", "R", "fenced"),
                Some(leadership.fence()),
            )
            .await
            .unwrap();
        let stale = Fence {
            path: format!(
                "{}/candidate-0000000099",
                crate::runtime::leader::default_dir()
            ),
        };
        let err = events
            .record(&Event::warning("X/y", "R", "stale"), Some(&stale))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Coord(e) if matches!(e.root(), CoordError::NoNode(_))),
            "{err:?}"
        );
        let listed = events.list(None).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].event.message, "fenced");
    }

    #[tokio::test]
    async fn watch_streams_existing_then_new_events_in_order() {
        let ens = MemEnsemble::new();
        let writer = Events::new(ens.connect());
        let reader = Events::new(ens.connect());
        // The directory does not exist yet: the watch waits for it.
        let mut all = Box::pin(reader.watch(None, None));
        let mut sdc = Box::pin(reader.watch(Some("ManateeVersion/sdc".into()), None));
        for i in 0..3 {
            writer
                .record(
                    &Event::normal("ManateeVersion/sdc", "R", format!("m{i}")),
                    None,
                )
                .await
                .unwrap();
            writer
                .record(&Event::normal("Other/x", "R", format!("o{i}")), None)
                .await
                .unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..6 {
            let r = tokio::time::timeout(Duration::from_secs(5), all.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            got.push(r.event.message);
        }
        assert_eq!(got, ["m0", "o0", "m1", "o1", "m2", "o2"]);
        let mut got = Vec::new();
        for _ in 0..3 {
            let r = tokio::time::timeout(Duration::from_secs(5), sdc.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            got.push(r.event.message);
        }
        assert_eq!(got, ["m0", "m1", "m2"]);
        // Resume after a sequence number.
        let listed = reader.list(None).await.unwrap();
        let mut resumed = Box::pin(reader.watch(None, Some(listed[3].seq)));
        let r = tokio::time::timeout(Duration::from_secs(5), resumed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(r.event.message, "m2");
        writer
            .record(&Event::warning("Other/x", "R", "late"), None)
            .await
            .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), all.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(r.event.message, "late");
        assert_eq!(r.event.event_type, EventType::Warning);
    }
}
