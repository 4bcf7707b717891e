//! Trigger sources: what tells the queue "look at this key again".
//!
//! - ZooKeeper watches on the document directories (one key per document),
//!   and on arbitrary extra paths mapped to a key (a reconciler registers
//!   `/manatee/<shard>/state` and `/manatee/<shard>/election` for its
//!   `ManateeVersion` key).
//! - Pollers for APIs without watches (SAPI, VMAPI): fetch a fingerprint
//!   every interval, trigger when it changes.
//!
//! ZooKeeper watches are one-shot. After one fires we re-arm it and only then
//! emit the key: a change between the fire and the re-arm is seen by the
//! reconcile the key starts (which reads after the re-arm), and any later
//! change fires the new watch. Directory watches re-list on every re-arm, so
//! documents created or deleted meanwhile are picked up.
//!
//! Everything stops when the session ends (the controller restarts with a
//! new session) or when the last [`Triggers`] handle is dropped.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use coord::{CoordError, Coordination, Watch, WatchEvent};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::detached;
use crate::store::kind_dir;

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A stable fingerprint of a value, for [`Triggers::poll`].
pub fn fingerprint<T: Hash + ?Sized>(value: &T) -> u64 {
    // SipHash with fixed keys: stable within a process, which is all a
    // change detector needs.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Keys from every source registered on a [`Triggers`]; feed it to
/// [`super::Controller::run`]. Ends when every [`Triggers`] handle is gone.
pub struct TriggerStream {
    rx: mpsc::UnboundedReceiver<String>,
}

impl Stream for TriggerStream {
    type Item = String;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>> {
        self.rx.poll_recv(cx)
    }
}

struct Inner {
    coord: Arc<dyn Coordination>,
    tx: mpsc::UnboundedSender<String>,
    stop: CancellationToken,
    dirs: Mutex<HashSet<String>>,
    paths: Mutex<HashMap<(String, String), CancellationToken>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Registers trigger sources. Cheap to clone (reconcilers keep one to
/// register the paths they care about); sources stop when the last clone is
/// dropped.
#[derive(Clone)]
pub struct Triggers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Triggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Triggers")
            .field("dirs", &*self.inner.dirs.lock().expect("triggers lock"))
            .field(
                "paths",
                &self.inner.paths.lock().expect("triggers lock").len(),
            )
            .finish()
    }
}

/// A key sender that stops its source once the stream is gone.
#[derive(Clone)]
struct Emit {
    tx: mpsc::UnboundedSender<String>,
}

impl Emit {
    /// False when nobody listens any more.
    fn send(&self, key: &str) -> bool {
        self.tx.send(key.to_string()).is_ok()
    }
}

fn is_terminal(event: WatchEvent) -> bool {
    matches!(
        event,
        WatchEvent::SessionExpired | WatchEvent::SessionClosed
    )
}

/// Exponential pause between retries of a failed (non-terminal) call.
struct Retry(Duration);

impl Retry {
    fn new() -> Retry {
        Retry(RETRY_MIN)
    }
    fn reset(&mut self) {
        self.0 = RETRY_MIN;
    }
    /// Sleep, unless stopped first (then false).
    async fn pause(&mut self, stop: &CancellationToken) -> bool {
        let d = self.0;
        self.0 = (self.0 * 2).min(RETRY_MAX);
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

/// Wait for an armed watch, or forever when there is none.
async fn fired(watch: &mut Option<Watch>) -> WatchEvent {
    match watch.as_mut() {
        Some(w) => {
            let event = w.await;
            *watch = None;
            event
        }
        None => std::future::pending().await,
    }
}

impl Triggers {
    pub fn new(coord: Arc<dyn Coordination>) -> (Triggers, TriggerStream) {
        let (tx, rx) = mpsc::unbounded_channel();
        let triggers = Triggers {
            inner: Arc::new(Inner {
                coord,
                tx,
                stop: CancellationToken::new(),
                dirs: Mutex::default(),
                paths: Mutex::default(),
            }),
        };
        (triggers, TriggerStream { rx })
    }

    fn emit(&self) -> Emit {
        Emit {
            tx: self.inner.tx.clone(),
        }
    }

    /// Trigger a key by hand.
    pub fn trigger(&self, key: impl Into<String>) {
        let _ = self.inner.tx.send(key.into());
    }

    /// One key per stored document of `kind` (`"<Kind>/<name>"`), on
    /// create, change and delete, and once for each at start.
    pub fn watch_documents(&self, kind: crds::Kind) {
        self.watch_dir(&kind_dir(kind), kind.as_str());
    }

    /// Watch the children of `dir` and each child's data; a change of child
    /// `name` emits `"<key_prefix>/<name>"`. Registering a directory twice
    /// is a no-op.
    pub fn watch_dir(&self, dir: &str, key_prefix: &str) {
        if !self
            .inner
            .dirs
            .lock()
            .expect("triggers lock")
            .insert(dir.to_string())
        {
            return;
        }
        tokio::spawn(watch_dir(
            self.inner.coord.clone(),
            dir.to_string(),
            key_prefix.to_string(),
            self.emit(),
            self.inner.stop.clone(),
        ));
    }

    /// Emit `key` when `path` is created, changed or deleted, or its children
    /// change (and once now). Registering the same pair twice is a no-op;
    /// returns whether it was new.
    pub fn watch_path(&self, path: &str, key: &str) -> bool {
        let mut paths = self.inner.paths.lock().expect("triggers lock");
        let id = (path.to_string(), key.to_string());
        if paths.get(&id).is_some_and(|t| !t.is_cancelled()) {
            return false;
        }
        let stop = self.inner.stop.child_token();
        paths.insert(id, stop.clone());
        tokio::spawn(watch_path(
            self.inner.coord.clone(),
            path.to_string(),
            key.to_string(),
            self.emit(),
            stop,
        ));
        true
    }

    /// Stop watching `path` for `key`.
    pub fn unwatch_path(&self, path: &str, key: &str) {
        let id = (path.to_string(), key.to_string());
        if let Some(t) = self.inner.paths.lock().expect("triggers lock").remove(&id) {
            t.cancel();
        }
    }

    /// Paths watched for `key`, sorted.
    pub fn watched_paths(&self, key: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .paths
            .lock()
            .expect("triggers lock")
            .keys()
            .filter(|(_, k)| k == key)
            .map(|(p, _)| p.clone())
            .collect();
        v.sort();
        v
    }

    /// Every `interval`, fetch a fingerprint and emit `key` when it differs
    /// from the previous one (see [`poll_stream`]).
    pub fn poll<F, Fut, T, E>(&self, interval: Duration, key: impl Into<String>, fetch: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: PartialEq + Send + 'static,
        E: Display + Send + 'static,
    {
        let stream = poll_stream(interval, key, fetch);
        let emit = self.emit();
        let stop = self.inner.stop.clone();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    key = stream.next() => match key {
                        Some(key) if emit.send(&key) => {}
                        _ => return,
                    },
                }
            }
        });
    }
}

