//! What a review is planned against, and the snapshot file that records it.
//!
//! `tritonctl snapshot` writes an [`Observed`]: the stored documents and
//! their journals, every manatee shard the documents name (SAPI instances,
//! VMAPI images and states, ZooKeeper cluster state and election, `manatee-adm
//! pg-status`, exactly as `TritonManatee::observe` reports them), the IMGAPI
//! records of the images involved, and the ring image. [`Recorded`] serves
//! that file through the same [`ManateeObserve`] trait the controller plans
//! with, so `diff --observed` runs the same planner offline.
//!
//! A review only observes, and the compiler holds it to that: [`World`]
//! hands out observing traits only ([`ManateeObserve`]; transplant and HA
//! observations as values), never the acting ones (`ManateeAct`,
//! `TransplantAct`, `HaAct`), so no review code can call a mutation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use coord::Coordination;
use crds::{Document, Kind};
use reconcilers::error::WorldError;
use reconcilers::manatee::{ImageInfo, ManateeAction, ManateeObserve, ShardObservation};
use reconcilers::manatee_ha::{DesiredServer, HaObserve};
use reconcilers::operation::Operation;
use reconcilers::transplant::{TransplantJournal, TransplantObs, TransplantObserve};
use serde::{Deserialize, Serialize};

use super::manta::MantaObservation;
use crate::store::Store;
use crate::world::manatee::TritonManatee;
use crate::world::transplant::TritonTransplant;

/// Format tag of snapshot files. Readers refuse any other.
pub const SNAPSHOT_FORMAT: &str = "tritonctl.observed/v1";

/// A stored document as the store holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredDoc {
    /// The document without status or resourceVersion (as stored).
    pub document: serde_json::Value,
    pub resource_version: String,
    pub generation: i64,
}

/// One operation journal of a stored document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalRecord {
    /// The journal's target (the shard).
    pub target: String,
    pub operation: Operation<ManateeAction>,
}

/// One transplant journal of a stored ManateeVersion (under
/// `/tritonctl/v1/transplants/`, apart from the rolling journals).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransplantRecord {
    /// The shard.
    pub target: String,
    pub journal: TransplantJournal,
}

/// The store as a review sees it: documents by `Kind/name`, and journals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredView {
    pub documents: BTreeMap<String, StoredDoc>,
    #[serde(default)]
    pub journals: BTreeMap<String, Vec<JournalRecord>>,
    /// Transplant journals by `Kind/name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub transplants: BTreeMap<String, Vec<TransplantRecord>>,
}

impl StoredView {
    /// Every stored document, and the journals of the kinds that have them.
    pub async fn load(store: &Store) -> Result<StoredView, String> {
        let mut view = StoredView::default();
        for kind in Kind::ALL {
            for mut doc in store.list(kind).await.map_err(|e| e.to_string())? {
                let rv = doc.metadata().resource_version.clone().unwrap_or_default();
                let generation = doc.metadata().generation.unwrap_or(1);
                doc.set_status(None);
                doc.metadata_mut().resource_version = None;
                let key = doc.key();
                if kind == Kind::ManateeVersion {
                    let js = load_journals(store.coord(), kind, doc.name()).await?;
                    if !js.is_empty() {
                        view.journals.insert(key.clone(), js);
                    }
                    let ts = load_transplants(store.coord(), doc.name()).await?;
                    if !ts.is_empty() {
                        view.transplants.insert(key.clone(), ts);
                    }
                }
                view.documents.insert(
                    key,
                    StoredDoc {
                        document: super::canonical(&doc.to_value()),
                        resource_version: rv,
                        generation,
                    },
                );
            }
        }
        Ok(view)
    }

    /// The view of a store holding exactly `docs` (each at resourceVersion
    /// 0, generation 1), without journals: for benchmarks and tests.
    pub fn of_documents(docs: &[Document]) -> StoredView {
        let mut view = StoredView::default();
        for d in docs {
            let mut d = d.clone();
            d.set_status(None);
            d.metadata_mut().resource_version = None;
            d.metadata_mut().generation = Some(1);
            view.documents.insert(
                d.key(),
                StoredDoc {
                    document: super::canonical(&d.to_value()),
                    resource_version: "0".into(),
                    generation: 1,
                },
            );
        }
        view
    }

    /// A stored document, decoded.
    pub fn get(&self, kind: Kind, name: &str) -> Option<(Document, &StoredDoc)> {
        let s = self.documents.get(&format!("{kind}/{name}"))?;
        Document::from_value(kind, s.document.clone())
            .ok()
            .map(|d| (d, s))
    }

