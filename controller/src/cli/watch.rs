//! Watching from the command line: `events -w`, `get -w` and `wait`.
//!
//! Everything here is driven by ZooKeeper watches through the
//! [`Coordination`] trait, never by polling: a watch is armed before the
//! value it guards is read, so a change between the read and the wait
//! fires the watch and is seen on the next round.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use coord::{CoordError, Coordination, WatchEvent};
use crds::{ConditionStatus, ConditionType, Document, Kind};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::listing::{self, Listing, Output};
use super::output::{self, Pauses};
use super::{EXIT_ERROR, EXIT_INVALID, Failure};
use crate::pause::{self, PauseMarker};
use crate::runtime::detached;
use crate::runtime::events::{EventRecord, Events};
use crate::store::{Store, document_path, kind_dir, status_path};

type Fired = Pin<Box<dyn Future<Output = (String, WatchEvent)> + Send>>;

/// A set of armed one-shot watches, each re-armed only after it fired.
struct Watches {
    coord: Arc<dyn Coordination>,
    armed: HashSet<String>,
    pending: FuturesUnordered<Fired>,
}

fn session_lost(event: WatchEvent) -> Option<CoordError> {
    match event {
        WatchEvent::SessionExpired => Some(CoordError::SessionExpired),
        WatchEvent::SessionClosed => Some(CoordError::SessionClosed),
        _ => None,
    }
}

fn coord_failure(e: CoordError) -> Failure {
    if e.is_session_lost() {
        Failure::error(format!(
            "the store session ended ({e}); run the command again"
        ))
    } else {
        Failure::error(e.to_string())
    }
}

impl Watches {
    fn new(coord: Arc<dyn Coordination>) -> Watches {
        Watches {
            coord,
            armed: HashSet::new(),
            pending: FuturesUnordered::new(),
        }
    }

    fn push(&mut self, id: String, watch: coord::Watch) {
        self.pending
            .push(Box::pin(async move { (id, watch.await) }));
    }

    /// Watch a node for creation, change and deletion (once armed, until it fires).
    async fn node(&mut self, path: &str) -> Result<(), Failure> {
        if self.armed.contains(path) {
            return Ok(());
        }
        let (_, watch) = detached::exists_watch(&self.coord, path)
            .await
            .map_err(coord_failure)?;
        self.armed.insert(path.to_string());
        self.push(path.to_string(), watch);
        Ok(())
    }

    /// The children of `dir`, with a watch on them armed first.
    async fn children(&mut self, dir: &str) -> Result<Vec<String>, Failure> {
        let id = format!("children:{dir}");
        let mut names = if self.armed.contains(&id) {
            self.coord.children(dir).await.map_err(coord_failure)?
        } else {
            let (names, watch) = detached::children_watch(&self.coord, dir)
                .await
                .map_err(coord_failure)?;
            self.armed.insert(id.clone());
            self.push(id, watch);
            names
        };
        names.sort();
        Ok(names)
    }

    /// Wait for the next watch to fire; a session that ended is an error.
    async fn next(&mut self) -> Result<(), Failure> {
        match self.pending.next().await {
            Some((id, event)) => {
                self.armed.remove(&id);
                match session_lost(event) {
                    Some(e) => Err(coord_failure(e)),
                    None => Ok(()),
                }
            }
            // Nothing armed: nothing can ever change what we wait for.
            None => std::future::pending().await,
        }
    }
}

/// One event as a line (the layout of `tritonctl events`).
pub fn event_line(r: &EventRecord) -> String {
    let e = &r.event;
    format!(
        "{}  {:<7} {:<28} {:<18} {}",
        e.time,
        e.event_type.as_str(),
        e.object,
        e.reason,
        e.message
    )
}

/// The columns of `events` (the first five are the plain table's).
pub const EVENT_COLUMNS: [&str; 7] = [
    "TIME",
    "TYPE",
    "OBJECT",
    "REASON",
    "MESSAGE",
    "OPERATION",
    "STEP",
];
pub const EVENT_NARROW: usize = 5;
const EVENT_WIDTHS: [usize; 7] = [20, 7, 28, 18, 40, 24, 16];

fn event_row(r: &EventRecord) -> Vec<String> {
    let e = &r.event;
    vec![
        e.time.clone(),
        e.event_type.as_str().to_string(),
        e.object.clone(),
        e.reason.clone(),
        e.message.clone(),
        e.operation.clone().unwrap_or_else(|| "-".into()),
        e.step.clone().unwrap_or_else(|| "-".into()),
    ]
}

