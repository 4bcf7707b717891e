//! Semantic validation: the safety rules a well-typed document can still
//! break. Every rule reports through [`Diagnostic`] with file, line, column
//! and field path, and all problems are reported at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use crate::common::{check_server_ref, check_shard_name, is_uuid, parse_duration};
use crate::document::Document;
use crate::headnode::HeadnodeSetSpec;
use crate::image_version::check_image_version;
use crate::manatee::ManateeVersionSpec;
use crate::parse::{ParsedDocument, SourceLocation};
use crate::shards::{IntentForm, ShardTopologySpec, parse_fraction, parse_vnode_range};
use wire::fash::MAX_VNODES;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: SourceLocation,
    /// Field path, e.g. `spec.shards[1].peers[0].server`; empty for the whole document.
    pub path: String,
    pub message: String,
    pub severity: Severity,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.location.line == 0 {
            // About a whole file or input (e.g. it holds no documents).
            write!(f, "{}: {sev}: {}", self.location.file, self.message)
        } else if self.path.is_empty() {
            write!(f, "{}: {sev}: {}", self.location, self.message)
        } else {
            write!(
                f,
                "{}: {sev}: {}: {}",
                self.location, self.path, self.message
            )
        }
    }
}

/// Collects diagnostics for one document.
struct Check<'a> {
    doc: &'a ParsedDocument,
    out: &'a mut Vec<Diagnostic>,
}

impl Check<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(path.into(), message.into(), Severity::Error);
    }
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(path.into(), message.into(), Severity::Warning);
    }
    fn push(&mut self, path: String, message: String, severity: Severity) {
        self.out.push(Diagnostic {
            location: self.doc.locate(&path),
            path,
            message,
            severity,
        });
    }
}

/// Validate a set of documents that will be applied together (every file of
/// a directory): each document's own rules, then rules across documents.
pub fn validate_all(docs: &[ParsedDocument]) -> Vec<Diagnostic> {
    validate_sets(&[docs])
}

/// Validate one input made of several desired-state sets (the directories
/// an `-f` reaches): each set's rules within that set (one ManateeVersion
/// per shard, one HeadnodeSet per datacenter, ...), and document identity
/// across all of them: one input is stored as a whole, so a kind and name
/// may appear in it once, whichever set it belongs to.
pub fn validate_sets(sets: &[&[ParsedDocument]]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for docs in sets {
        for doc in *docs {
            let mut c = Check { doc, out: &mut out };
            check_name(&mut c);
            match &doc.document {
                Document::HeadnodeSet(d) => check_headnodes(&mut c, &d.spec),
                Document::ManateeVersion(d) => check_manatee(&mut c, &d.spec),
                Document::ShardTopology(d) => check_topology(&mut c, &d.spec),
            }
        }
        check_across(docs, &mut out);
    }
    check_identity(sets.iter().flat_map(|s| s.iter()), &mut out);
    out.sort_by(|a, b| a.location.cmp(&b.location));
    out
}

/// One kind and name once in the whole input, or the second would silently
/// overwrite the first (or fight it in the store).
fn check_identity<'a>(docs: impl Iterator<Item = &'a ParsedDocument>, out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<(crate::Kind, &str), &ParsedDocument> = HashMap::new();
    for doc in docs {
        let d = &doc.document;
        if let Some(first) = seen.insert((d.kind(), d.name()), doc) {
            seen.insert((d.kind(), d.name()), first);
            let mut c = Check { doc, out };
            c.error(
                "metadata.name",
                format!(
                    "{} `{}` is defined twice (also at {}): an input is stored as a whole, so a kind and name may appear in it once; give -f one set (directory) at a time",
                    d.kind(),
                    d.name(),
                    first.locate("metadata.name")
                ),
            );
        }
    }
}

fn check_name(c: &mut Check) {
    let name = c.doc.document.name();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        c.error("metadata.name", format!("`{name}` is not a valid name: use lowercase letters, digits, `-` and `.`, starting with a letter or digit"));
    }
}

/// Reports duplicates in a list of names; returns the set.
fn unique<'a>(c: &mut Check, path: &str, items: &'a [String], what: &str) -> HashSet<&'a str> {
    let mut seen = HashMap::new();
    for (i, s) in items.iter().enumerate() {
        if let Some(first) = seen.insert(s.as_str(), i) {
            c.error(
                format!("{path}[{i}]"),
                format!("{what} `{s}` is listed twice (also at {path}[{first}])"),
            );
        }
    }
    seen.into_keys().collect()
}

