//! `tritonctl diff`, `snapshot`, `plan` and `apply --plan`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use crds::Document;

use super::{EXIT_ERROR, EXIT_INVALID, Failure, StoreArgs, input, store_open};
use crate::clients::{Endpoints, Triton, Unguarded};
use crate::gitops::observed::{Live, Observed, Recorded, StoredView, World, capture};
use crate::gitops::plan::{self, ApplyError, PlanFile};
use crate::gitops::plan_key::{KeyError, PlanKey};
use crate::gitops::redact::{Endpoint, redact_urls};
use crate::gitops::render;
use crate::gitops::review::review;
use crate::world::manatee::TritonManatee;

/// The datacenter's APIs. Manatee state is read from the store's ZooKeeper
/// (`--zk`, the DC's binder ensemble). Credentials in a URL
/// (`http://user:pw@host`) are used, never printed or stored.
#[derive(Args, Debug, Clone, Default)]
pub struct WorldArgs {
    /// SAPI URL, e.g. http://10.99.99.32.
    #[arg(long, env = "TRITONCTL_SAPI")]
    pub sapi: Option<Endpoint>,
    /// VMAPI URL.
    #[arg(long, env = "TRITONCTL_VMAPI")]
    pub vmapi: Option<Endpoint>,
    /// CNAPI URL.
    #[arg(long, env = "TRITONCTL_CNAPI")]
    pub cnapi: Option<Endpoint>,
    /// IMGAPI URL.
    #[arg(long, env = "TRITONCTL_IMGAPI")]
    pub imgapi: Option<Endpoint>,
}

impl WorldArgs {
    /// The endpoints, when all four are given; an error when only some are.
    pub fn endpoints(&self) -> Result<Option<Endpoints>, Failure> {
        match (&self.sapi, &self.vmapi, &self.cnapi, &self.imgapi) {
            (Some(s), Some(v), Some(c), Some(i)) => Ok(Some(Endpoints {
                sapi: s.secret_url().to_string(),
                vmapi: v.secret_url().to_string(),
                cnapi: c.secret_url().to_string(),
                imgapi: i.secret_url().to_string(),
            })),
            (None, None, None, None) => Ok(None),
            _ => Err(Failure::error(
                "give all four of --sapi, --vmapi, --cnapi and --imgapi (or TRITONCTL_SAPI, ...), or none",
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// A file, a directory (recursively: *.yaml, *.yml, *.json) or `-`. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value_t = DiffFormat::Text)]
    pub output: DiffFormat,
    /// Plan against a snapshot (`tritonctl snapshot`) instead of the store and the datacenter.
    #[arg(long, value_name = "SNAPSHOT")]
    pub observed: Option<PathBuf>,
    /// Colour the text output: auto (on a terminal), always, never.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
    #[command(flatten)]
    pub world: WorldArgs,
}

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// Where to write the snapshot (`-` for standard output).
    #[arg(short = 'o', long, default_value = "-")]
    pub output: PathBuf,
    /// Also cover the shards and images these documents name (the change under review).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub world: WorldArgs,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A file, a directory or `-`. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Where to write the plan.
    #[arg(short = 'o', long, required = true)]
    pub output: PathBuf,
    /// Plan against a snapshot instead of observing now (apply still observes).
    #[arg(long, value_name = "SNAPSHOT")]
    pub observed: Option<PathBuf>,
    #[command(flatten)]
    pub world: WorldArgs,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A file, a directory (read recursively: *.yaml, *.yml, *.json) or `-` for standard input. Repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        required_unless_present = "plan",
        conflicts_with = "plan"
    )]
    pub files: Vec<PathBuf>,
    /// Apply a saved plan (`tritonctl plan`): exactly its documents, only if it is still fresh.
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<PathBuf>,
    #[command(flatten)]
    pub world: WorldArgs,
}

fn now() -> String {
    reconcilers::clock::rfc3339(time::OffsetDateTime::now_utc())
}

fn live(store: &crate::store::Store, e: &Endpoints, zk: &str) -> Live {
    // Reviews only observe: `Live` wraps the world in `ObserveOnly`, which
    // refuses reprovision/freeze/unfreeze. The HTTP guard must let CNAPI's
    // execute (a POST) through for `manatee-adm pg-status`.
    Live::new(
        TritonManatee {
            triton: Triton::new(e, Arc::new(Unguarded)),
            coord: store.coord().clone(),
            fence: None,
        },
        redact_urls(&format!(
            "SAPI {} VMAPI {} CNAPI {} IMGAPI {}, manatee state in {zk}",
            e.sapi, e.vmapi, e.cnapi, e.imgapi
        )),
    )
}

/// Read and validate documents; any problem is an error (exit 2), as kubectl diff does.
fn read_docs(files: &[PathBuf], code: u8) -> Result<Vec<Document>, Failure> {
    let input = input::read(files).map_err(|e| Failure {
        code: EXIT_ERROR,
        message: format!("{e:#}"),
    })?;
    for d in &input.diagnostics {
        eprintln!("{d}");
    }
    if input.has_errors() {
        let n = input.diagnostics.iter().filter(|d| d.is_error()).count();
        return Err(Failure {
            code,
            message: format!("{n} error(s) in the documents; fix them first"),
        });
    }
    Ok(input.documents.into_iter().map(|d| d.document).collect())
}

fn read_snapshot(path: &PathBuf) -> Result<Recorded, Failure> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::error(format!("cannot read snapshot {origin}: {e}")))?;
    let observed = Observed::from_json(&text, &origin).map_err(fail)?;
    Ok(Recorded { observed, origin })
}