fn event_value(r: &EventRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(&r.event).expect("events serialize");
    if let Some(m) = v.as_object_mut() {
        m.insert("seq".into(), r.seq.into());
    }
    v
}

/// What `events` shows of some events (`-o name`: `event/SEQ`).
pub fn event_listing(records: &[EventRecord], _wide: bool) -> Listing {
    Listing {
        columns: &EVENT_COLUMNS,
        narrow: EVENT_NARROW,
        rows: records.iter().map(event_row).collect(),
        names: records.iter().map(|r| format!("event/{}", r.seq)).collect(),
        value: serde_json::json!({"kind": "List", "items": records.iter().map(event_value).collect::<Vec<_>>()}),
    }
}

/// One event as `events -w` prints it in `format` (one line, or one YAML document).
fn event_shown(r: &EventRecord, format: &Output, idx: &[usize]) -> String {
    match format {
        Output::Table => event_line(r),
        Output::Wide | Output::Columns(_) => {
            let widths: Vec<usize> = idx.iter().map(|&i| EVENT_WIDTHS[i]).collect();
            listing::fixed_row(&listing::pick(&event_row(r), idx), &widths)
        }
        Output::Json => serde_json::to_string(&event_value(r)).expect("events serialize"),
        Output::Yaml => format!("---\n{}", listing::to_yaml(&event_value(r)).trim_end()),
        Output::Name => format!("event/{}", r.seq),
        Output::JsonPath(p) => p.render(&event_value(r)).trim_end().to_string(),
    }
}

/// `tritonctl events -w`: the stored events, then each new one as it is
/// recorded, until interrupted or the session ends.
pub async fn events_watch(
    store: &Store,
    object: Option<String>,
    format: &Output,
    no_headers: bool,
) -> Result<(), Failure> {
    let idx = listing::columns(&EVENT_COLUMNS, EVENT_NARROW, format)?;
    if format.is_rows() && !no_headers {
        let header: Vec<String> = idx.iter().map(|&i| EVENT_COLUMNS[i].to_string()).collect();
        let line = match format {
            Output::Table => format!(
                "{:<20}  {:<7} {:<28} {:<18} {}",
                header[0], header[1], header[2], header[3], header[4]
            ),
            _ => {
                let widths: Vec<usize> = idx.iter().map(|&i| EVENT_WIDTHS[i]).collect();
                listing::fixed_row(&header, &widths)
            }
        };
        println!("{}", line.trim_end());
    }
    let events = Events::new(store.coord().clone());
    let mut stream = Box::pin(events.watch(object, None));
    while let Some(item) = stream.next().await {
        match item {
            Ok(r) => println!("{}", event_shown(&r, format, &idx)),
            Err(crate::store::StoreError::Coord(e)) if e.is_session_lost() => {
                return Err(coord_failure(e));
            }
            // Transient (connection loss): the stream retries by itself.
            Err(e) => eprintln!("warning: {e}; still watching"),
        }
    }
    Err(Failure::error("the event stream ended"))
}

const DOC_WIDTHS: [usize; 8] = [24, 10, 8, 7, 11, 14, 30, 40];

/// A document as `get -w` prints it in `format`: a row of the chosen
/// columns, one JSON line, one YAML document, its name or a JSONPath's
/// result. A row is printed again only when this text changes (a status
/// rewrite that changes nothing shown prints nothing).
fn doc_shown(
    doc: &Document,
    marker: Option<&PauseMarker>,
    format: &Output,
    idx: &[usize],
) -> String {
    match format {
        Output::Table | Output::Wide | Output::Columns(_) => {
            let row = output::doc_row(doc, marker, matches!(format, Output::Wide));
            let widths: Vec<usize> = idx.iter().map(|&i| DOC_WIDTHS[i]).collect();
            listing::fixed_row(&listing::pick(&row, idx), &widths)
        }
        Output::Json => serde_json::to_string(&doc.to_value()).expect("documents serialize"),
        Output::Yaml => format!("---\n{}", output::to_yaml(&doc.to_value()).trim_end()),
        Output::Name => output::doc_name(doc),
        Output::JsonPath(p) => p.render(&doc.to_value()).trim_end().to_string(),
    }
}