fn check_headnodes(c: &mut Check, spec: &HeadnodeSetSpec) {
    if spec.datacenter.trim().is_empty() {
        c.error("spec.datacenter", "datacenter must not be empty");
    }
    if spec.headnodes.is_empty() {
        c.error(
            "spec.headnodes",
            "a HeadnodeSet needs at least one headnode",
        );
    }
    for (i, s) in spec.headnodes.iter().enumerate() {
        if let Err(e) = check_server_ref(s) {
            c.error(format!("spec.headnodes[{i}]"), e);
        }
    }
    let headnodes = unique(c, "spec.headnodes", &spec.headnodes, "headnode");
    if !headnodes.contains(spec.primary.as_str()) {
        c.error(
            "spec.primary",
            format!("primary `{}` is not one of spec.headnodes", spec.primary),
        );
    }
    let decommissioned: HashSet<&str> = spec.decommission.iter().map(String::as_str).collect();
    let ha = spec.headnodes.len() > 1;
    let services: [(&str, &Vec<String>); 3] = [
        ("binder", &spec.ha_services.binder),
        ("manatee", &spec.ha_services.manatee),
        ("moray", &spec.ha_services.moray),
    ];
    for (svc, servers) in services {
        let path = format!("spec.haServices.{svc}");
        unique(c, &path, servers, "server");
        for (i, s) in servers.iter().enumerate() {
            if !headnodes.contains(s.as_str()) {
                c.error(
                    format!("{path}[{i}]"),
                    format!("`{s}` is not a headnode (not in spec.headnodes)"),
                );
            }
            if decommissioned.contains(s.as_str()) {
                c.error(
                    format!("{path}[{i}]"),
                    format!("`{s}` is being decommissioned and cannot keep a {svc} instance"),
                );
            }
        }
    }
    let n = spec.ha_services.binder.len();
    if ha && (n < 3 || n.is_multiple_of(2)) {
        c.error("spec.haServices.binder", format!("an HA set needs an odd number of at least 3 binder (ZooKeeper) instances to keep quorum; got {n}"));
    } else if !ha && n != 1 {
        c.error(
            "spec.haServices.binder",
            format!("a single-headnode datacenter runs exactly 1 binder; got {n}"),
        );
    }
    let m = spec.ha_services.manatee.len();
    if m == 2 {
        c.error(
            "spec.haServices.manatee",
            "a 2-peer manatee shard never fails over; use 1 (one-node-write mode) or at least 3",
        );
    } else if ha && m < 3 {
        c.error(
            "spec.haServices.manatee",
            format!("an HA set needs at least 3 manatee peers (primary, sync, async); got {m}"),
        );
    } else if m == 0 {
        c.error(
            "spec.haServices.manatee",
            "at least one manatee peer is required",
        );
    }
    if spec.ha_services.moray.is_empty() {
        c.error(
            "spec.haServices.moray",
            "at least one moray instance is required",
        );
    }
    for (i, s) in spec.decommission.iter().enumerate() {
        if s == &spec.primary {
            c.error(
                format!("spec.decommission[{i}]"),
                format!(
                    "`{s}` is the primary headnode; move spec.primary to another headnode first"
                ),
            );
        }
        if !headnodes.contains(s.as_str()) {
            c.warn(
                format!("spec.decommission[{i}]"),
                format!("`{s}` is not in spec.headnodes; nothing to decommission"),
            );
        }
    }
    if let Some(iv) = &spec.restore.backup_interval {
        match parse_duration(iv) {
            Err(e) => c.error("spec.restore.backupInterval", e),
            Ok(d) if d < Duration::from_secs(60) || d > Duration::from_secs(30 * 86400) => c.error(
                "spec.restore.backupInterval",
                format!("`{iv}` cannot be meant: back up at least every 30d and at most every 1m, e.g. `1h`"),
            ),
            Ok(_) => {}
        }
    }
}

/// A health gate's timeout: a step waits this long before it stops. Zero
/// would stop every step at once, and a wait of more than a week is no
/// timeout; both are refused.
fn check_timeout(v: &str) -> Result<(), String> {
    let d = parse_duration(v)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(7 * 86400) {
        return Err(format!(
            "`{v}` cannot be meant: a timeout of less than 1s stops every step at once, one of more than 7d never fires; use e.g. `15m` (sdcadm waits 15m for a peer to catch up and 5m for a zone)"
        ));
    }
    Ok(())
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn check_manatee(c: &mut Check, spec: &ManateeVersionSpec) {
    if spec.shards.is_empty() {
        c.error("spec.shards", "select at least one shard");
    }
    for (i, s) in spec.shards.iter().enumerate() {
        if let Err(e) = check_shard_name(s) {
            c.error(format!("spec.shards[{i}]"), e);
        }
    }
    let shards = unique(c, "spec.shards", &spec.shards, "shard");
    if !is_uuid(&spec.image.uuid) {
        c.error(
            "spec.image.uuid",
            format!("`{}` is not an IMGAPI image UUID", spec.image.uuid),
        );
    }
    if let Some(v) = &spec.image.version
        && let Err(e) = check_image_version(v)
    {
        c.error("spec.image.version", e);
    }
    let r = &spec.rollout;
    if r.parallelism == 0 {
        c.error("spec.rollout.parallelism", "parallelism must be at least 1");
    }
    unique(c, "spec.rollout.order", &r.order, "shard");
    for (i, s) in r.order.iter().enumerate() {
        if !shards.contains(s.as_str()) {
            c.error(
                format!("spec.rollout.order[{i}]"),
                format!("`{s}` is not one of spec.shards"),
            );
        }
    }
    if let Some(canary) = &r.canary
        && !shards.contains(canary.as_str())
    {
        c.error(
            "spec.rollout.canary",
            format!("canary `{canary}` is not one of spec.shards"),
        );
    }
    if let Some(w) = &r.maintenance_window {
        for (i, d) in w.days.iter().enumerate() {
            if !DAYS.contains(&d.as_str()) {
                c.error(
                    format!("spec.rollout.maintenanceWindow.days[{i}]"),
                    format!("`{d}` is not a day; use Mon, Tue, Wed, Thu, Fri, Sat or Sun"),
                );
            }
        }
        let hm = w
            .start
            .split_once(':')
            .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)));
        if !matches!(hm, Some((h, m)) if h < 24 && m < 60 && w.start.len() == 5) {
            c.error(
                "spec.rollout.maintenanceWindow.start",
                format!("`{}` is not a UTC time HH:MM", w.start),
            );
        }
        match parse_duration(&w.duration) {
            Err(e) => c.error("spec.rollout.maintenanceWindow.duration", e),
            Ok(d) if d.is_zero() || d.as_secs() > 7 * 86400 => c.error(
                "spec.rollout.maintenanceWindow.duration",
                "a window lasts more than 0 and at most 7 days",
            ),
            Ok(_) => {}
        }
    }
    for (field, v) in [
        ("catchUpTimeout", &spec.health.catch_up_timeout),
        ("instanceUpTimeout", &spec.health.instance_up_timeout),
    ] {
        if let Err(e) = check_timeout(v) {
            c.error(format!("spec.health.{field}"), e);
        }
    }
    if spec.transplant.is_some()
        && matches!(
            spec.strategy,
            crate::manatee::Strategy::Rolling | crate::manatee::Strategy::Switchover
        )
    {
        c.warn(
            "spec.transplant",
            "transplant options are ignored with strategy: rolling or switchover",
        );
    }
    if let Some(t) = &spec.transplant
        && let Some(img) = &t.moray_image
        && !is_uuid(img)
    {
        c.error(
            "spec.transplant.morayImage",
            format!("`{img}` is not an IMGAPI image UUID"),
        );
    }
}

