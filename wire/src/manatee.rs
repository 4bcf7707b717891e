//! Manatee's ZooKeeper formats (manatee v2 with manatee-state-machine).
//!
//! References are to `research/manatee.md`: §2 is the ZooKeeper layout and
//! the cluster state object, §3 the state-machine rules, §4.4 manatee-adm's
//! health rules.
//!
//! Everything here is pure: it builds and parses paths, node names and JSON,
//! and never talks to ZooKeeper. JSON types keep unknown fields in `extra` so
//! a read-modify-write never drops what a newer manatee wrote.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

// ---------------------------------------------------------------------------
// Paths (§2.1)

/// Parent of every shard's directory.
pub const MANATEE_ROOT: &str = "/manatee";
/// Global lock that disables pg_dump backups on every shard (§2.7).
pub const PG_DUMP_LOCK_PATH: &str = "/pg_dump_lock";

/// `/manatee/<shard>`
pub fn shard_path(shard: &str) -> String {
    format!("{MANATEE_ROOT}/{shard}")
}

/// `/manatee/<shard>/state`: the cluster state object.
pub fn state_path(shard: &str) -> String {
    format!("{MANATEE_ROOT}/{shard}/state")
}

/// `/manatee/<shard>/election`: ephemeral-sequential membership nodes.
pub fn election_path(shard: &str) -> String {
    format!("{MANATEE_ROOT}/{shard}/election")
}

/// `/manatee/<shard>/history`: persistent-sequential copies of every state write.
pub fn history_path(shard: &str) -> String {
    format!("{MANATEE_ROOT}/{shard}/history")
}

/// The prefix a sitter creates (PERSISTENT_SEQUENTIAL) for a state write of
/// `generation`: `/manatee/<shard>/history/<generation>-` (§2.5).
pub fn history_prefix(shard: &str, generation: u64) -> String {
    format!("{}/{generation}-", history_path(shard))
}

/// The prefix an election node is created under (EPHEMERAL_SEQUENTIAL):
/// `/manatee/<shard>/election/<id>-` (§2.2).
pub fn election_prefix(shard: &str, id: &str) -> String {
    format!("{}/{id}-", election_path(shard))
}

/// The shard name of a `shardPath` such as `/manatee/sdc` (sitter.json).
pub fn shard_from_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(MANATEE_ROOT)?.strip_prefix('/')?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

// ---------------------------------------------------------------------------
// LSN (pg-lsn)

/// A PostgreSQL WAL position. Text form `X/Y` (two hex halves of at most 32
/// bits); compared numerically, never as text (`0/A` > `0/0000000`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    pub fn new(file: u32, offset: u32) -> Lsn {
        Lsn((u64::from(file) << 32) | u64::from(offset))
    }
    pub fn file(self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub fn offset(self) -> u32 {
        self.0 as u32
    }
    /// The position `bytes` further on.
    pub fn advance(self, bytes: u64) -> Lsn {
        Lsn(self.0.saturating_add(bytes))
    }
    /// Bytes from `earlier` to `self` (0 when `earlier` is ahead).
    pub fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two hex numbers of at most 8 digits, \"X/Y\"")]
pub struct LsnError(pub String);

impl FromStr for Lsn {
    type Err = LsnError;
    fn from_str(s: &str) -> Result<Lsn, LsnError> {
        let bad = || LsnError(s.to_string());
        let (file, offset) = s.split_once('/').ok_or_else(bad)?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(part, 16).map_err(|_| bad())
        };
        Ok(Lsn::new(half(file)?, half(offset)?))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:08X}", self.file(), self.offset())
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Peers and election nodes (§2.2, §2.3)

/// Default ports from the SAPI templates (§1).
pub const DEFAULT_PG_PORT: u16 = 5432;
pub const DEFAULT_BACKUP_PORT: u16 = 12345;

/// A peer identifier as it appears in the cluster state: `{id, ip, pgUrl,
/// zoneId, backupUrl}`. Identity is `id` only (§2.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerIdent {
    pub id: String,
    pub ip: String,
    #[serde(rename = "pgUrl")]
    pub pg_url: String,
    #[serde(rename = "zoneId")]
    pub zone_id: String,
    /// Optional in the state-machine schema, but manatee-adm asserts it, so
    /// everything we write carries it (§2.3).
    #[serde(rename = "backupUrl", default, skip_serializing_if = "Option::is_none")]
    pub backup_url: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PeerIdent {
    /// The identifier a sitter with this sitter.json would use (§2.3):
    /// id `ip:pgPort:backupPort`, pgUrl `tcp://postgres@ip:pgPort/postgres`,
    /// backupUrl `http://ip:backupPort`.
    pub fn new(zone_id: &str, ip: &str, pg_port: u16, backup_port: u16) -> PeerIdent {
        PeerIdent {
            id: format!("{ip}:{pg_port}:{backup_port}"),
            ip: ip.to_string(),
            pg_url: format!("tcp://postgres@{ip}:{pg_port}/postgres"),
            zone_id: zone_id.to_string(),
            backup_url: Some(format!("http://{ip}:{backup_port}")),
            extra: Map::new(),
        }
    }

    /// With the default ports 5432 and 12345.
    pub fn with_default_ports(zone_id: &str, ip: &str) -> PeerIdent {
        PeerIdent::new(zone_id, ip, DEFAULT_PG_PORT, DEFAULT_BACKUP_PORT)
    }

    /// manatee-adm's label: the first 8 characters of the zone id (§4.3).
    pub fn label(&self) -> &str {
        match self.zone_id.char_indices().nth(8) {
            Some((i, _)) => &self.zone_id[..i],
            None => &self.zone_id,
        }
    }

    /// The data this peer writes into its election node.
    pub fn election_data(&self) -> ElectionNodeData {
        ElectionNodeData {
            zone_id: self.zone_id.clone(),
            ip: self.ip.clone(),
            pg_url: self.pg_url.clone(),
            backup_url: self.backup_url.clone(),
            extra: Map::new(),
        }
    }
}

/// Data of an election node: compact JSON `{zoneId, ip, pgUrl, backupUrl}`,
/// no `id` (readers take it from the node name, §2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionNodeData {
    #[serde(rename = "zoneId")]
    pub zone_id: String,
    pub ip: String,
    #[serde(rename = "pgUrl")]
    pub pg_url: String,
    #[serde(rename = "backupUrl", default, skip_serializing_if = "Option::is_none")]
    pub backup_url: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ElectionNodeData {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("election data serializes")
    }
    pub fn from_json(bytes: &[u8]) -> Result<ElectionNodeData, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
    /// The peer identifier readers build: this data plus the id from the name.
    pub fn into_ident(self, id: &str) -> PeerIdent {
        PeerIdent {
            id: id.to_string(),
            ip: self.ip,
            pg_url: self.pg_url,
            zone_id: self.zone_id,
            backup_url: self.backup_url,
            extra: self.extra,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a manatee node name {0:?}: expected <id>-<10-digit sequence>")]
pub struct NodeNameError(pub String);

/// Split `<prefix>-<10 digits>` at the last `-`.
fn split_seq(name: &str) -> Option<(&str, u64)> {
    let (head, digits) = name.rsplit_once('-')?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head, digits.parse().ok()?))
}