fn write_out(path: &PathBuf, text: &str) -> Result<(), Failure> {
    if path.as_os_str() == "-" {
        print!("{text}");
        return Ok(());
    }
    std::fs::write(path, text)
        .map_err(|e| Failure::error(format!("cannot write {}: {e}", path.display())))
}

fn zk_desc(store: &StoreArgs) -> String {
    store
        .zk
        .as_ref()
        .map(|z| format!("zookeeper {z}"))
        .unwrap_or_else(|| "the embedded store".into())
}

pub async fn diff(store: &StoreArgs, a: DiffArgs) -> Result<(), Failure> {
    let docs = read_docs(&a.files, EXIT_ERROR)?;
    let r = if let Some(path) = &a.observed {
        let rec = read_snapshot(path)?;
        let stored = rec.observed.stored.clone();
        review(&docs, &stored, Some(&rec)).await.map_err(fail)?
    } else {
        let open = store_open::open(store).await?;
        let stored = StoredView::load(&open.store).await.map_err(fail)?;
        match a.world.endpoints()? {
            Some(e) => {
                let w = live(&open.store, &e, &zk_desc(store));
                review(&docs, &stored, Some(&w as &dyn World))
                    .await
                    .map_err(fail)?
            }
            None => review(&docs, &stored, None).await.map_err(fail)?,
        }
    };
    let out = match a.output {
        DiffFormat::Json => serde_json::to_string_pretty(&r).expect("reviews serialize") + "\n",
        DiffFormat::Markdown => render::markdown(&r),
        DiffFormat::Text => {
            let color = match a.color.as_str() {
                "always" => true,
                "never" => false,
                _ => console::Term::stdout().is_term() && console::colors_enabled(),
            };
            render::text(&r, color)
        }
    };
    print!("{out}");
    // A review that could not observe is a failure, not a difference: CI
    // must tell a change from an outage.
    let failures = r.observation_failures();
    if !failures.is_empty() {
        return Err(Failure {
            code: EXIT_ERROR,
            message: format!(
                "could not observe the datacenter, so this review is incomplete:\n  - {}",
                failures.join("\n  - ")
            ),
        });
    }
    if r.has_differences() {
        Err(Failure {
            code: EXIT_INVALID,
            message: String::new(),
        })
    } else {
        Ok(())
    }
}

pub async fn snapshot(store: &StoreArgs, a: SnapshotArgs) -> Result<(), Failure> {
    let docs = if a.files.is_empty() {
        Vec::new()
    } else {
        read_docs(&a.files, EXIT_ERROR)?
    };
    let e = a.world.endpoints()?.ok_or_else(|| {
        Failure::error("snapshot observes the datacenter: give --sapi, --vmapi, --cnapi and --imgapi (and --zk for the manatee state)")
    })?;
    let open = store_open::open(store).await?;
    let stored = StoredView::load(&open.store).await.map_err(fail)?;
    let w = live(&open.store, &e, &zk_desc(store));
    let observed = capture(stored, &w, &docs, now()).await.map_err(fail)?;
    write_out(&a.output, &observed.to_json())?;
    if a.output.as_os_str() != "-" {
        eprintln!(
            "snapshot of {} shard(s), {} image(s), {} stored document(s) written to {}",
            observed.shards.len(),
            observed.images.len(),
            observed.stored.documents.len(),
            a.output.display()
        );
    }
    Ok(())
}