    pub fn journals(&self, kind: Kind, name: &str) -> &[JournalRecord] {
        self.journals
            .get(&format!("{kind}/{name}"))
            .map_or(&[], Vec::as_slice)
    }

    /// The transplant journals of a ManateeVersion.
    pub fn transplants(&self, name: &str) -> &[TransplantRecord] {
        self.transplants
            .get(&format!("{}/{name}", Kind::ManateeVersion))
            .map_or(&[], Vec::as_slice)
    }
}

/// The transplant journals of ManateeVersion `name`, by shard (read as the
/// controller reads them).
pub async fn load_transplants(
    coord: &Arc<dyn Coordination>,
    name: &str,
) -> Result<Vec<TransplantRecord>, String> {
    let mut out: Vec<TransplantRecord> =
        crate::reconcile::journal::transplant_journals(coord, name)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(target, journal)| TransplantRecord { target, journal })
            .collect();
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

async fn load_journals(
    coord: &Arc<dyn Coordination>,
    kind: Kind,
    name: &str,
) -> Result<Vec<JournalRecord>, String> {
    let mut out: Vec<JournalRecord> = crate::reconcile::load_journals(coord, kind, name)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(target, operation, _)| JournalRecord { target, operation })
        .collect();
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

/// One shard as observed: the observation, or why it could not be made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<ShardObservation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One shard as the transplant observes it (sitters, election order, ONWM,
/// datasets, morays), recorded for the shards whose strategy resolves to the
/// transplant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransplantShardRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<TransplantObs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A snapshot: everything a plan needs, recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// Always [`SNAPSHOT_FORMAT`].
    pub format: String,
    pub captured_at: String,
    /// Where it was observed (endpoints, store).
    pub source: String,
    pub stored: StoredView,
    /// Manatee shards by name.
    pub shards: BTreeMap<String, ShardRecord>,
    /// IMGAPI records by UUID; null when IMGAPI does not have the image.
    pub images: BTreeMap<String, Option<ImageInfo>>,
    /// The Manta application's `HASH_RING_IMAGE` in SAPI (null without Manta or ring).
    pub ring_image: Option<String>,
    /// The transplant's view of the shards that resolve to the transplant.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub transplants: BTreeMap<String, TransplantShardRecord>,
    /// Servers a HeadnodeSet names -> CNAPI uuid (null: CNAPI does not know it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub servers: BTreeMap<String, Option<String>>,
    /// The Manta region (live ring, index tier, electric-morays, shards),
    /// recorded when a ShardTopology is involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manta: Option<MantaRecord>,
}

/// The Manta region as observed, or why it could not be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MantaRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<MantaObservation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Observed {
    pub fn from_json(text: &str, origin: &str) -> Result<Observed, String> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("{origin}: not a tritonctl snapshot: {e}"))?;
        let format = v.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != SNAPSHOT_FORMAT {
            return Err(format!(
                "{origin}: snapshot format `{format}` is not `{SNAPSHOT_FORMAT}`; take it again with this tritonctl (`tritonctl snapshot -o {origin}`)"
            ));
        }
        serde_json::from_value(v).map_err(|e| format!("{origin}: {e}"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("snapshots serialize") + "\n"
    }
}

/// The datacenter as a review observes it. Observing traits only: a
/// review cannot reach a mutation.
#[async_trait]
pub trait World: Send + Sync {
    fn manatee(&self) -> &dyn ManateeObserve;
    /// The Manta application's `HASH_RING_IMAGE`.
    async fn ring_image(&self) -> Result<Option<String>, String>;
    /// For the review header: endpoints, or the snapshot file and its time.
    fn source(&self) -> String;
    /// The shard as the transplant planner observes it.
    async fn transplant(&self, shard: &str) -> Result<TransplantObs, String>;
    /// Servers a HeadnodeSet names, resolved through CNAPI (the HA planner's input).
    async fn resolve_servers(&self, names: &[String]) -> Result<Vec<DesiredServer>, String>;
    /// The Manta region: live ring, index tier, electric-morays, shards
    /// (None: no `manta` application).
    async fn manta(&self) -> Result<Option<MantaObservation>, String>;
}

/// The live datacenter through the real clients and ZooKeeper. It hands
/// out only the observing side of its worlds. (`manatee-adm pg-status` goes
/// through CNAPI's execute, a POST, so the HTTP guard cannot be the
/// read-only barrier; the types are.)
pub struct Live {
    manatee: TritonManatee,
    pub description: String,
}