/// `tritonctl get -w KIND [NAME]`: print the current rows, then a row again
/// each time what it shows of a document (its status, its pause marker)
/// changes, and `NAME deleted` when a document goes away. Table rows use
/// fixed widths; `-o json` prints one document per line, `-o yaml` one YAML
/// document each.
pub async fn get_watch(
    store: &Store,
    kind: Kind,
    name: Option<&str>,
    format: &Output,
    no_headers: bool,
) -> Result<(), Failure> {
    let coord = store.coord().clone();
    let mut watches = Watches::new(coord.clone());
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut first = true;
    let idx = listing::columns(&output::DOC_COLUMNS, output::DOC_NARROW, format)?;
    if format.is_rows() && !no_headers {
        let header: Vec<String> = idx
            .iter()
            .map(|&i| output::DOC_COLUMNS[i].to_string())
            .collect();
        let widths: Vec<usize> = idx.iter().map(|&i| DOC_WIDTHS[i]).collect();
        println!("{}", listing::fixed_row(&header, &widths));
    }
    loop {
        let names = match name {
            Some(n) => vec![n.to_string()],
            None => watches.children(&kind_dir(kind)).await?,
        };
        for n in &names {
            watches.node(&document_path(kind, n)).await?;
            watches.node(&status_path(kind, n)).await?;
            watches.node(&pause::pause_path(kind, n)).await?;
        }
        for n in &names {
            let doc = store.get(kind, n).await?;
            let marker = pause::get(&coord, kind, n).await?;
            match doc {
                Some(doc) => {
                    let shown = doc_shown(&doc, marker.as_ref(), format, &idx);
                    if last.get(n) != Some(&shown) {
                        println!("{shown}");
                        last.insert(n.clone(), shown);
                    }
                }
                None if first && name.is_some() => {
                    return Err(super::objref::not_found(kind, n));
                }
                None => {
                    if last.remove(n).is_some() {
                        println!("{n} deleted");
                    }
                }
            }
        }
        // Documents that left the listing.
        let gone: Vec<String> = last
            .keys()
            .filter(|k| !names.contains(k))
            .cloned()
            .collect();
        for n in gone {
            last.remove(&n);
            println!("{n} deleted");
        }
        first = false;
        watches.next().await?;
    }
}

/// What `wait --for` waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitFor {
    Condition(ConditionType, ConditionStatus),
    Delete,
}