/// An election node name `<ip>:<pgPort>:<backupPort>-<seq>` (§2.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ElectionNodeName {
    /// The peer id, everything before the last `-`.
    pub id: String,
    /// The ZooKeeper sequence (owned by the election directory).
    pub seq: u64,
}

impl ElectionNodeName {
    pub fn parse(name: &str) -> Result<ElectionNodeName, NodeNameError> {
        let (id, seq) = split_seq(name).ok_or_else(|| NodeNameError(name.to_string()))?;
        if id.is_empty() {
            return Err(NodeNameError(name.to_string()));
        }
        Ok(ElectionNodeName {
            id: id.to_string(),
            seq,
        })
    }

    /// `(ip, pgPort, backupPort)` when the id has the standard form.
    pub fn id_parts(&self) -> Option<(&str, u16, u16)> {
        let (rest, backup) = self.id.rsplit_once(':')?;
        let (ip, pg) = rest.rsplit_once(':')?;
        Some((ip, pg.parse().ok()?, backup.parse().ok()?))
    }
}

impl fmt::Display for ElectionNodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:010}", self.id, self.seq)
    }
}

impl FromStr for ElectionNodeName {
    type Err = NodeNameError;
    fn from_str(s: &str) -> Result<Self, NodeNameError> {
        ElectionNodeName::parse(s)
    }
}

/// One entry of the "active peers" list the state machine sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivePeer {
    /// The election node this entry came from (the highest seq for its id).
    pub node: ElectionNodeName,
    pub ident: PeerIdent,
}

/// Build the active-peer list from the election children and their data,
/// the way manatee's zookeeperMgr does (§2.2): names that do not parse are
/// skipped, an id present more than once keeps only its highest sequence
/// (a restart inside the session timeout leaves the old node behind), and
/// the result is sorted by id, lexicographically (not by sequence).
pub fn active_peers<N, I>(nodes: I) -> Vec<ActivePeer>
where
    N: AsRef<str>,
    I: IntoIterator<Item = (N, ElectionNodeData)>,
{
    let mut by_id: BTreeMap<String, (u64, ElectionNodeData)> = BTreeMap::new();
    for (name, data) in nodes {
        let Ok(node) = ElectionNodeName::parse(name.as_ref()) else {
            continue;
        };
        match by_id.get(&node.id) {
            Some((seq, _)) if *seq >= node.seq => {}
            _ => {
                by_id.insert(node.id, (node.seq, data));
            }
        }
    }
    by_id
        .into_iter()
        .map(|(id, (seq, data))| ActivePeer {
            ident: data.into_ident(&id),
            node: ElectionNodeName { id, seq },
        })
        .collect()
}

/// The ordered id list `activeChange` is debounced on (§2.2 step 3).
pub fn active_ids(peers: &[ActivePeer]) -> Vec<String> {
    peers.iter().map(|p| p.ident.id.clone()).collect()
}

// ---------------------------------------------------------------------------
// History nodes (§2.5)

/// The name of a history child: v2 `<generation>-<seq>`, or a v1 entry
/// (`timestamp-ip-action-role-master-slave-zkseq`) kept as raw text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryNodeName {
    V2 { generation: u64, seq: u64 },
    V1 { raw: String, seq: Option<u64> },
}

impl HistoryNodeName {
    pub fn parse(name: &str) -> HistoryNodeName {
        let parts: Vec<&str> = name.split('-').collect();
        if parts.len() == 2
            && let (Ok(generation), Ok(seq)) = (parts[0].parse(), parts[1].parse())
        {
            return HistoryNodeName::V2 { generation, seq };
        }
        HistoryNodeName::V1 {
            raw: name.to_string(),
            seq: parts.last().and_then(|s| s.parse().ok()),
        }
    }

    /// The ZooKeeper sequence, manatee-adm history's default sort key.
    pub fn seq(&self) -> Option<u64> {
        match self {
            HistoryNodeName::V2 { seq, .. } => Some(*seq),
            HistoryNodeName::V1 { seq, .. } => *seq,
        }
    }
}

/// `<generation>-<10-digit seq>`.
pub fn history_node_name(generation: u64, seq: u64) -> String {
    format!("{generation}-{seq:010}")
}

// ---------------------------------------------------------------------------
// Freeze (§2.3, §3.7)

/// The `freeze` field in exactly the form it was found: absent, `null`, a
/// boolean, the `{date, reason}` object tools write, or anything else.
/// Any JavaScript-truthy value means frozen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Freeze {
    #[default]
    Absent,
    Null,
    Bool(bool),
    Info(FreezeInfo),
    Other(Value),
}

/// The object form `{"date": ISO8601, "reason": string}` (plus unknown fields;
/// the state-machine simulator writes `{"note": ...}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn js_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

impl Freeze {
    pub fn is_absent(&self) -> bool {
        matches!(self, Freeze::Absent)
    }
    pub fn is_frozen(&self) -> bool {
        match self {
            Freeze::Absent | Freeze::Null => false,
            Freeze::Bool(b) => *b,
            Freeze::Info(_) => true,
            Freeze::Other(v) => js_truthy(v),
        }
    }
    /// The reason manatee-adm shows: the object's reason, else "unknown"
    /// (§8 item 7); `None` when not frozen.
    pub fn reason(&self) -> Option<&str> {
        if !self.is_frozen() {
            return None;
        }
        match self {
            Freeze::Info(FreezeInfo {
                reason: Some(r), ..
            }) => Some(r),
            _ => Some("unknown"),
        }
    }
    /// The freeze date as manatee-adm shows it, "unknown" when not recorded.
    pub fn date(&self) -> Option<&str> {
        if !self.is_frozen() {
            return None;
        }
        match self {
            Freeze::Info(FreezeInfo { date: Some(d), .. }) => Some(d),
            _ => Some("unknown"),
        }
    }
    /// `{date: <ISO 8601 now>, reason}`, as `manatee-adm freeze -r` writes.
    pub fn now(reason: &str) -> Freeze {
        Freeze::with_date(reason, &iso8601(OffsetDateTime::now_utc()))
    }
    pub fn with_date(reason: &str, date: &str) -> Freeze {
        Freeze::Info(FreezeInfo {
            date: Some(date.to_string()),
            reason: Some(reason.to_string()),
            extra: Map::new(),
        })
    }
}