fn check_topology(c: &mut Check, spec: &ShardTopologySpec) {
    if spec.region.trim().is_empty() {
        c.error("spec.region", "region must not be empty");
    }
    if spec.dns_domain.trim().is_empty() {
        c.error("spec.dnsDomain", "dnsDomain must not be empty");
    }
    let suffix = format!(".moray.{}", spec.dns_domain);
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, shard) in spec.shards.iter().enumerate() {
        let p = format!("spec.shards[{i}]");
        if let Err(e) = check_shard_name(&shard.name) {
            c.error(format!("{p}.name"), e);
        } else if !shard.name.ends_with(&suffix) {
            c.error(
                format!("{p}.name"),
                format!(
                    "`{}` is not in this region's domain; expected `N{suffix}`",
                    shard.name
                ),
            );
        }
        if let Some(first) = by_name.insert(&shard.name, i) {
            c.error(
                format!("{p}.name"),
                format!(
                    "shard `{}` is defined twice (also at spec.shards[{first}])",
                    shard.name
                ),
            );
        }
        if shard.roles.is_empty() {
            c.error(
                format!("{p}.roles"),
                "a shard needs at least one role: index, marlin or storage",
            );
        }
        let mut roles = HashSet::new();
        for (j, r) in shard.roles.iter().enumerate() {
            if !roles.insert(r) {
                c.error(
                    format!("{p}.roles[{j}]"),
                    format!("role {r:?} is listed twice"),
                );
            }
        }
        match shard.peers.len() {
            0 => c.error(format!("{p}.peers"), "a shard needs at least one manatee peer"),
            2 => c.error(format!("{p}.peers"), "a 2-peer manatee shard never fails over; use 1 (one-node-write mode) or at least 3"),
            _ => {}
        }
        let mut servers: HashMap<&str, usize> = HashMap::new();
        for (j, peer) in shard.peers.iter().enumerate() {
            if let Err(e) = check_server_ref(&peer.server) {
                c.error(format!("{p}.peers[{j}].server"), e);
            }
            if let Some(first) = servers.insert(&peer.server, j) {
                c.error(
                    format!("{p}.peers[{j}].server"),
                    format!("two peers of shard `{}` on server `{}` (also {p}.peers[{first}]): losing that server would take both", shard.name, peer.server),
                );
            }
        }
        if shard.morays == 0 {
            c.error(format!("{p}.morays"), "a shard needs at least one moray");
        }
    }
    let index: HashSet<&str> = spec.index_shards().into_iter().collect();
    if index.is_empty() {
        c.error(
            "spec.shards",
            "at least one shard must have the `index` role to hold the hash ring",
        );
    }
    let n = spec.ring.vnodes;
    if n == 0 {
        c.error("spec.ring.vnodes", "the ring needs at least one vnode");
        return;
    }
    if n > MAX_VNODES {
        c.error(
            "spec.ring.vnodes",
            format!("{n} vnodes: a ring holds at most {MAX_VNODES} vnodes (fash's limit)"),
        );
    }
    if (n as usize) < index.len() {
        c.error(
            "spec.ring.vnodes",
            format!("{n} vnodes cannot cover {} index shards", index.len()),
        );
    }
    let mut holders: HashSet<&str> = index.clone();
    if spec.ring.assignment.is_some() {
        holders.clear();
        check_assignment(c, spec, &index, &by_name, &mut holders);
    }
    check_intents(c, spec, &index, &by_name, &holders);
}