/// Every `interval` (the first fetch at once), call `fetch`; yield `key`
/// whenever the fingerprint differs from the last one fetched. The first
/// fingerprint is the baseline and yields nothing; a failed fetch is logged
/// and leaves the baseline alone.
pub fn poll_stream<F, Fut, T, E>(
    interval: Duration,
    key: impl Into<String>,
    fetch: F,
) -> impl Stream<Item = String> + Send + 'static
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: PartialEq + Send + 'static,
    E: Display + Send + 'static,
{
    let key = key.into();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (fetch, None::<T>, ticker);
    futures::stream::unfold(state, move |(mut fetch, mut last, mut ticker)| {
        let key = key.clone();
        async move {
            loop {
                ticker.tick().await;
                match fetch().await {
                    Ok(fp) => {
                        let changed = last.as_ref().is_some_and(|l| *l != fp);
                        last = Some(fp);
                        if changed {
                            return Some((key, (fetch, last, ticker)));
                        }
                    }
                    Err(e) => tracing::debug!(key = %key, error = %e, "poll failed"),
                }
            }
        }
    })
}

/// Children of `dir` become keys; each child gets its own data watcher.
async fn watch_dir(
    coord: Arc<dyn Coordination>,
    dir: String,
    prefix: String,
    emit: Emit,
    stop: CancellationToken,
) {
    let mut docs: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut retry = Retry::new();
    let key = |name: &str| format!("{prefix}/{name}");
    'outer: loop {
        let listed = tokio::select! {
            _ = stop.cancelled() => break,
            r = detached::children_watch(&coord, &dir) => r,
        };
        let watch = match listed {
            Ok((names, watch)) => {
                retry.reset();
                let names: HashSet<String> = names.into_iter().collect();
                let mut gone = Vec::new();
                docs.retain(|name, handle| {
                    let keep = names.contains(name);
                    if !keep {
                        handle.abort();
                        gone.push(name.clone());
                    }
                    keep
                });
                for name in gone {
                    if !emit.send(&key(&name)) {
                        break 'outer;
                    }
                }
                for name in names {
                    // A watcher that ended saw its node vanish; the name is
                    // back (deleted and re-created), so watch it again.
                    if docs.get(&name).is_some_and(|h| !h.is_finished()) {
                        continue;
                    }
                    let handle = tokio::spawn(watch_node(
                        coord.clone(),
                        format!("{dir}/{name}"),
                        key(&name),
                        emit.clone(),
                        stop.clone(),
                    ));
                    docs.insert(name, handle);
                }
                watch
            }
            // Not there yet (no document of the kind ever stored): wait for
            // the directory to appear.
            Err(CoordError::NoNode(_)) => match detached::exists_watch(&coord, &dir).await {
                Ok((None, watch)) => watch,
                Ok((Some(_), _)) => continue,
                Err(e) if e.is_session_lost() => break,
                Err(_) => {
                    if retry.pause(&stop).await {
                        continue;
                    }
                    break;
                }
            },
            Err(e) if e.is_session_lost() => break,
            Err(e) => {
                tracing::debug!(dir = %dir, error = %e, "listing failed; retrying");
                if retry.pause(&stop).await {
                    continue;
                }
                break;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            event = watch => if is_terminal(event) { break },
        }
    }
    for handle in docs.values() {
        handle.abort();
    }
}

