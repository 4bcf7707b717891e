//! `tritonctl export shardtopology`: the ShardTopology of a running region,
//! written so that applying it changes nothing.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::gitops::WorldArgs;
use super::{EXIT_INVALID, Failure};
use crate::clients::{Triton, Unguarded};
use crate::gitops::export::export;
use crate::gitops::manta;
use crate::gitops::redact::redact_urls;

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// The region's metadata shards, index tier and live hash ring as a ShardTopology.
    #[command(
        name = "shardtopology",
        visible_aliases = ["st", "ShardTopology"],
        after_help = "Reads, and only reads: SAPI's `manta` application (REGION, DNS_DOMAIN,\n\
INDEX_MORAY_SHARDS, MARLIN_MORAY_SHARD, STORAGE_MORAY_SHARD, HASH_RING_IMAGE), its `postgres`\n\
instances grouped by SERVICE_NAME (the shards), each peer's server from VMAPI (not SAPI's\n\
params, which go stale: MANTA-3604) named by its CNAPI hostname and datacenter, the `moray`\n\
instances per shard, and the ring image from IMGAPI, read as electric-moray loads it.\n\
The ring is written as an explicit `assignment` in ranges: applying the document unchanged\n\
asks for no resharding; add `spec.ring.intents` (split, splitWays, move, moveHottest,\n\
addIndexShard) to it to ask for one, and review with `tritonctl diff`.\n\
Problems found (a shard with no moray, no role) are written as comments above the\n\
document and reported; the exit status is then 1.\n\
Exit status: 0 written, 1 written but not valid as it stands, 2 error.\n\n\
Examples:\n  tritonctl export shardtopology --sapi http://10.99.99.32 --vmapi http://10.99.99.27 \\\n      --cnapi http://10.99.99.22 --imgapi http://10.99.99.21 -o us-east/shardtopology.yaml\n  \
TRITONCTL_SAPI=... tritonctl export st --region us-east"
    )]
    Shardtopology(ExportTopologyArgs),
}

#[derive(Args, Debug)]
pub struct ExportTopologyArgs {
    /// The region expected (checked against SAPI's manta REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// Where to write the document (`-` for standard output).
    #[arg(short = 'o', long, default_value = "-")]
    pub output: PathBuf,
    #[command(flatten)]
    pub world: WorldArgs,
}

pub async fn run(c: ExportCommand) -> Result<(), Failure> {
    match c {
        ExportCommand::Shardtopology(a) => shardtopology(a).await,
    }
}

async fn shardtopology(a: ExportTopologyArgs) -> Result<(), Failure> {
    let e = a.world.endpoints()?.ok_or_else(|| {
        Failure::error("export reads the datacenter: give --sapi, --vmapi, --cnapi and --imgapi (or TRITONCTL_SAPI, ...)")
    })?;
    let triton = Triton::new(&e, Arc::new(Unguarded));
    let fail = |m: String| Failure::error(redact_urls(&m));
    let observed = manta::observe(&triton)
        .await
        .map_err(fail)?
        .ok_or_else(|| fail(crate::gitops::export::ExportError::NoManta.to_string()))?;
    let exported = export(&observed, a.region.as_deref()).map_err(|x| fail(x.to_string()))?;
    let source = redact_urls(&format!(
        "SAPI {} VMAPI {} CNAPI {} IMGAPI {}",
        e.sapi, e.vmapi, e.cnapi, e.imgapi
    ));
    let text = exported.to_yaml(&source);
    // The document as written must read back and pass validation.
    let label = if a.output.as_os_str() == "-" {
        "<stdout>".to_string()
    } else {
        a.output.display().to_string()
    };
    let (docs, mut diags) = crds::parse_documents(&label, &text);
    diags.extend(crds::validate_all(&docs));
    if a.output.as_os_str() == "-" {
        print!("{text}");
    } else {
        std::fs::write(&a.output, &text)
            .map_err(|x| Failure::error(format!("cannot write {label}: {x}")))?;
        eprintln!(
            "ShardTopology {} written to {label}: {} shard(s), {} vnodes",
            exported.document.metadata.name,
            exported.document.spec.shards.len(),
            exported.document.spec.ring.vnodes
        );
    }
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect();
    if !errors.is_empty() {
        return Err(Failure {
            code: EXIT_INVALID,
            message: format!(
                "the region as observed is not a valid ShardTopology as it stands:\n{}",
                errors.join("\n")
            ),
        });
    }
    Ok(())
}