/// The ring's changes: each written in exactly one form, named once, its
/// shards index shards of `spec.shards`, never empty, no vnode moved twice
/// by the listed moves. (Whether the live ring's owner of a vnode is the
/// move's source is the plan's question: `crds::ring::planned_moves`.)
fn check_intents(
    c: &mut Check,
    spec: &ShardTopologySpec,
    index: &HashSet<&str>,
    by_name: &HashMap<&str, usize>,
    holders: &HashSet<&str>,
) {
    let n = spec.ring.vnodes;
    let mut names: HashMap<String, usize> = HashMap::new();
    // Vnodes listed by `move` intents so far, as disjoint ranges.
    let mut listed = Owners::default();
    for (i, intent) in spec.ring.intents.iter().enumerate() {
        let base = format!("spec.ring.intents[{i}]");
        let form = match intent.form() {
            Ok(f) => f,
            Err(e) => {
                c.error(base, e.to_string());
                continue;
            }
        };
        let name = intent.name();
        if let Some(first) = names.insert(name.clone(), i) {
            let at = if intent.name.is_some() {
                format!("{base}.name")
            } else {
                base.clone()
            };
            c.error(
                at,
                format!("two changes are named `{name}` (also spec.ring.intents[{first}]): status records a change done by its name; give one a `name`"),
            );
        }
        let p = format!("{base}.{}", form.key());
        let target = |c: &mut Check, path: String, to: &str| {
            if !by_name.contains_key(to) {
                c.error(path, format!("`{to}` must be an index shard defined in spec.shards; it is not in spec.shards (a move goes onto a shard this document defines)"));
            } else if !index.contains(to) {
                c.error(
                    path,
                    format!("`{to}` must be an index shard defined in spec.shards"),
                );
            }
        };
        if let Some(from) = form.from()
            && !index.contains(from)
        {
            c.error(
                format!("{p}.from"),
                format!(
                    "`{from}` is not an index shard of spec.shards; only index shards hold vnodes"
                ),
            );
        }
        match form {
            IntentForm::Split(s) => {
                if index.contains(s.from.as_str()) && !holders.contains(s.from.as_str()) {
                    c.error(
                        format!("{p}.from"),
                        format!(
                            "`{}` holds no vnodes in this ring; nothing to split",
                            s.from
                        ),
                    );
                }
                if s.from == s.to {
                    c.error(format!("{p}.to"), "a shard cannot be split onto itself");
                } else {
                    target(c, format!("{p}.to"), &s.to);
                }
                if let Err(e) = parse_fraction(&s.fraction) {
                    c.error(format!("{p}.fraction"), e);
                }
            }
            IntentForm::SplitWays(s) => {
                if s.to.is_empty() {
                    c.error(
                        format!("{p}.to"),
                        "an empty move: list the new shards (N-1 of them for an N-way split)",
                    );
                }
                let mut seen = HashSet::new();
                for (j, to) in s.to.iter().enumerate() {
                    let tp = format!("{p}.to[{j}]");
                    if *to == s.from {
                        c.error(tp, "a shard cannot be split onto itself");
                    } else if !seen.insert(to.as_str()) {
                        c.error(tp, format!("`{to}` is listed twice"));
                    } else {
                        target(c, tp, to);
                    }
                }
            }
            IntentForm::Move(m) => {
                if m.from == m.to {
                    c.error(
                        format!("{p}.to"),
                        "a move onto the shard it comes from moves nothing",
                    );
                } else {
                    target(c, format!("{p}.to"), &m.to);
                }
                if m.vnodes.is_empty() {
                    c.error(
                        format!("{p}.vnodes"),
                        "an empty move: list the vnodes to move",
                    );
                }
                for (j, r) in m.vnodes.iter().enumerate() {
                    let rp = format!("{p}.vnodes[{j}]");
                    let (lo, hi) = match parse_vnode_range(r) {
                        Ok(x) => x,
                        Err(e) => {
                            c.error(rp, e);
                            continue;
                        }
                    };
                    if hi >= n {
                        c.error(
                            rp,
                            format!(
                                "vnode {hi} is out of range: the ring has vnodes 0-{}",
                                n - 1
                            ),
                        );
                        continue;
                    }
                    if let Some((v, other)) = listed.first_held(lo, hi) {
                        let whose = if other == i {
                            "this move".to_string()
                        } else {
                            format!("spec.ring.intents[{other}]")
                        };
                        c.error(
                            rp,
                            format!(
                                "vnode {v} is moved twice (also by {whose}): one move per vnode"
                            ),
                        );
                    }
                    listed.paint(lo, hi, i);
                }
            }
            IntentForm::MoveHottest(h) => {
                if h.from == h.to {
                    c.error(
                        format!("{p}.to"),
                        "a move onto the shard it comes from moves nothing",
                    );
                } else {
                    target(c, format!("{p}.to"), &h.to);
                }
                if h.count == 0 {
                    c.error(
                        format!("{p}.count"),
                        "an empty move: count must be at least 1",
                    );
                } else if h.count >= n {
                    c.error(
                        format!("{p}.count"),
                        format!("{} vnodes asked of a {n}-vnode ring", h.count),
                    );
                }
            }
            IntentForm::AddIndexShard(a) => {
                target(c, format!("{p}.shard"), &a.shard);
                let assigned = spec
                    .ring
                    .assignment
                    .iter()
                    .flatten()
                    .any(|x| x.shard == a.shard && !x.vnodes.is_empty());
                if assigned {
                    c.error(
                        format!("{p}.shard"),
                        format!("`{}` already holds vnodes in spec.ring.assignment: a shard is added to the index tier empty, then moves put vnodes on it", a.shard),
                    );
                }
            }
        }
    }
}