impl Serialize for Freeze {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Absent is skipped by the containing struct; alone it is null.
            Freeze::Absent | Freeze::Null => s.serialize_unit(),
            Freeze::Bool(b) => s.serialize_bool(*b),
            Freeze::Info(info) => info.serialize(s),
            Freeze::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Freeze {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Freeze, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match v {
            Value::Null => Freeze::Null,
            Value::Bool(b) => Freeze::Bool(b),
            Value::Object(_) => match serde_json::from_value::<FreezeInfo>(v.clone()) {
                Ok(info) => Freeze::Info(info),
                Err(_) => Freeze::Other(v),
            },
            other => Freeze::Other(other),
        })
    }
}

/// JavaScript's `Date.prototype.toISOString()`: `2024-05-01T12:00:00.000Z`.
pub fn iso8601(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parse an ISO 8601 / RFC 3339 timestamp (what `new Date(s)` accepts from
/// manatee-adm's own output).
pub fn parse_iso8601(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

// ---------------------------------------------------------------------------
// Promote requests (§2.4, §3.9)

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromoteRole {
    Sync,
    Async,
}

/// `{id, role, asyncIndex?, generation, expireTime}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteRequest {
    pub id: String,
    pub role: PromoteRole,
    /// Signed so that an out-of-range `-1` parses and is then rejected.
    #[serde(
        rename = "asyncIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub async_index: Option<i64>,
    pub generation: u64,
    #[serde(rename = "expireTime")]
    pub expire_time: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a peer ignores (and the primary deletes) a promote request (§2.4).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PromoteInvalid {
    #[error("promote request does not match the schema: {0}")]
    Schema(String),
    #[error("promote expireTime {0:?} does not parse")]
    BadExpireTime(String),
    #[error("promote request is for generation {request}, cluster is at {current}")]
    WrongGeneration { request: u64, current: u64 },
    #[error("promote request expired at {0}")]
    Expired(String),
    #[error("promote request for async needs an asyncIndex")]
    MissingAsyncIndex,
    #[error("promote asyncIndex {0} is out of range")]
    AsyncIndexOutOfRange(i64),
    #[error("peer {id:?} is not at the promoted position ({role})")]
    WrongPeer { id: String, role: &'static str },
}

/// How long `manatee-adm promote` gives the cluster to act (§2.4).
pub const PROMOTE_EXPIRY: Duration = Duration::from_secs(30);

impl PromoteRequest {
    /// A request to promote the sync (it takes over; the primary is deposed).
    pub fn sync(id: &str, generation: u64, expire: OffsetDateTime) -> PromoteRequest {
        PromoteRequest {
            id: id.to_string(),
            role: PromoteRole::Sync,
            async_index: None,
            generation,
            expire_time: iso8601(expire),
            extra: Map::new(),
        }
    }

    /// A request to move `async[index]` one place up the chain.
    pub fn async_at(
        id: &str,
        index: usize,
        generation: u64,
        expire: OffsetDateTime,
    ) -> PromoteRequest {
        PromoteRequest {
            id: id.to_string(),
            role: PromoteRole::Async,
            async_index: Some(index as i64),
            generation,
            expire_time: iso8601(expire),
            extra: Map::new(),
        }
    }

    /// The state machine's validity rules against the current state (§2.4).
    pub fn check(&self, state: &ClusterState, now: OffsetDateTime) -> Result<(), PromoteInvalid> {
        let expire = parse_iso8601(&self.expire_time)
            .ok_or_else(|| PromoteInvalid::BadExpireTime(self.expire_time.clone()))?;
        if self.generation != state.generation {
            return Err(PromoteInvalid::WrongGeneration {
                request: self.generation,
                current: state.generation,
            });
        }
        if expire < now {
            return Err(PromoteInvalid::Expired(self.expire_time.clone()));
        }
        match self.role {
            PromoteRole::Async => {
                let idx = self.async_index.ok_or(PromoteInvalid::MissingAsyncIndex)?;
                let at = usize::try_from(idx)
                    .ok()
                    .and_then(|i| state.asyncs.get(i))
                    .ok_or(PromoteInvalid::AsyncIndexOutOfRange(idx))?;
                if at.id != self.id {
                    return Err(PromoteInvalid::WrongPeer {
                        id: self.id.clone(),
                        role: "async",
                    });
                }
            }
            PromoteRole::Sync => {
                if state.sync.as_ref().map(|s| s.id.as_str()) != Some(self.id.as_str()) {
                    return Err(PromoteInvalid::WrongPeer {
                        id: self.id.clone(),
                        role: "sync",
                    });
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Cluster state (§2.3)

/// `/manatee/<shard>/state`.
///
/// A missing `deposed` reads as `[]` (as manatee's validator fills it in) and
/// `sync` is always written, `null` when absent. Everything else round-trips
/// as found, unknown fields included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub generation: u64,
    pub primary: PeerIdent,
    #[serde(default)]
    pub sync: Option<PeerIdent>,
    #[serde(rename = "async", default)]
    pub asyncs: Vec<PeerIdent>,
    #[serde(default)]
    pub deposed: Vec<PeerIdent>,
    /// Kept as text so it is written back exactly; see [`ClusterState::init_wal_lsn`].
    #[serde(rename = "initWal")]
    pub init_wal: String,
    #[serde(default, skip_serializing_if = "Freeze::is_absent")]
    pub freeze: Freeze,
    #[serde(
        rename = "oneNodeWriteMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub one_node_write_mode: Option<bool>,
    /// Raw, because an invalid request must not make the state unreadable:
    /// peers ignore it and the primary deletes it (§2.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a state is rejected. Every peer treats this as fatal (§2.3).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cluster state is not valid JSON for the schema: {0}")]
    Json(#[from] serde_json::Error),
    #[error("sync is null but oneNodeWriteMode is not set")]
    NullSyncOutsideOnwm,
    #[error("initWal: {0}")]
    InitWal(#[from] LsnError),
    #[error("{field}: peer {id:?} lacks a string {missing}")]
    IncompletePeer {
        field: String,
        id: String,
        missing: &'static str,
    },
}

/// A peer's role as the state assigns it (§3.2 step 5 order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateRole {
    Primary,
    Sync,
    Async(usize),
    Deposed,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FreezeError {
    #[error("shard is already been frozen: {0}")]
    AlreadyFrozen(String),
    #[error("shard is not frozen")]
    NotFrozen,
    #[error("shard is frozen by someone else: {0}")]
    NotOurs(String),
}

impl ClusterState {
    /// The initial state of a normal (multi-peer) setup (§3.3).
    pub fn initial(primary: PeerIdent, sync: PeerIdent, asyncs: Vec<PeerIdent>) -> ClusterState {
        ClusterState {
            generation: 1,
            primary,
            sync: Some(sync),
            asyncs,
            deposed: Vec::new(),
            init_wal: Lsn::ZERO.to_string(),
            freeze: Freeze::Absent,
            one_node_write_mode: None,
            promote: None,
            extra: Map::new(),
        }
    }

    /// The initial one-node-write-mode state, frozen from the start (§2.3).
    pub fn initial_onwm(primary: PeerIdent, date: &str) -> ClusterState {
        ClusterState {
            generation: 1,
            primary,
            sync: None,
            asyncs: Vec::new(),
            deposed: Vec::new(),
            init_wal: Lsn::ZERO.to_string(),
            freeze: Freeze::with_date("manatee setup: one node write mode", date),
            one_node_write_mode: Some(true),
            promote: None,
            extra: Map::new(),
        }
    }

    /// Parse without validating.
    pub fn from_json(bytes: &[u8]) -> Result<ClusterState, StateError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Parse and apply the checks every peer applies.
    pub fn parse_valid(bytes: &[u8]) -> Result<ClusterState, StateError> {
        let state = ClusterState::from_json(bytes)?;
        state.validate()?;
        Ok(state)
    }

    /// Compact JSON, as `JSON.stringify` writes it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("cluster state serializes")
    }

    /// The checks manatee enforces (§2.3, §8 item 12): `sync` may be null only
    /// in one-node-write mode, `initWal` must parse, and every peer must carry
    /// the five string fields manatee-adm asserts.
    pub fn validate(&self) -> Result<(), StateError> {
        if self.sync.is_none() && !self.is_one_node_write_mode() {
            return Err(StateError::NullSyncOutsideOnwm);
        }
        self.init_wal.parse::<Lsn>()?;
        let mut peers: Vec<(String, &PeerIdent)> = vec![("primary".into(), &self.primary)];
        if let Some(s) = &self.sync {
            peers.push(("sync".into(), s));
        }
        peers.extend(
            self.asyncs
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("async[{i}]"), p)),
        );
        peers.extend(
            self.deposed
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("deposed[{i}]"), p)),
        );
        for (field, p) in peers {
            let missing = [
                ("id", p.id.is_empty()),
                ("ip", p.ip.is_empty()),
                ("pgUrl", p.pg_url.is_empty()),
                ("zoneId", p.zone_id.is_empty()),
                ("backupUrl", p.backup_url.is_none()),
            ]
            .into_iter()
            .find(|(_, bad)| *bad);
            if let Some((name, _)) = missing {
                return Err(StateError::IncompletePeer {
                    field,
                    id: p.id.clone(),
                    missing: name,
                });
            }
        }
        Ok(())
    }

    pub fn init_wal_lsn(&self) -> Result<Lsn, LsnError> {
        self.init_wal.parse()
    }

    pub fn is_frozen(&self) -> bool {
        self.freeze.is_frozen()
    }

    pub fn is_one_node_write_mode(&self) -> bool {
        self.one_node_write_mode == Some(true)
    }

    /// Where `id` appears, checked in the state machine's order: primary,
    /// sync, deposed, then async (§3.2 step 5).
    pub fn role_of(&self, id: &str) -> Option<StateRole> {
        if self.primary.id == id {
            return Some(StateRole::Primary);
        }
        if self.sync.as_ref().is_some_and(|s| s.id == id) {
            return Some(StateRole::Sync);
        }
        if self.deposed.iter().any(|p| p.id == id) {
            return Some(StateRole::Deposed);
        }
        self.asyncs
            .iter()
            .position(|p| p.id == id)
            .map(StateRole::Async)
    }

    /// The identifier of `id` wherever it appears.
    pub fn peer(&self, id: &str) -> Option<&PeerIdent> {
        std::iter::once(&self.primary)
            .chain(self.sync.iter())
            .chain(self.asyncs.iter())
            .chain(self.deposed.iter())
            .find(|p| p.id == id)
    }

    /// The replication upstream of `async[i]`: the sync for 0, else async[i-1].
    pub fn async_upstream(&self, i: usize) -> Option<&PeerIdent> {
        if i == 0 {
            self.sync.as_ref()
        } else {
            self.asyncs.get(i - 1)
        }
    }

    /// The parsed promote request, if any (`Err` for one that does not parse).
    pub fn promote_request(&self) -> Option<Result<PromoteRequest, PromoteInvalid>> {
        self.promote.as_ref().map(|v| {
            serde_json::from_value(v.clone()).map_err(|e| PromoteInvalid::Schema(e.to_string()))
        })
    }

    pub fn set_promote(&mut self, req: &PromoteRequest) {
        self.promote = Some(serde_json::to_value(req).expect("promote serializes"));
    }

    /// `manatee-adm freeze -r reason`: fails if already frozen (§4.2).
    pub fn freeze(&mut self, reason: &str) -> Result<(), FreezeError> {
        self.freeze_at(reason, &iso8601(OffsetDateTime::now_utc()))
    }

    /// Like [`ClusterState::freeze`] with an explicit date.
    pub fn freeze_at(&mut self, reason: &str, date: &str) -> Result<(), FreezeError> {
        if self.is_frozen() {
            return Err(FreezeError::AlreadyFrozen(
                self.freeze.reason().unwrap_or("unknown").to_string(),
            ));
        }
        self.freeze = Freeze::with_date(reason, date);
        Ok(())
    }

    /// `manatee-adm unfreeze`: deletes the field; fails if not frozen (§4.2).
    /// Returns the freeze that was removed.
    pub fn unfreeze(&mut self) -> Result<Freeze, FreezeError> {
        if !self.is_frozen() {
            return Err(FreezeError::NotFrozen);
        }
        Ok(std::mem::take(&mut self.freeze))
    }

    /// Unfreeze only a freeze recorded with exactly `reason`, so an operator
    /// never lifts somebody else's freeze (DESIGN safety invariant 1).
    pub fn unfreeze_own(&mut self, reason: &str) -> Result<Freeze, FreezeError> {
        match self.freeze.reason() {
            None => Err(FreezeError::NotFrozen),
            Some(r) if r == reason && matches!(self.freeze, Freeze::Info(_)) => self.unfreeze(),
            Some(r) => Err(FreezeError::NotOurs(r.to_string())),
        }
    }

    /// The generation-bump shape every takeover writes (§3.4): exactly
    /// generation, primary, sync, async, deposed, initWal — no freeze,
    /// promote, oneNodeWriteMode or unknown fields.
    pub fn next_generation(
        &self,
        primary: PeerIdent,
        sync: PeerIdent,
        asyncs: Vec<PeerIdent>,
        deposed: Vec<PeerIdent>,
        init_wal: Lsn,
    ) -> ClusterState {
        ClusterState {
            generation: self.generation + 1,
            primary,
            sync: Some(sync),
            asyncs,
            deposed,
            init_wal: init_wal.to_string(),
            freeze: Freeze::Absent,
            one_node_write_mode: None,
            promote: None,
            extra: Map::new(),
        }
    }

    /// The same-generation shape the primary writes when the async list
    /// changes (§3.5): generation, primary, sync, deposed, initWal kept,
    /// `freeze` copied when set, no oneNodeWriteMode, promote or unknown fields.
    pub fn with_asyncs(&self, asyncs: Vec<PeerIdent>) -> ClusterState {
        ClusterState {
            generation: self.generation,
            primary: self.primary.clone(),
            sync: self.sync.clone(),
            asyncs,
            deposed: self.deposed.clone(),
            init_wal: self.init_wal.clone(),
            freeze: if self.is_frozen() {
                self.freeze.clone()
            } else {
                Freeze::Absent
            },
            one_node_write_mode: None,
            promote: None,
            extra: Map::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// The write protocol (§2.5, §2.6)

/// Which history prefix a write records under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryWriter {
    /// A sitter: `history/<generation>-`.
    Sitter,
    /// manatee-adm and operators: `history/0-`.
    Admin,
}

/// Everything needed to build the one multi-op of a state write:
/// `setData(state, data, version)` (or `create(state)` when
/// `expected_version` is `None`) plus `create(history_prefix,
/// PERSISTENT_SEQUENTIAL)` with the same data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateWrite {
    pub state_path: String,
    pub expected_version: Option<i32>,
    pub history_prefix: String,
    /// The state JSON, written to both nodes.
    pub data: Vec<u8>,
}

/// Validate `state` and describe its write. The caller turns this into its
/// coordination backend's multi-op and retries from a fresh read on a
/// version mismatch.
pub fn prepare_state_write(
    shard: &str,
    state: &ClusterState,
    expected_version: Option<i32>,
    writer: HistoryWriter,
) -> Result<StateWrite, StateError> {
    state.validate()?;
    let generation = match writer {
        HistoryWriter::Sitter => state.generation,
        HistoryWriter::Admin => 0,
    };
    Ok(StateWrite {
        state_path: state_path(shard),
        expected_version,
        history_prefix: history_prefix(shard, generation),
        data: state.to_json(),
    })
}

// ---------------------------------------------------------------------------
// pg-status and verify (§4.3, §4.4)

/// A row's role in `manatee-adm pg-status` (unassigned peers are never shown).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdmRole {
    Primary,
    Sync,
    Async,
    Deposed,
}

impl fmt::Display for AdmRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdmRole::Primary => "primary",
            AdmRole::Sync => "sync",
            AdmRole::Async => "async",
            AdmRole::Deposed => "deposed",
        })
    }
}

/// The row of a peer's `pg_stat_replication` describing its downstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationRow {
    pub client_addr: String,
    /// `startup`, `catchup`, `streaming`, ...
    pub state: String,
    /// `sync` or `async`.
    pub sync_state: String,
    pub sent: Lsn,
    pub write: Lsn,
    pub flush: Lsn,
    pub replay: Lsn,
}