impl WaitFor {
    /// `condition=Ready`, `condition=Blocked=false`, `delete`.
    pub fn parse(s: &str) -> Result<WaitFor, Failure> {
        let bad = || {
            Failure::error(format!(
                "--for={s}: expected condition=NAME[=True|False|Unknown] (NAME one of {}) or delete",
                ConditionType::ALL
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        if s.eq_ignore_ascii_case("delete") {
            return Ok(WaitFor::Delete);
        }
        let rest = s.strip_prefix("condition=").ok_or_else(bad)?;
        let (name, value) = match rest.split_once('=') {
            Some((n, v)) => (n, v),
            None => (rest, "true"),
        };
        let cond = ConditionType::parse(name).ok_or_else(bad)?;
        let value = match value.to_ascii_lowercase().as_str() {
            "true" => ConditionStatus::True,
            "false" => ConditionStatus::False,
            "unknown" => ConditionStatus::Unknown,
            _ => return Err(bad()),
        };
        Ok(WaitFor::Condition(cond, value))
    }

    fn describe(&self) -> String {
        match self {
            WaitFor::Condition(c, v) => format!("condition {}={v:?}", c.as_str()),
            WaitFor::Delete => "deletion".into(),
        }
    }
}

/// Where a document stands with respect to a `wait`.
fn standing(doc: &Document, cond: ConditionType, want: ConditionStatus) -> (bool, String) {
    let generation = doc.metadata().generation.unwrap_or(1);
    let Some(c) = doc.status().and_then(|s| s.condition(cond)) else {
        return (
            false,
            format!("{} not reported yet (not reconciled)", cond.as_str()),
        );
    };
    let mut now = format!("{}={:?}", cond.as_str(), c.status);
    if !c.reason.is_empty() {
        now += &format!(" ({}", c.reason);
        if !c.message.is_empty() {
            now += &format!(": {}", c.message);
        }
        now += ")";
    }
    // A condition about an older spec says nothing about this one: after an
    // apply, `Ready=True` of the previous generation must not end the wait.
    if let Some(g) = c.observed_generation
        && g < generation
    {
        return (
            false,
            format!("{now}, but for generation {g}; the current generation is {generation}"),
        );
    }
    (c.status == want, now)
}

/// The Degraded condition of the current generation: the controller met an
/// error reconciling it.
fn degraded(doc: &Document) -> Option<String> {
    let generation = doc.metadata().generation.unwrap_or(1);
    let c = doc.status()?.condition(ConditionType::Degraded)?;
    (c.status == ConditionStatus::True && c.observed_generation.is_none_or(|g| g >= generation))
        .then(|| format!("Degraded ({}: {})", c.reason, c.message))
}

/// `tritonctl wait`: `Ok(())` when met, `Failure` with exit code 1 on timeout
/// and 2 on any other error (a Degraded document among them). Progress goes to standard error whenever the
/// state changes, so a long wait shows what it is waiting on.
pub async fn wait(
    store: &Store,
    kind: Kind,
    name: &str,
    what: &WaitFor,
    timeout: Duration,
) -> Result<String, Failure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let object = format!("{kind}/{name}");
    let mut last_state = String::new();
    let run = async {
        let mut watches = Watches::new(store.coord().clone());
        loop {
            watches.node(&document_path(kind, name)).await?;
            watches.node(&status_path(kind, name)).await?;
            let doc = store.get(kind, name).await.map_err(|e| Failure {
                code: EXIT_ERROR,
                message: e.to_string(),
            })?;
            let (met, state) = match (what, &doc) {
                (WaitFor::Delete, None) => (true, "deleted".to_string()),
                (WaitFor::Delete, Some(d)) => (
                    false,
                    format!(
                        "exists (resourceVersion {})",
                        d.metadata().resource_version.as_deref().unwrap_or("-")
                    ),
                ),
                (WaitFor::Condition(..), None) => {
                    return Err(Failure::error(format!(
                        "{object} does not exist{}; apply it first (`tritonctl get {}` lists what is stored)",
                        if last_state.is_empty() {
                            ""
                        } else {
                            " any more (deleted while waiting)"
                        },
                        kind.short()
                    )));
                }
                (WaitFor::Condition(c, v), Some(d)) => standing(d, *c, *v),
            };
            if met {
                return Ok(state);
            }
            // A reconcile that fails on this generation will not meet the
            // condition by waiting: say why and stop.
            if let (WaitFor::Condition(c, _), Some(d)) = (what, &doc)
                && *c != ConditionType::Degraded
                && let Some(why) = degraded(d)
            {
                return Err(Failure::error(format!(
                    "{object} will not reach {} by waiting: {why} (`tritonctl describe {object}` and `tritonctl events {object}` say more)",
                    what.describe()
                )));
            }
            if state != last_state {
                eprintln!("{object}: {state}; waiting for {}", what.describe());
                last_state = state;
            }
            // Only the waiting is bounded by --timeout: a condition that
            // already holds is met even with `--timeout 0s`.
            match tokio::time::timeout_at(deadline, watches.next()).await {
                Ok(r) => r?,
                Err(_) => return Err(wait_timed_out(&object, what, timeout)),
            }
        }
    };
    run.await
}

fn wait_timed_out(object: &str, what: &WaitFor, timeout: Duration) -> Failure {
    Failure {
        code: EXIT_INVALID,
        message: format!(
            "timed out after {} waiting for {object} {}",
            humantime(timeout),
            what.describe()
        ),
    }
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Pause markers of the named documents, for `get`.
pub async fn pauses(store: &Store, kind: Kind, names: &[&str]) -> Result<Pauses, Failure> {
    let mut out = Pauses::new();
    for n in names {
        if let Some(m) = pause::get(store.coord(), kind, n).await? {
            out.insert(n.to_string(), m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_parses_conditions_values_and_delete() {
        assert_eq!(
            WaitFor::parse("condition=Ready").unwrap(),
            WaitFor::Condition(ConditionType::Ready, ConditionStatus::True)
        );
        assert_eq!(
            WaitFor::parse("condition=blocked=False").unwrap(),
            WaitFor::Condition(ConditionType::Blocked, ConditionStatus::False)
        );
        assert_eq!(WaitFor::parse("delete").unwrap(), WaitFor::Delete);
        for bad in ["Ready", "condition=Nope", "condition=Ready=maybe", "create"] {
            let e = WaitFor::parse(bad).unwrap_err();
            assert_eq!(e.code, EXIT_ERROR);
            assert!(e.message.contains("condition=NAME"), "{}", e.message);
        }
    }

    #[test]
    fn durations_print_as_given() {
        assert_eq!(humantime(Duration::from_secs(600)), "10m");
        assert_eq!(humantime(Duration::from_secs(90)), "90s");
        assert_eq!(humantime(Duration::from_millis(1500)), "1500ms");
    }
}