fn check_assignment<'a>(
    c: &mut Check,
    spec: &'a ShardTopologySpec,
    index: &HashSet<&str>,
    by_name: &HashMap<&str, usize>,
    holders: &mut HashSet<&'a str>,
) {
    let n = spec.ring.vnodes;
    let assignment = spec.ring.assignment.as_ref().expect("checked by caller");
    // Who holds each vnode so far, as disjoint ranges (a later range paints
    // over an earlier one): work and memory follow the ranges written, not
    // the size of the ring.
    let mut owners = Owners::default();
    for (i, a) in assignment.iter().enumerate() {
        let p = format!("spec.ring.assignment[{i}]");
        if !by_name.contains_key(a.shard.as_str()) {
            c.error(
                format!("{p}.shard"),
                format!("shard `{}` still holds vnodes but is not in spec.shards: a shard cannot leave the ring while it holds vnodes", a.shard),
            );
        } else if !index.contains(a.shard.as_str()) {
            c.error(
                format!("{p}.shard"),
                format!(
                    "shard `{}` holds vnodes but does not have the `index` role",
                    a.shard
                ),
            );
        }
        for (j, r) in a.vnodes.iter().enumerate() {
            let rp = format!("{p}.vnodes[{j}]");
            let (lo, hi) = match parse_vnode_range(r) {
                Ok(x) => x,
                Err(e) => {
                    c.error(rp, e);
                    continue;
                }
            };
            if hi >= n {
                c.error(
                    rp.clone(),
                    format!(
                        "vnode {hi} is out of range: the ring has vnodes 0-{}",
                        n - 1
                    ),
                );
            }
            if lo <= hi && lo < n {
                holders.insert(a.shard.as_str());
            }
            let hi = hi.min(n.saturating_sub(1));
            if lo > hi {
                continue;
            }
            // Report a double assignment once per range, naming the first clash.
            if let Some((v, other)) = owners.first_held(lo, hi) {
                c.error(rp, format!("vnode {v} is assigned twice (also to `{}` at spec.ring.assignment[{other}])", assignment[other].shard));
            }
            owners.paint(lo, hi, i);
        }
    }
    let unassigned = owners.gaps(n);
    if !unassigned.is_empty() {
        let total: u64 = unassigned.iter().map(|(a, b)| u64::from(b - a) + 1).sum();
        let shown: Vec<String> = unassigned
            .iter()
            .take(5)
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        let more = if unassigned.len() > 5 { ", ..." } else { "" };
        c.error(
            "spec.ring.assignment",
            format!(
                "{total} vnodes are not assigned to any shard: {}{more}",
                shown.join(", ")
            ),
        );
    }
}

/// Vnode ranges and the assignment entry holding each: start -> (end, entry),
/// disjoint, inclusive.
#[derive(Default)]
struct Owners(BTreeMap<u32, (u32, usize)>);

impl Owners {
    /// The lowest vnode of `lo..=hi` already held, and by which entry.
    fn first_held(&self, lo: u32, hi: u32) -> Option<(u32, usize)> {
        if let Some((_, &(end, who))) = self.0.range(..=lo).next_back()
            && end >= lo
        {
            return Some((lo, who));
        }
        self.0
            .range(lo..=hi)
            .next()
            .map(|(&start, &(_, who))| (start, who))
    }

    /// `lo..=hi` now held by `who`.
    fn paint(&mut self, lo: u32, hi: u32, who: usize) {
        if let Some((&start, &(end, prev))) = self.0.range(..lo).next_back()
            && end >= lo
        {
            self.0.insert(start, (lo - 1, prev));
            if end > hi {
                self.0.insert(hi + 1, (end, prev));
            }
        }
        let inside: Vec<u32> = self.0.range(lo..=hi).map(|(&s, _)| s).collect();
        for start in inside {
            let (end, prev) = self.0.remove(&start).expect("listed");
            if end > hi {
                self.0.insert(hi + 1, (end, prev));
            }
        }
        self.0.insert(lo, (hi, who));
    }

    /// The ranges of `0..n` nobody holds, in order.
    fn gaps(&self, n: u32) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut next = 0u32;
        for (&start, &(end, _)) in &self.0 {
            if start > next {
                out.push((next, start - 1));
            }
            next = end.saturating_add(1).max(next);
        }
        if n > next {
            out.push((next, n - 1));
        }
        out
    }
}