/// One row of `manatee-adm pg-status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerPgStatus {
    pub role: AdmRole,
    pub peer: PeerIdent,
    /// Why the 1 s probe failed; `None` means PG `ok`.
    pub pg_error: Option<String>,
    /// Replication from this peer to its downstream, when a row exists.
    pub repl: Option<ReplicationRow>,
    /// `now() - pg_last_xact_replay_timestamp()`; `None` prints `-`.
    pub lag: Option<Duration>,
}

impl PeerPgStatus {
    pub fn online(&self) -> bool {
        self.pg_error.is_none()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One line of `manatee-adm verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => write!(f, "error: {}", self.message),
            Severity::Warning => write!(f, "warning: {}", self.message),
        }
    }
}

/// `manatee-adm pg-status` for one shard: the state plus one row per peer
/// (primary, sync, asyncs in chain order, deposed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgStatusReport {
    pub state: ClusterState,
    pub peers: Vec<PeerPgStatus>,
}

impl PgStatusReport {
    fn row(&self, id: &str) -> Option<&PeerPgStatus> {
        self.peers.iter().find(|p| p.peer.id == id)
    }

    /// manatee-adm's health rules, errors first, in manatee-adm's order
    /// (`lib/adm.js` loadErrors/loadReplErrors, §4.4). Lag is not checked.
    pub fn verify(&self) -> Vec<Issue> {
        let st = &self.state;
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let pg_err = |id: &str| -> Option<String> {
            match self.row(id) {
                None => Some("no status".to_string()),
                Some(r) => r.pg_error.clone(),
            }
        };
        if let Some(e) = pg_err(&st.primary.id) {
            errors.push(format!(
                "cannot query postgres on primary: peer \"{}\": {e}",
                st.primary.label()
            ));
        }
        if st.is_one_node_write_mode() {
            let n = 1 + st.sync.iter().count() + st.asyncs.len() + st.deposed.len();
            if n > 1 {
                warnings.push(format!("found {n} peers in singleton mode"));
            }
            return finish(errors, warnings);
        }
        let Some(sync) = &st.sync else {
            return finish(errors, warnings);
        };
        let sync_err = pg_err(&sync.id);
        if let Some(e) = &sync_err {
            errors.push(format!(
                "cannot query postgres on sync: peer \"{}\": {e}",
                sync.label()
            ));
        }
        if !st.deposed.is_empty() {
            warnings.push("cluster has a deposed peer".to_string());
        }
        if st.asyncs.is_empty() {
            warnings.push("cluster has no async peers".to_string());
        }
        // If the sync is down, that's all manatee-adm checks.
        if sync_err.is_some() {
            return finish(errors, warnings);
        }
        self.repl_issues(&st.primary, Some(sync), "sync", &mut errors);
        self.repl_issues(sync, st.asyncs.first(), "async", &mut warnings);
        for (i, a) in st.asyncs.iter().enumerate() {
            self.repl_issues(a, st.asyncs.get(i + 1), "async", &mut warnings);
        }
        finish(errors, warnings)
    }

    fn repl_issues(
        &self,
        peer: &PeerIdent,
        downstream: Option<&PeerIdent>,
        kind: &str,
        out: &mut Vec<String>,
    ) {
        let Some(ds) = downstream else { return };
        let label = peer.label();
        let repl = self.row(&peer.id).and_then(|r| r.repl.as_ref());
        let Some(repl) = repl else {
            out.push(format!(
                "peer \"{label}\": downstream replication peer not connected"
            ));
            return;
        };
        let before = out.len();
        if repl.client_addr != ds.ip {
            out.push(format!(
                "peer \"{label}\": expected downstream peer to be \"{}\", but found \"{}\"",
                ds.ip, repl.client_addr
            ));
        }
        if repl.state != "streaming" {
            out.push(format!(
                "peer \"{label}\": downstream replication not yet established \
                 (expected state \"streaming\", found \"{}\")",
                repl.state
            ));
        }
        if out.len() > before {
            return;
        }
        if repl.sync_state != kind {
            out.push(format!(
                "peer \"{label}\": expected downstream replication to be \"{kind}\", \
                 but found \"{}\"",
                repl.sync_state
            ));
        }
    }

    /// The default `pg-status` table: ROLE PEER PG REPL SENT FLUSH REPLAY LAG.
    pub fn render_table(&self) -> String {
        let mut out = format!(
            "{:<8} {:<8} {:<4} {:<5} {:<12} {:<12} {:<12} {}\n",
            "ROLE", "PEER", "PG", "REPL", "SENT", "FLUSH", "REPLAY", "LAG"
        );
        for p in &self.peers {
            let (repl, sent, flush, replay) = match &p.repl {
                Some(r) => (
                    r.sync_state.clone(),
                    r.sent.to_string(),
                    r.flush.to_string(),
                    r.replay.to_string(),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            let lag = p.lag.map(format_lag).unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "{:<8} {:<8} {:<4} {:<5} {:<12} {:<12} {:<12} {}\n",
                p.role.to_string(),
                p.peer.label(),
                if p.online() { "ok" } else { "fail" },
                repl,
                sent,
                flush,
                replay,
                lag
            ));
        }
        out
    }
}

fn finish(errors: Vec<String>, warnings: Vec<String>) -> Vec<Issue> {
    errors
        .into_iter()
        .map(|message| Issue {
            severity: Severity::Error,
            message,
        })
        .chain(warnings.into_iter().map(|message| Issue {
            severity: Severity::Warning,
            message,
        }))
        .collect()
}

/// LAG as manatee-adm prints it: `%dm%02ds`.
pub fn format_lag(lag: Duration) -> String {
    let s = lag.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn peer(n: u8) -> PeerIdent {
        PeerIdent::with_default_ports(&format!("zone{n}-0000-1111"), &format!("10.0.0.{n}"))
    }

    fn roundtrip(v: Value) {
        let st: ClusterState = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&st).unwrap(), v);
        let again = ClusterState::from_json(&st.to_json()).unwrap();
        assert_eq!(again, st);
    }

    fn ident_json(n: u8) -> Value {
        serde_json::to_value(peer(n)).unwrap()
    }

    #[test]
    fn paths() {
        assert_eq!(state_path("sdc"), "/manatee/sdc/state");
        assert_eq!(election_path("1.moray.x"), "/manatee/1.moray.x/election");
        assert_eq!(history_path("sdc"), "/manatee/sdc/history");
        assert_eq!(history_prefix("sdc", 7), "/manatee/sdc/history/7-");
        assert_eq!(
            election_prefix("sdc", "10.0.0.1:5432:12345"),
            "/manatee/sdc/election/10.0.0.1:5432:12345-"
        );
        assert_eq!(shard_from_path("/manatee/sdc"), Some("sdc"));
        assert_eq!(shard_from_path("/manatee/"), None);
        assert_eq!(shard_from_path("/other/sdc"), None);
        assert_eq!(PG_DUMP_LOCK_PATH, "/pg_dump_lock");
    }

    #[test]
    fn lsn_parse_format_compare() {
        assert_eq!("0/00000000".parse::<Lsn>().unwrap(), Lsn::ZERO);
        assert_eq!("0/0000000a".parse::<Lsn>().unwrap(), Lsn(10));
        assert_eq!("0/0000000A".parse::<Lsn>().unwrap(), Lsn(10));
        assert_eq!("0/0000000".parse::<Lsn>().unwrap(), Lsn::ZERO);
        assert_eq!("1/4405D30".parse::<Lsn>().unwrap(), Lsn::new(1, 0x4405D30));
        assert_eq!(Lsn::new(1, 0x4405D30).to_string(), "1/04405D30");
        assert_eq!(Lsn(10).to_string(), "0/0000000A");
        // Numeric, not textual: 0/A > 0/0000000.
        assert!("0/A".parse::<Lsn>().unwrap() > "0/0000000".parse::<Lsn>().unwrap());
        assert!("1/0".parse::<Lsn>().unwrap() > "0/FFFFFFFF".parse::<Lsn>().unwrap());
        for bad in ["", "0", "0/", "/0", "x/0", "0/123456789", "0/0/0", "-1/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(Lsn(100).bytes_since(Lsn(40)), 60);
        assert_eq!(Lsn(40).bytes_since(Lsn(100)), 0);
    }

    proptest! {
        #[test]
        fn lsn_roundtrips(v in any::<u64>()) {
            let l = Lsn(v);
            prop_assert_eq!(l.to_string().parse::<Lsn>().unwrap(), l);
        }

        #[test]
        fn lsn_order_is_numeric(a in any::<u64>(), b in any::<u64>()) {
            let (la, lb) = (Lsn(a).to_string().parse::<Lsn>().unwrap(), Lsn(b).to_string().parse::<Lsn>().unwrap());
            prop_assert_eq!(la.cmp(&lb), a.cmp(&b));
        }
    }

    #[test]
    fn peer_ident_defaults() {
        let p = PeerIdent::with_default_ports("b35e12da-aaaa", "10.77.77.8");
        assert_eq!(p.id, "10.77.77.8:5432:12345");
        assert_eq!(p.pg_url, "tcp://postgres@10.77.77.8:5432/postgres");
        assert_eq!(p.backup_url.as_deref(), Some("http://10.77.77.8:12345"));
        assert_eq!(p.label(), "b35e12da");
        assert_eq!(
            String::from_utf8(p.election_data().to_json()).unwrap(),
            r#"{"zoneId":"b35e12da-aaaa","ip":"10.77.77.8","pgUrl":"tcp://postgres@10.77.77.8:5432/postgres","backupUrl":"http://10.77.77.8:12345"}"#
        );
    }

    #[test]
    fn election_names() {
        let n = ElectionNodeName::parse("10.77.77.167:5432:12345-0000000042").unwrap();
        assert_eq!(n.id, "10.77.77.167:5432:12345");
        assert_eq!(n.seq, 42);
        assert_eq!(n.id_parts(), Some(("10.77.77.167", 5432, 12345)));
        assert_eq!(n.to_string(), "10.77.77.167:5432:12345-0000000042");
        for bad in ["10.0.0.1:5432:12345", "x-12", "-0000000001", "a-00000000x1"] {
            assert!(ElectionNodeName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn active_peers_dedupe_and_sort_by_id() {
        let d = |n: u8| peer(n).election_data();
        let nodes = vec![
            ("10.0.0.3:5432:12345-0000000001".to_string(), d(3)),
            ("10.0.0.10:5432:12345-0000000002".to_string(), d(10)),
            ("10.0.0.2:5432:12345-0000000000".to_string(), d(2)),
            // A restart inside the session timeout: the newer node wins.
            ("10.0.0.3:5432:12345-0000000007".to_string(), d(3)),
            ("garbage".to_string(), d(9)),
        ];
        let active = active_peers(nodes);
        // Lexicographic: "10.0.0.10" < "10.0.0.2" < "10.0.0.3".
        assert_eq!(
            active_ids(&active),
            vec![
                "10.0.0.10:5432:12345",
                "10.0.0.2:5432:12345",
                "10.0.0.3:5432:12345"
            ]
        );
        assert_eq!(active[2].node.seq, 7);
        assert_eq!(active[1].ident, peer(2));
    }

    #[test]
    fn history_names() {
        assert_eq!(history_node_name(3, 12), "3-0000000012");
        assert_eq!(
            HistoryNodeName::parse("3-0000000012"),
            HistoryNodeName::V2 {
                generation: 3,
                seq: 12
            }
        );
        let v1 =
            HistoryNodeName::parse("1404247290045-10.0.0.1-AssumeLeader-Leader-x-y-0000000003");
        assert!(matches!(v1, HistoryNodeName::V1 { seq: Some(3), .. }));
    }

    #[test]
    fn state_roundtrips_exactly() {
        roundtrip(json!({
            "generation": 1,
            "primary": ident_json(8),
            "sync": ident_json(20),
            "async": [ident_json(7)],
            "deposed": [],
            "initWal": "0/4405D30"
        }));
        // ONWM with every optional field and unknown fields at every level.
        let mut p = ident_json(1);
        p["futureField"] = json!({"x": 1});
        roundtrip(json!({
            "generation": 1,
            "primary": p,
            "initWal": "0/00000000",
            "deposed": [],
            "sync": null,
            "async": [],
            "oneNodeWriteMode": true,
            "freeze": {"date": "2024-05-01T12:00:00.000Z", "reason": "manatee setup: one node write mode", "by": "me"},
            "promote": {"id": "x", "role": "test"},
            "somethingNew": [1, 2, 3]
        }));
    }

    #[test]
    fn freeze_keeps_its_form() {
        let base = json!({
            "generation": 2, "primary": ident_json(1), "sync": ident_json(2),
            "async": [], "deposed": [], "initWal": "0/0000000a"
        });
        let cases = [
            (None, false),
            (Some(json!(null)), false),
            (Some(json!(true)), true),
            (Some(json!(false)), false),
            (Some(json!({"note": "frozen by simulator"})), true),
            (Some(json!({"date": 5})), true),
            (Some(json!("")), false),
            (Some(json!("yes")), true),
            (Some(json!(0)), false),
        ];
        for (freeze, frozen) in cases {
            let mut v = base.clone();
            if let Some(f) = &freeze {
                v["freeze"] = f.clone();
            }
            let st: ClusterState = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(st.is_frozen(), frozen, "{freeze:?}");
            assert_eq!(serde_json::to_value(&st).unwrap(), v, "{freeze:?}");
        }
    }

    #[test]
    fn freeze_helpers() {
        let mut st = ClusterState::initial(peer(1), peer(2), vec![peer(3)]);
        st.freeze_at("tritonctl op-1", "2024-05-01T12:00:00.000Z")
            .unwrap();
        assert_eq!(st.freeze.reason(), Some("tritonctl op-1"));
        assert_eq!(st.freeze.date(), Some("2024-05-01T12:00:00.000Z"));
        assert_eq!(
            st.freeze("again"),
            Err(FreezeError::AlreadyFrozen("tritonctl op-1".into()))
        );
        assert_eq!(
            st.unfreeze_own("someone else"),
            Err(FreezeError::NotOurs("tritonctl op-1".into()))
        );
        st.unfreeze_own("tritonctl op-1").unwrap();
        assert!(!st.is_frozen());
        assert!(st.freeze.is_absent());
        assert_eq!(st.unfreeze(), Err(FreezeError::NotFrozen));
        // A boolean freeze is nobody's: unfreeze_own refuses, unfreeze works.
        st.freeze = Freeze::Bool(true);
        assert_eq!(st.freeze.reason(), Some("unknown"));
        assert!(st.unfreeze_own("unknown").is_err());
        assert_eq!(st.unfreeze(), Ok(Freeze::Bool(true)));
        st.freeze("now").unwrap();
        let date = st.freeze.date().unwrap().to_string();
        assert!(parse_iso8601(&date).is_some(), "{date}");
        assert!(date.ends_with('Z') && date.len() == 24, "{date}");
    }

    #[test]
    fn validation() {
        let ok = ClusterState::initial(peer(1), peer(2), vec![]);
        ok.validate().unwrap();
        let mut st = ok.clone();
        st.sync = None;
        assert!(matches!(
            st.validate(),
            Err(StateError::NullSyncOutsideOnwm)
        ));
        st.one_node_write_mode = Some(true);
        st.validate().unwrap();
        let mut st = ok.clone();
        st.init_wal = "nope".into();
        assert!(matches!(st.validate(), Err(StateError::InitWal(_))));
        let mut st = ok.clone();
        st.asyncs.push(PeerIdent {
            backup_url: None,
            ..peer(3)
        });
        match st.validate() {
            Err(StateError::IncompletePeer { field, missing, .. }) => {
                assert_eq!(field, "async[0]");
                assert_eq!(missing, "backupUrl");
            }
            other => panic!("{other:?}"),
        }
        assert!(ClusterState::parse_valid(br#"{"generation":1}"#).is_err());
        let onwm = ClusterState::initial_onwm(peer(1), "2024-05-01T12:00:00.000Z");
        onwm.validate().unwrap();
        assert!(onwm.is_frozen() && onwm.is_one_node_write_mode());
        assert_eq!(
            onwm.freeze.reason(),
            Some("manatee setup: one node write mode")
        );
    }

    #[test]
    fn roles_and_shapes() {
        let mut st = ClusterState::initial(peer(1), peer(2), vec![peer(3), peer(4)]);
        st.deposed.push(peer(9));
        assert_eq!(st.role_of(&peer(1).id), Some(StateRole::Primary));
        assert_eq!(st.role_of(&peer(2).id), Some(StateRole::Sync));
        assert_eq!(st.role_of(&peer(4).id), Some(StateRole::Async(1)));
        assert_eq!(st.role_of(&peer(9).id), Some(StateRole::Deposed));
        assert_eq!(st.role_of("nobody"), None);
        assert_eq!(st.async_upstream(0), Some(&peer(2)));
        assert_eq!(st.async_upstream(1), Some(&peer(3)));
        st.freeze = Freeze::Bool(true);
        st.one_node_write_mode = Some(false);
        st.extra.insert("x".into(), json!(1));
        let same = st.with_asyncs(vec![peer(3)]);
        assert_eq!(same.generation, 1);
        assert_eq!(same.freeze, Freeze::Bool(true));
        assert!(same.one_node_write_mode.is_none() && same.extra.is_empty());
        let next = st.next_generation(peer(2), peer(3), vec![], vec![peer(1)], Lsn(10));
        assert_eq!(next.generation, 2);
        assert!(next.freeze.is_absent());
        assert_eq!(next.init_wal, "0/0000000A");
    }

    #[test]
    fn promote_rules() {
        let st = ClusterState::initial(peer(1), peer(2), vec![peer(3), peer(4)]);
        let now = OffsetDateTime::now_utc();
        let later = now + time::Duration::seconds(30);
        PromoteRequest::sync(&peer(2).id, 1, later)
            .check(&st, now)
            .unwrap();
        PromoteRequest::async_at(&peer(4).id, 1, 1, later)
            .check(&st, now)
            .unwrap();
        let bad = [
            PromoteRequest::sync(&peer(3).id, 1, later),
            PromoteRequest::sync(&peer(2).id, 2, later),
            PromoteRequest::sync(&peer(2).id, 1, now - time::Duration::seconds(1)),
            PromoteRequest::async_at(&peer(4).id, 0, 1, later),
            PromoteRequest::async_at(&peer(4).id, 9, 1, later),
            PromoteRequest {
                async_index: Some(-1),
                ..PromoteRequest::async_at(&peer(3).id, 0, 1, later)
            },
            PromoteRequest {
                async_index: None,
                ..PromoteRequest::async_at(&peer(3).id, 0, 1, later)
            },
            PromoteRequest {
                expire_time: "test".into(),
                ..PromoteRequest::sync(&peer(2).id, 1, later)
            },
        ];
        for req in bad {
            assert!(req.check(&st, now).is_err(), "{req:?} accepted");
        }
        let mut st2 = st.clone();
        st2.promote =
            Some(json!({"id": "x", "role": "primary", "generation": 1, "expireTime": "x"}));
        assert!(matches!(
            st2.promote_request(),
            Some(Err(PromoteInvalid::Schema(_)))
        ));
        st2.set_promote(&PromoteRequest::sync(&peer(2).id, 1, later));
        assert!(
            st2.promote_request()
                .unwrap()
                .unwrap()
                .check(&st2, now)
                .is_ok()
        );
    }

    #[test]
    fn state_write_shape() {
        let st = ClusterState::initial(peer(1), peer(2), vec![]);
        let w = prepare_state_write("sdc", &st, Some(4), HistoryWriter::Sitter).unwrap();
        assert_eq!(w.state_path, "/manatee/sdc/state");
        assert_eq!(w.history_prefix, "/manatee/sdc/history/1-");
        assert_eq!(w.expected_version, Some(4));
        assert_eq!(ClusterState::from_json(&w.data).unwrap(), st);
        let w = prepare_state_write("sdc", &st, None, HistoryWriter::Admin).unwrap();
        assert_eq!(w.history_prefix, "/manatee/sdc/history/0-");
        let mut bad = st.clone();
        bad.sync = None;
        assert!(prepare_state_write("sdc", &bad, None, HistoryWriter::Sitter).is_err());
    }

    fn row(role: AdmRole, p: PeerIdent, repl: Option<(&str, &str, &str)>) -> PeerPgStatus {
        PeerPgStatus {
            role,
            peer: p,
            pg_error: None,
            repl: repl.map(|(addr, state, sync_state)| ReplicationRow {
                client_addr: addr.into(),
                state: state.into(),
                sync_state: sync_state.into(),
                sent: Lsn(10),
                write: Lsn(10),
                flush: Lsn(10),
                replay: Lsn(10),
            }),
            lag: None,
        }
    }

    #[test]
    fn verify_rules() {
        let st = ClusterState::initial(peer(1), peer(2), vec![peer(3)]);
        let healthy = PgStatusReport {
            state: st.clone(),
            peers: vec![
                row(
                    AdmRole::Primary,
                    peer(1),
                    Some(("10.0.0.2", "streaming", "sync")),
                ),
                row(
                    AdmRole::Sync,
                    peer(2),
                    Some(("10.0.0.3", "streaming", "async")),
                ),
                row(AdmRole::Async, peer(3), None),
            ],
        };
        assert_eq!(healthy.verify(), vec![]);

        let mut r = healthy.clone();
        r.peers[0].repl.as_mut().unwrap().sync_state = "async".into();
        r.peers[1].repl = None;
        let msgs: Vec<String> = r.verify().iter().map(|i| i.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "error: peer \"zone1-00\": expected downstream replication to be \"sync\", but found \"async\"",
                "warning: peer \"zone2-00\": downstream replication peer not connected",
            ]
        );

        let mut r = healthy.clone();
        r.peers[0].repl.as_mut().unwrap().state = "catchup".into();
        r.peers[0].repl.as_mut().unwrap().client_addr = "10.0.0.9".into();
        assert_eq!(r.verify().len(), 2);

        let mut r = healthy.clone();
        r.peers[1].pg_error = Some("ECONNREFUSED".into());
        r.state.asyncs.clear();
        r.state.deposed.push(peer(3));
        r.peers[2].role = AdmRole::Deposed;
        let msgs: Vec<String> = r.verify().iter().map(|i| i.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "error: cannot query postgres on sync: peer \"zone2-00\": ECONNREFUSED",
                "warning: cluster has a deposed peer",
                "warning: cluster has no async peers",
            ]
        );

        let mut onwm = ClusterState::initial_onwm(peer(1), "2024-05-01T12:00:00.000Z");
        let r = PgStatusReport {
            state: onwm.clone(),
            peers: vec![row(AdmRole::Primary, peer(1), None)],
        };
        assert_eq!(r.verify(), vec![]);
        onwm.asyncs.push(peer(2));
        let r = PgStatusReport {
            state: onwm,
            peers: vec![row(AdmRole::Primary, peer(1), None)],
        };
        assert_eq!(r.verify()[0].message, "found 2 peers in singleton mode");
        assert!(healthy.render_table().starts_with("ROLE"));
        assert_eq!(format_lag(Duration::from_secs(342)), "5m42s");
    }
}