/// One document node: emit on every change and when it goes away.
async fn watch_node(
    coord: Arc<dyn Coordination>,
    path: String,
    key: String,
    emit: Emit,
    stop: CancellationToken,
) {
    let mut retry = Retry::new();
    loop {
        let armed = tokio::select! {
            _ = stop.cancelled() => return,
            r = detached::exists_watch(&coord, &path) => r,
        };
        let watch = match armed {
            Ok((Some(_), watch)) => {
                retry.reset();
                watch
            }
            Ok((None, _)) => {
                // Deleted: the directory watcher takes over from here.
                emit.send(&key);
                return;
            }
            Err(e) if e.is_session_lost() => return,
            Err(_) => {
                if retry.pause(&stop).await {
                    continue;
                }
                return;
            }
        };
        // Armed, so everything after this read fires it again.
        if !emit.send(&key) {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            event = watch => if is_terminal(event) { return },
        }
    }
}

/// An extra path: its existence and data (exists watch, which also sees it
/// being created) and, while it exists, its children.
async fn watch_path(
    coord: Arc<dyn Coordination>,
    path: String,
    key: String,
    emit: Emit,
    stop: CancellationToken,
) {
    let mut retry = Retry::new();
    let mut data: Option<Watch> = None;
    let mut children: Option<Watch> = None;
    loop {
        // Re-arm only what fired; the other watch is still armed.
        let mut exists = true;
        if data.is_none() {
            let armed = tokio::select! {
                _ = stop.cancelled() => return,
                r = detached::exists_watch(&coord, &path) => r,
            };
            match armed {
                Ok((stat, watch)) => {
                    exists = stat.is_some();
                    data = Some(watch);
                }
                Err(e) if e.is_session_lost() => return,
                Err(_) => {
                    if retry.pause(&stop).await {
                        continue;
                    }
                    return;
                }
            }
        }
        if exists && children.is_none() {
            let armed = tokio::select! {
                _ = stop.cancelled() => return,
                r = detached::children_watch(&coord, &path) => r,
            };
            match armed {
                Ok((_, watch)) => children = Some(watch),
                // Deleted just now: the data watch has fired for that.
                Err(CoordError::NoNode(_)) => {}
                Err(e) if e.is_session_lost() => return,
                Err(_) => {
                    if retry.pause(&stop).await {
                        continue;
                    }
                    return;
                }
            }
        }
        retry.reset();
        if !emit.send(&key) {
            return;
        }
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = fired(&mut data) => e,
            e = fired(&mut children) => e,
        };
        if is_terminal(event) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use coord::{CreateMode, Expect, MemEnsemble};

    use super::*;

    /// Wait for `key`, skipping others; panics after 5 s.
    async fn expect_key(stream: &mut TriggerStream, key: &str) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(k) = stream.next().await {
                if k == key {
                    return;
                }
            }
            panic!("trigger stream ended");
        })
        .await
        .unwrap_or_else(|_| panic!("no trigger for {key}"));
    }

    /// Let in-flight emissions arrive, then discard them.
    async fn drain(stream: &mut TriggerStream) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(10), stream.next()).await
        {
        }
    }

    #[tokio::test]
    async fn document_changes_become_keys() {
        let ens = MemEnsemble::new();
        let admin = ens.connect();
        let (triggers, mut stream) = Triggers::new(ens.connect());
        // The directory does not exist yet.
        triggers.watch_documents(crds::Kind::ManateeVersion);
        triggers.watch_documents(crds::Kind::ManateeVersion);
        let dir = kind_dir(crds::Kind::ManateeVersion);
        tokio::time::sleep(Duration::from_millis(20)).await;
        admin.mkdirp(&dir).await.unwrap();
        let doc = format!("{dir}/sdc");
        admin
            .create(&doc, b"v1", CreateMode::Persistent)
            .await
            .unwrap();
        expect_key(&mut stream, "ManateeVersion/sdc").await;
        for i in 0..5 {
            drain(&mut stream).await;
            admin
                .set(&doc, format!("v{i}").as_bytes(), Expect::Any)
                .await
                .unwrap();
            expect_key(&mut stream, "ManateeVersion/sdc").await;
        }
        // A burst: at least one key after the last change.
        drain(&mut stream).await;
        for i in 0..20 {
            admin
                .set(&doc, format!("b{i}").as_bytes(), Expect::Any)
                .await
                .unwrap();
        }
        expect_key(&mut stream, "ManateeVersion/sdc").await;
        // A second document, a delete, a re-create.
        admin
            .create(&format!("{dir}/1.moray"), b"", CreateMode::Persistent)
            .await
            .unwrap();
        expect_key(&mut stream, "ManateeVersion/1.moray").await;
        drain(&mut stream).await;
        admin.delete(&doc, Expect::Any).await.unwrap();
        expect_key(&mut stream, "ManateeVersion/sdc").await;
        drain(&mut stream).await;
        admin
            .create(&doc, b"again", CreateMode::Persistent)
            .await
            .unwrap();
        expect_key(&mut stream, "ManateeVersion/sdc").await;
        drain(&mut stream).await;
        admin
            .set(&doc, b"changed after re-create", Expect::Any)
            .await
            .unwrap();
        expect_key(&mut stream, "ManateeVersion/sdc").await;
    }

    #[tokio::test]
    async fn existing_documents_trigger_at_start() {
        let ens = MemEnsemble::new();
        let admin = ens.connect();
        let dir = kind_dir(crds::Kind::ShardTopology);
        admin.mkdirp(&dir).await.unwrap();
        for name in ["a", "b"] {
            admin
                .create(&format!("{dir}/{name}"), b"", CreateMode::Persistent)
                .await
                .unwrap();
        }
        let (triggers, mut stream) = Triggers::new(ens.connect());
        triggers.watch_documents(crds::Kind::ShardTopology);
        let mut seen = HashSet::new();
        while seen.len() < 2 {
            let k = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .unwrap()
                .unwrap();
            seen.insert(k);
        }
        assert_eq!(
            seen,
            HashSet::from(["ShardTopology/a".to_string(), "ShardTopology/b".to_string()])
        );
    }

    #[tokio::test]
    async fn extra_paths_map_to_their_key() {
        let ens = MemEnsemble::new();
        let admin = ens.connect();
        let (triggers, mut stream) = Triggers::new(ens.connect());
        let key = "ManateeVersion/1.moray";
        let state = "/manatee/1.moray/state";
        let election = "/manatee/1.moray/election";
        assert!(triggers.watch_path(state, key));
        assert!(triggers.watch_path(election, key));
        assert!(!triggers.watch_path(state, key));
        assert_eq!(triggers.watched_paths(key), [election, state]);
        expect_key(&mut stream, key).await;
        drain(&mut stream).await;

        admin.mkdirp(election).await.unwrap();
        expect_key(&mut stream, key).await;
        admin
            .create(state, b"{}", CreateMode::Persistent)
            .await
            .unwrap();
        expect_key(&mut stream, key).await;
        drain(&mut stream).await;
        admin
            .set(state, b"{\"generation\":1}", Expect::Any)
            .await
            .unwrap();
        expect_key(&mut stream, key).await;
        drain(&mut stream).await;
        admin
            .create(
                &format!("{election}/peer-"),
                b"",
                CreateMode::EphemeralSequential,
            )
            .await
            .unwrap();
        expect_key(&mut stream, key).await;
        drain(&mut stream).await;
        admin
            .set(state, b"{\"generation\":2}", Expect::Any)
            .await
            .unwrap();
        expect_key(&mut stream, key).await;

        triggers.unwatch_path(state, key);
        triggers.unwatch_path(election, key);
        drain(&mut stream).await;
        admin
            .set(state, b"{\"generation\":3}", Expect::Any)
            .await
            .unwrap();
        let r = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
        assert!(r.is_err(), "unwatched path still triggers: {r:?}");
    }

    #[tokio::test]
    async fn session_expiry_stops_watchers() {
        let ens = MemEnsemble::new();
        let session = ens.connect();
        let (triggers, mut stream) = Triggers::new(session.clone());
        triggers.watch_path("/x", "K/x");
        expect_key(&mut stream, "K/x").await;
        ens.expire_session(session.session_id());
        tokio::time::sleep(Duration::from_millis(50)).await;
        ens.connect()
            .create("/x", b"", CreateMode::Persistent)
            .await
            .unwrap();
        drain(&mut stream).await;
        drop(triggers);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(1), stream.next())
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pollers_trigger_only_on_change() {
        let value = Arc::new(AtomicU64::new(1));
        let fetches = Arc::new(AtomicU64::new(0));
        let ens = MemEnsemble::new();
        let (triggers, mut stream) = Triggers::new(ens.connect());
        let (v, f) = (value.clone(), fetches.clone());
        triggers.poll(Duration::from_secs(10), "HeadnodeSet/east", move || {
            let (v, f) = (v.clone(), f.clone());
            async move {
                let n = f.fetch_add(1, Ordering::SeqCst);
                // Every fourth fetch fails; failures must not trigger.
                if n % 4 == 3 {
                    return Err("vmapi: 503");
                }
                Ok(fingerprint(&v.load(Ordering::SeqCst)))
            }
        });
        let start = tokio::time::Instant::now();
        async fn next(s: &mut TriggerStream) -> Option<String> {
            tokio::time::timeout(Duration::from_secs(25), s.next())
                .await
                .ok()
                .flatten()
        }
        // Unchanged for a minute: nothing.
        assert_eq!(next(&mut stream).await, None);
        assert_eq!(next(&mut stream).await, None);
        value.store(2, Ordering::SeqCst);
        assert_eq!(next(&mut stream).await.as_deref(), Some("HeadnodeSet/east"));
        assert!(start.elapsed() <= Duration::from_secs(61));
        assert_eq!(next(&mut stream).await, None);
        assert!(fetches.load(Ordering::SeqCst) >= 7);
    }
}