fn check_across(docs: &[ParsedDocument], out: &mut Vec<Diagnostic>) {
    let mut shard_owner: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    let mut datacenters: HashMap<&str, usize> = HashMap::new();
    let mut regions: HashMap<&str, usize> = HashMap::new();
    for (i, doc) in docs.iter().enumerate() {
        let mut c = Check { doc, out };
        let d = &doc.document;
        match d {
            Document::ManateeVersion(mv) => {
                for (j, shard) in mv.spec.shards.iter().enumerate() {
                    match shard_owner.get(shard.as_str()) {
                        Some((other, other_name)) if *other != i => c.error(
                            format!("spec.shards[{j}]"),
                            format!("shard `{shard}` is already selected by ManateeVersion `{other_name}` ({}); a shard may have one ManateeVersion", docs[*other].locate("")),
                        ),
                        _ => {
                            shard_owner.insert(shard, (i, mv.name()));
                        }
                    }
                }
            }
            Document::HeadnodeSet(hs) => {
                if let Some(first) = datacenters.insert(&hs.spec.datacenter, i) {
                    c.error(
                        "spec.datacenter",
                        format!(
                            "datacenter `{}` already has HeadnodeSet `{}`; one per datacenter",
                            hs.spec.datacenter,
                            docs[first].document.name()
                        ),
                    );
                }
            }
            Document::ShardTopology(st) => {
                if let Some(first) = regions.insert(&st.spec.region, i) {
                    c.error(
                        "spec.region",
                        format!(
                            "region `{}` already has ShardTopology `{}`; one per region",
                            st.spec.region,
                            docs[first].document.name()
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_documents;

    fn check(yaml: &str) -> Vec<Diagnostic> {
        let (docs, diags) = parse_documents("t.yaml", yaml);
        assert!(diags.is_empty(), "parse: {diags:?}");
        validate_all(&docs)
            .into_iter()
            .filter(Diagnostic::is_error)
            .collect()
    }

    fn has(diags: &[Diagnostic], path: &str, text: &str) -> bool {
        diags
            .iter()
            .any(|d| d.path == path && d.message.contains(text))
    }

    const HS: &str = "\
apiVersion: tritonctl/v1alpha1
kind: HeadnodeSet
metadata: {name: lab}
spec:
  datacenter: lab-1
  headnodes: [hn0, hn1, hn2]
  primary: hn0
  haServices:
    binder: [hn0, hn1, hn2]
    manatee: [hn0, hn1, hn2]
    moray: [hn0, hn1, hn2]
";

    #[test]
    fn a_good_headnode_set_passes() {
        assert!(check(HS).is_empty());
    }

    #[test]
    fn binder_quorum_rules() {
        let d = check(&HS.replace("binder: [hn0, hn1, hn2]", "binder: [hn0, hn1]"));
        assert!(
            has(&d, "spec.haServices.binder", "odd number of at least 3"),
            "{d:?}"
        );
        let d = check(&HS.replace("binder: [hn0, hn1, hn2]", "binder: [hn0]"));
        assert!(has(&d, "spec.haServices.binder", "odd number"));
        let hs4 = HS
            .replace(
                "[hn0, hn1, hn2]\n  primary",
                "[hn0, hn1, hn2, hn3]\n  primary",
            )
            .replace("binder: [hn0, hn1, hn2]", "binder: [hn0, hn1, hn2, hn3]");
        assert!(has(&check(&hs4), "spec.haServices.binder", "got 4"));
    }

    #[test]
    fn headnode_set_errors_are_all_reported() {
        let bad = HS
            .replace("manatee: [hn0, hn1, hn2]", "manatee: [hn0, hn9]")
            .replace("primary: hn0", "primary: hn7")
            .replace("moray: [hn0, hn1, hn2]", "moray: []");
        let d = check(&bad);
        assert!(has(&d, "spec.primary", "not one of spec.headnodes"));
        assert!(has(&d, "spec.haServices.manatee[1]", "not a headnode"));
        assert!(has(&d, "spec.haServices.manatee", "never fails over"));
        assert!(has(&d, "spec.haServices.moray", "at least one moray"));
        assert_eq!(d[0].location.file, "t.yaml");
    }

    const ST: &str = "\
apiVersion: tritonctl/v1alpha1
kind: ShardTopology
metadata: {name: us-east}
spec:
  region: us-east
  dnsDomain: us-east.joyent.us
  shards:
    - name: 1.moray.us-east.joyent.us
      roles: [marlin, storage]
      peers: [{server: cn1}, {server: cn2}, {server: cn3}]
    - name: 2.moray.us-east.joyent.us
      roles: [index]
      peers: [{server: cn1}, {server: cn2}, {server: cn3}]
    - name: 3.moray.us-east.joyent.us
      roles: [index]
      peers: [{server: cn4}, {server: cn5}, {server: cn6}]
  ring:
    vnodes: 100
    assignment:
      - {shard: 2.moray.us-east.joyent.us, vnodes: [0-49]}
      - {shard: 3.moray.us-east.joyent.us, vnodes: [50-99]}
";

    #[test]
    fn a_ring_larger_than_fash_allows_is_refused() {
        // Found by fuzzing: `vnodes: 4294967295` with an assignment made the
        // check allocate an owner slot per vnode (16 GiB) and walk them.
        let d = check(&ST.replace("vnodes: 100", "vnodes: 268435457"));
        assert!(
            has(&d, "spec.ring.vnodes", "at most 268435456 vnodes"),
            "{d:?}"
        );
        assert!(
            !check(&ST.replace("vnodes: 100", "vnodes: 268435456"))
                .iter()
                .any(|d| d.path == "spec.ring.vnodes"),
        );
    }

    #[test]
    fn overlapping_ranges_name_the_first_clash_of_each_range() {
        let d = check(&ST.replace(
            "      - {shard: 3.moray.us-east.joyent.us, vnodes: [50-99]}\n",
            "      - {shard: 3.moray.us-east.joyent.us, vnodes: [50-89, 30-39, 45-60, 0-99, 97-97]}\n",
        ));
        let got: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.path.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "spec.ring.assignment[1].vnodes[1]",
                    "vnode 30 is assigned twice (also to `2.moray.us-east.joyent.us` at spec.ring.assignment[0])"
                ),
                (
                    "spec.ring.assignment[1].vnodes[2]",
                    "vnode 45 is assigned twice (also to `2.moray.us-east.joyent.us` at spec.ring.assignment[0])"
                ),
                (
                    "spec.ring.assignment[1].vnodes[3]",
                    "vnode 0 is assigned twice (also to `2.moray.us-east.joyent.us` at spec.ring.assignment[0])"
                ),
                (
                    "spec.ring.assignment[1].vnodes[4]",
                    "vnode 97 is assigned twice (also to `3.moray.us-east.joyent.us` at spec.ring.assignment[1])"
                ),
            ],
            "{d:#?}"
        );
        let d = check(&ST.replace("vnodes: [50-99]", "vnodes: [52-60, 70-70, 90-97]"));
        assert!(
            has(
                &d,
                "spec.ring.assignment",
                "32 vnodes are not assigned to any shard: 50-51, 61-69, 71-89, 98-99"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn a_good_topology_passes() {
        assert!(check(ST).is_empty(), "{:?}", check(ST));
    }

    #[test]
    fn two_peers_on_one_server() {
        let d = check(&ST.replacen(
            "{server: cn2}, {server: cn3}",
            "{server: cn2}, {server: cn1}",
            1,
        ));
        assert!(
            has(&d, "spec.shards[0].peers[2].server", "on server `cn1`"),
            "{d:?}"
        );
        assert_eq!(d[0].location.line, 10);
    }

    #[test]
    fn vnode_assigned_twice_unassigned_and_out_of_range() {
        let d = check(&ST.replace("vnodes: [50-99]", "vnodes: [40-98]"));
        assert!(
            has(
                &d,
                "spec.ring.assignment[1].vnodes[0]",
                "vnode 40 is assigned twice"
            ),
            "{d:?}"
        );
        assert!(has(
            &d,
            "spec.ring.assignment",
            "1 vnodes are not assigned to any shard: 99"
        ));
        let d = check(&ST.replace("vnodes: [50-99]", "vnodes: [50-100]"));
        assert!(has(
            &d,
            "spec.ring.assignment[1].vnodes[0]",
            "vnode 100 is out of range"
        ));
    }

    #[test]
    fn a_shard_cannot_leave_the_ring_while_holding_vnodes() {
        let without3 = ST.replace(
            "    - name: 3.moray.us-east.joyent.us\n      roles: [index]\n      peers: [{server: cn4}, {server: cn5}, {server: cn6}]\n",
            "",
        );
        let d = check(&without3);
        assert!(
            has(
                &d,
                "spec.ring.assignment[1].shard",
                "cannot leave the ring while it holds vnodes"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn split_intents() {
        let st = format!(
            "{ST}    intents:\n      - split: {{from: 2.moray.us-east.joyent.us, to: 4.moray.us-east.joyent.us, fraction: 2/1}}\n"
        );
        let d = check(&st);
        assert!(
            has(
                &d,
                "spec.ring.intents[0].split.to",
                "must be an index shard"
            ),
            "{d:?}"
        );
        assert!(has(
            &d,
            "spec.ring.intents[0].split.fraction",
            "not a fraction"
        ));
    }

    /// ST with a shard 4 (index, no vnodes) and `intents` appended.
    fn st_with_intents(intents: &str) -> String {
        let st = ST.replace(
            "  ring:\n",
            "    - name: 4.moray.us-east.joyent.us\n      roles: [index]\n      peers: [{server: cn7}]\n  ring:\n",
        );
        format!("{st}    intents:\n{intents}")
    }

    #[test]
    fn every_move_form_passes_when_well_formed() {
        let d = check(&st_with_intents(
            "      - addIndexShard: {shard: 4.moray.us-east.joyent.us}\n      - move: {from: 2.moray.us-east.joyent.us, to: 4.moray.us-east.joyent.us, vnodes: [\"0-9\", \"12\"]}\n      - moveHottest: {from: 3.moray.us-east.joyent.us, to: 4.moray.us-east.joyent.us, count: 5}\n      - name: three-ways\n        splitWays: {from: 2.moray.us-east.joyent.us, to: [4.moray.us-east.joyent.us]}\n",
        ));
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn move_refusals_name_the_field_and_its_line() {
        let yaml = st_with_intents(concat!(
            "      - move: {from: 2.moray.us-east.joyent.us, to: 9.moray.us-east.joyent.us, vnodes: [\"0-9\"]}\n",
            "      - move: {from: 2.moray.us-east.joyent.us, to: 3.moray.us-east.joyent.us, vnodes: []}\n",
            "      - name: again\n        move: {from: 2.moray.us-east.joyent.us, to: 4.moray.us-east.joyent.us, vnodes: [\"5-20\"]}\n",
            "      - moveHottest: {from: 2.moray.us-east.joyent.us, to: 4.moray.us-east.joyent.us, count: 0}\n",
            "      - splitWays: {from: 2.moray.us-east.joyent.us, to: []}\n",
            "      - {}\n",
            "      - addIndexShard: {shard: 3.moray.us-east.joyent.us}\n",
        ));
        let d = check(&yaml);
        // A move onto a shard not in `shards`.
        assert!(
            has(&d, "spec.ring.intents[0].move.to", "not in spec.shards"),
            "{d:?}"
        );
        // An empty move, each form.
        assert!(has(&d, "spec.ring.intents[1].move.vnodes", "an empty move"));
        assert!(has(
            &d,
            "spec.ring.intents[3].moveHottest.count",
            "an empty move"
        ));
        assert!(has(
            &d,
            "spec.ring.intents[4].splitWays.to",
            "an empty move"
        ));
        // Two moves of one vnode.
        assert!(has(
            &d,
            "spec.ring.intents[2].move.vnodes[0]",
            "vnode 5 is moved twice (also by spec.ring.intents[0])"
        ));
        // No form at all.
        assert!(has(&d, "spec.ring.intents[5]", "write exactly one of"));
        // A shard added to the index tier must come empty.
        assert!(has(
            &d,
            "spec.ring.intents[6].addIndexShard.shard",
            "already holds vnodes"
        ));
        let e = d
            .iter()
            .find(|x| x.path == "spec.ring.intents[2].move.vnodes[0]")
            .unwrap();
        assert_eq!(e.location.file, "t.yaml");
        let line = yaml
            .lines()
            .position(|l| l.contains("name: again"))
            .unwrap()
            + 2;
        assert_eq!(e.location.line as usize, line, "{e}");
        assert!(e.location.column > 1, "{e}");
    }

    #[test]
    fn two_changes_of_one_name_are_refused() {
        let d = check(&st_with_intents(
            "      - move: {from: 2.moray.us-east.joyent.us, to: 4.moray.us-east.joyent.us, vnodes: [\"1\"]}\n      - move: {from: 2.moray.us-east.joyent.us, to: 4.moray.us-east.joyent.us, vnodes: [\"2\"]}\n",
        ));
        assert!(
            has(
                &d,
                "spec.ring.intents[1]",
                "two changes are named `move-2-to-4`"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn two_forms_in_one_change_are_refused() {
        let d = check(&st_with_intents(
            "      - split: {from: 2.moray.us-east.joyent.us, to: 4.moray.us-east.joyent.us}\n        addIndexShard: {shard: 4.moray.us-east.joyent.us}\n",
        ));
        assert!(
            has(&d, "spec.ring.intents[0]", "found split, addIndexShard"),
            "{d:?}"
        );
    }

    const MV: &str = "\
apiVersion: tritonctl/v1alpha1
kind: ManateeVersion
metadata: {name: NAME}
spec:
  shards: [SHARDS]
  image: {uuid: 2a3d1f0e-9b8c-4d7e-a6f5-0123456789ab}
";

    #[test]
    fn two_manatee_versions_cannot_select_one_shard() {
        let a = MV.replace("NAME", "a").replace("SHARDS", "sdc");
        let b = MV
            .replace("NAME", "b")
            .replace("SHARDS", "1.moray.x.y, sdc");
        let d = check(&format!("{a}---\n{b}"));
        assert!(
            has(
                &d,
                "spec.shards[1]",
                "already selected by ManateeVersion `a`"
            ),
            "{d:?}"
        );
        assert_eq!(d[0].location.line, 12);
    }

    #[test]
    fn rollout_policy_rules() {
        let mv = MV.replace("NAME", "a").replace("SHARDS", "sdc")
            + "  rollout:\n    parallelism: 0\n    canary: 3.moray.x.y\n    maintenanceWindow: {days: [Caturday], start: '25:00', duration: 9d}\n";
        let d = check(&mv);
        assert!(has(&d, "spec.rollout.parallelism", "at least 1"));
        assert!(has(&d, "spec.rollout.canary", "not one of spec.shards"));
        assert!(has(
            &d,
            "spec.rollout.maintenanceWindow.days[0]",
            "not a day"
        ));
        assert!(has(&d, "spec.rollout.maintenanceWindow.start", "HH:MM"));
        assert!(has(
            &d,
            "spec.rollout.maintenanceWindow.duration",
            "at most 7 days"
        ));
    }

    #[test]
    fn duplicate_names_of_one_kind() {
        let a = MV.replace("NAME", "a").replace("SHARDS", "sdc");
        let b = MV.replace("NAME", "a").replace("SHARDS", "1.moray.x.y");
        assert!(has(
            &check(&format!("{a}---\n{b}")),
            "metadata.name",
            "defined twice"
        ));
    }

    #[test]
    fn one_kind_and_name_twice_across_sets_names_both_places() {
        let (a, _) = parse_documents(
            "x/a.yaml",
            &MV.replace("NAME", "a").replace("SHARDS", "sdc"),
        );
        let (b, _) = parse_documents(
            "y/b.yaml",
            &MV.replace("NAME", "a").replace("SHARDS", "1.moray.x.y"),
        );
        assert!(validate_all(&a).is_empty() && validate_all(&b).is_empty());
        let d = validate_sets(&[&a, &b]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "metadata.name");
        assert_eq!(
            (d[0].location.file.as_str(), d[0].location.line),
            ("y/b.yaml", 3)
        );
        assert!(
            d[0].message
                .contains("ManateeVersion `a` is defined twice (also at x/a.yaml:3:"),
            "{}",
            d[0].message
        );
        // Another kind may share the name.
        let (hs, _) = parse_documents("z/hs.yaml", &HS.replace("name: lab", "name: a"));
        assert!(validate_sets(&[&a, &hs]).is_empty());
    }

    #[test]
    fn timeouts_that_cannot_be_meant_are_refused() {
        let base = MV.replace("NAME", "a").replace("SHARDS", "sdc");
        for (field, value) in [
            ("catchUpTimeout", "0s"),
            ("catchUpTimeout", "500ms"),
            ("instanceUpTimeout", "'0'"),
            ("instanceUpTimeout", "8d"),
        ] {
            let d = check(&format!("{base}  health:\n    {field}: {value}\n"));
            assert!(
                has(&d, &format!("spec.health.{field}"), "cannot be meant"),
                "{field}: {value}: {d:?}"
            );
        }
        assert!(
            check(&format!(
                "{base}  health:\n    catchUpTimeout: 1s\n    instanceUpTimeout: 7d\n"
            ))
            .is_empty()
        );
        let hs = format!("{HS}  restore:\n    backupInterval: 0s\n");
        assert!(has(
            &check(&hs),
            "spec.restore.backupInterval",
            "cannot be meant"
        ));
        let hs = format!("{HS}  restore:\n    backupInterval: 1h\n");
        assert!(check(&hs).is_empty());
    }

    #[test]
    fn image_version_must_be_a_build_stamp_or_semver() {
        let mv = MV.replace("NAME", "a").replace("SHARDS", "sdc").replace(
            "{uuid: 2a3d1f0e-9b8c-4d7e-a6f5-0123456789ab}",
            "{uuid: 2a3d1f0e-9b8c-4d7e-a6f5-0123456789ab, version: VERSION}",
        );
        let d = check(&mv.replace("VERSION", "'the new one'"));
        assert!(
            has(&d, "spec.image.version", "is not an image version"),
            "{d:?}"
        );
        assert_eq!(d[0].location.line, 6);
        assert!(check(&mv.replace("VERSION", "master-20250101T000000Z-g1234567")).is_empty());
    }
}