pub async fn plan(store: &StoreArgs, a: PlanArgs) -> Result<(), Failure> {
    let docs = read_docs(&a.files, EXIT_ERROR)?;
    // Plans are signed with the store's key, even one made from a snapshot.
    let open = store_open::open(store).await?;
    let key = PlanKey::load_or_create(open.store.coord().as_ref())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (observed, origin) = if let Some(path) = &a.observed {
        let rec = read_snapshot(path)?;
        (rec.observed, rec.origin)
    } else {
        let e = a.world.endpoints()?.ok_or_else(|| {
            Failure::error("a plan is bound to the observed state: give --sapi, --vmapi, --cnapi and --imgapi (and --zk), or --observed SNAPSHOT")
        })?;
        let stored = StoredView::load(&open.store).await.map_err(fail)?;
        let w = live(&open.store, &e, &zk_desc(store));
        let o = capture(stored, &w, &docs, now()).await.map_err(fail)?;
        let origin = w.source();
        (o, origin)
    };
    let p = plan::make(&docs, observed, &origin, now(), &key)
        .await
        .map_err(fail)?;
    write_out(&a.output, &p.to_json())?;
    print!(
        "{}",
        render::text(
            &p.review,
            console::Term::stdout().is_term() && console::colors_enabled()
        )
    );
    println!();
    println!(
        "plan {} written to {}; apply exactly this with `tritonctl apply --plan {}`",
        p.id,
        a.output.display(),
        a.output.display()
    );
    Ok(())
}

pub async fn apply_plan(
    store: &StoreArgs,
    path: &PathBuf,
    world: &WorldArgs,
) -> Result<(), Failure> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::error(format!("cannot read plan {origin}: {e}")))?;
    let p = PlanFile::from_json(&text, &origin).map_err(fail)?;
    // An edited plan is refused before anything is contacted.
    p.verified_documents().map_err(Failure::invalid)?;
    // Then its signature, with the store's key, before the datacenter.
    let open = store_open::open(store).await?;
    let key = PlanKey::load(open.store.coord().as_ref())
        .await
        .map_err(key_failure)?;
    p.verify_signature(&key)
        .map_err(|r| Failure::invalid(r.to_string()))?;
    let e = world.endpoints()?.ok_or_else(|| {
        Failure::error("apply --plan observes the datacenter again to refuse a stale plan: give --sapi, --vmapi, --cnapi and --imgapi (and --zk)")
    })?;
    let w = live(&open.store, &e, &zk_desc(store));
    match plan::apply(&p, &open.store, &w, now()).await {
        Ok(outcomes) => {
            for o in &outcomes {
                println!(
                    "{}/{} {} (generation {})",
                    o.kind.short(),
                    o.name,
                    o.action.as_str(),
                    o.generation
                );
            }
            println!("plan {} applied", p.id);
            super::commands::audit_applied(
                &open.store,
                crate::auth::audit::Action::ApplyPlan,
                &outcomes,
                &format!(" by plan {}", p.id),
            )
            .await;
            Ok(())
        }
        Err(ApplyError::Refused(m)) => Err(Failure::invalid(redact_urls(&m))),
        Err(ApplyError::Unverified(r)) => Err(Failure::invalid(r.to_string())),
        Err(ApplyError::Key(e)) => Err(key_failure(e)),
        Err(ApplyError::Error(m)) => Err(fail(m)),
    }
}

/// No key in the store: the plan cannot have been signed against it
/// (refused, exit 1). Any other key problem is an error (exit 2).
fn key_failure(e: KeyError) -> Failure {
    match e {
        KeyError::Missing { .. } => Failure::invalid(e.to_string()),
        other => fail(other.to_string()),
    }
}

/// An error for stderr, with the credentials of any URL it quotes redacted.
fn fail(message: String) -> Failure {
    Failure::error(redact_urls(&message))
}