impl Live {
    pub fn new(manatee: TritonManatee, description: String) -> Live {
        Live {
            manatee,
            description,
        }
    }
}

#[async_trait]
impl World for Live {
    fn manatee(&self) -> &dyn ManateeObserve {
        &self.manatee
    }

    async fn ring_image(&self) -> Result<Option<String>, String> {
        let apps = self
            .manatee
            .triton
            .sapi
            .applications("manta")
            .await
            .and_then(|l| l.all())
            .map_err(|e| e.to_string())?;
        Ok(apps.first().and_then(|a| {
            a.metadata
                .get("HASH_RING_IMAGE")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        }))
    }

    fn source(&self) -> String {
        self.description.clone()
    }

    async fn transplant(&self, shard: &str) -> Result<TransplantObs, String> {
        // Observing only: `observe` reads ZooKeeper, SAPI, VMAPI, IMGAPI and
        // runs read-only commands in the zones (svcs, zfs list, json).
        let t = TritonTransplant {
            triton: self.manatee.triton.clone(),
            coord: self.manatee.coord.clone(),
            fence: None,
        };
        Ok(TransplantObserve::observe(&t, shard).await?)
    }

    async fn resolve_servers(&self, names: &[String]) -> Result<Vec<DesiredServer>, String> {
        Ok(HaObserve::resolve_servers(&self.manatee, names).await?)
    }

    async fn manta(&self) -> Result<Option<MantaObservation>, String> {
        super::manta::observe(&self.manatee.triton).await
    }
}

/// A snapshot served as a world. Read-only.
pub struct Recorded {
    pub observed: Observed,
    /// The file it came from, for messages.
    pub origin: String,
}

impl Recorded {
    fn missing(&self, what: &str) -> String {
        format!(
            "{what} is not in the snapshot {} (taken {}); take it again with `tritonctl snapshot -f DIR -o {}` so it covers these documents",
            self.origin, self.observed.captured_at, self.origin
        )
    }
}

#[async_trait]
impl ManateeObserve for Recorded {
    async fn observe(&self, shard: &str) -> Result<ShardObservation, WorldError> {
        match self.observed.shards.get(shard) {
            Some(ShardRecord {
                observation: Some(o),
                ..
            }) => Ok(o.clone()),
            Some(ShardRecord { error: Some(e), .. }) => Err(WorldError::Recorded(e.clone())),
            _ => Err(WorldError::Missing(self.missing(&format!("shard {shard}")))),
        }
    }

    async fn image(&self, uuid: &str) -> Result<Option<ImageInfo>, WorldError> {
        self.observed
            .images
            .get(uuid)
            .cloned()
            .ok_or_else(|| WorldError::Missing(self.missing(&format!("image {uuid}"))))
    }

    async fn approved(&self, _: &str, _: &str) -> Result<bool, WorldError> {
        Ok(false)
    }
}

#[async_trait]
impl World for Recorded {
    fn manatee(&self) -> &dyn ManateeObserve {
        self
    }

    async fn ring_image(&self) -> Result<Option<String>, String> {
        Ok(self.observed.ring_image.clone())
    }

    fn source(&self) -> String {
        format!(
            "snapshot {} ({}, taken {})",
            self.origin, self.observed.source, self.observed.captured_at
        )
    }

    async fn transplant(&self, shard: &str) -> Result<TransplantObs, String> {
        match self.observed.transplants.get(shard) {
            Some(TransplantShardRecord {
                observation: Some(o),
                ..
            }) => Ok(o.clone()),
            Some(TransplantShardRecord { error: Some(e), .. }) => Err(e.clone()),
            _ => Err(self.missing(&format!("the transplant view of shard {shard}"))),
        }
    }

    async fn resolve_servers(&self, names: &[String]) -> Result<Vec<DesiredServer>, String> {
        names
            .iter()
            .map(|n| match self.observed.servers.get(n) {
                Some(uuid) => Ok(DesiredServer {
                    name: n.clone(),
                    uuid: uuid.clone(),
                }),
                None => Err(self.missing(&format!("server {n}"))),
            })
            .collect()
    }

    async fn manta(&self) -> Result<Option<MantaObservation>, String> {
        match &self.observed.manta {
            Some(MantaRecord {
                observation: Some(o),
                ..
            }) => Ok(Some(o.clone())),
            Some(MantaRecord { error: Some(e), .. }) => Err(e.clone()),
            _ => Err(self.missing("the Manta region (ring, index tier, shards)")),
        }
    }
}

/// The manatee shards a document involves.
pub fn shards_of(doc: &Document) -> Vec<String> {
    match doc {
        Document::ManateeVersion(d) => d.spec.shards.clone(),
        Document::ShardTopology(d) => d.spec.shards.iter().map(|s| s.name.clone()).collect(),
        Document::HeadnodeSet(_) => vec!["sdc".to_string()],
    }
}

/// The manatee images a document names.
pub fn images_of(doc: &Document) -> Vec<String> {
    match doc {
        Document::ManateeVersion(d) => vec![d.spec.image.uuid.clone()],
        _ => Vec::new(),
    }
}

/// Observe everything `docs` and the stored documents involve.
pub async fn capture(
    stored: StoredView,
    world: &dyn World,
    docs: &[Document],
    now: String,
) -> Result<Observed, String> {
    let mut all: Vec<Document> = docs.to_vec();
    for (key, s) in &stored.documents {
        let kind = key
            .split('/')
            .next()
            .and_then(Kind::parse)
            .ok_or_else(|| format!("stored key {key} has no kind"))?;
        if let Ok(d) = Document::from_value(kind, s.document.clone()) {
            all.push(d);
        }
    }
    let shards: BTreeSet<String> = all.iter().flat_map(shards_of).collect();
    let mut images: BTreeSet<String> = all.iter().flat_map(images_of).collect();
    let m = world.manatee();
    let mut out_shards = BTreeMap::new();
    for s in shards {
        let rec = match m.observe(&s).await {
            Ok(o) => {
                images.extend(o.peers.iter().map(|p| p.image.clone()));
                ShardRecord {
                    observation: Some(o),
                    error: None,
                }
            }
            Err(e) => ShardRecord {
                observation: None,
                error: Some(e.to_string()),
            },
        };
        out_shards.insert(s, rec);
    }
    let mut out_images = BTreeMap::new();
    for i in images.into_iter().filter(|i| !i.is_empty()) {
        out_images.insert(i.clone(), m.image(&i).await?);
    }
    // What the transplant planner needs, for the shards that resolve to it
    // (as diff resolves them), and the servers the HA planner places on.
    let mut transplants = BTreeMap::new();
    let mut servers = BTreeMap::new();
    for d in &all {
        match d {
            Document::ManateeVersion(mv) => {
                let target = out_images.get(&mv.spec.image.uuid).cloned().flatten();
                for s in &mv.spec.shards {
                    let Some(Some(obs)) = out_shards.get(s).map(|r| r.observation.as_ref()) else {
                        continue;
                    };
                    let resolved =
                        super::resolve::resolve_shard(&mv.spec, obs, target.as_ref(), &out_images);
                    if resolved == Ok(reconcilers::transplant::Resolved::Transplant)
                        && !transplants.contains_key(s)
                    {
                        let rec = match world.transplant(s).await {
                            Ok(o) => TransplantShardRecord {
                                observation: Some(o),
                                error: None,
                            },
                            Err(e) => TransplantShardRecord {
                                observation: None,
                                error: Some(e),
                            },
                        };
                        transplants.insert(s.clone(), rec);
                    }
                }
            }
            Document::HeadnodeSet(hs) => {
                let names: Vec<String> = hs
                    .spec
                    .ha_services
                    .manatee
                    .iter()
                    .filter(|n| !servers.contains_key(*n))
                    .cloned()
                    .collect();
                if !names.is_empty() {
                    for r in world.resolve_servers(&names).await? {
                        servers.insert(r.name, r.uuid);
                    }
                }
            }
            Document::ShardTopology(_) => {}
        }
    }
    let has_topology = all.iter().any(|d| d.kind() == Kind::ShardTopology);
    let ring_image = if has_topology {
        world.ring_image().await.unwrap_or(None)
    } else {
        None
    };
    let manta = if has_topology {
        Some(match world.manta().await {
            Ok(observation) => MantaRecord {
                observation,
                error: None,
            },
            Err(e) => MantaRecord {
                observation: None,
                error: Some(e),
            },
        })
    } else {
        None
    };
    // Nothing observed leaves with a credential in it (an endpoint's, or
    // one an error message quotes).
    Ok(super::redact::scrubbed(Observed {
        format: SNAPSHOT_FORMAT.to_string(),
        captured_at: now,
        source: world.source(),
        stored,
        shards: out_shards,
        images: out_images,
        ring_image,
        transplants,
        servers,
        manta,
    }))
}
