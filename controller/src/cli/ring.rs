//! `tritonctl ring`: fash's verbs on hash rings as Manta keeps them (a
//! LevelDB ring directory, or a `manta-hash-ring` image in IMGAPI).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use wire::fash::{KeyEncoding, Ring};

use super::Failure;
use super::listing::{self, ListingArgs, Output};
use super::ring_listing;
use super::ring_source::RingSource;
use crate::gitops::redact::Endpoint;

#[derive(Subcommand, Debug)]
pub enum RingCommand {
    /// Create a ring directory (fash create -b leveldb; the ring manta-adm create-topology builds).
    #[command(
        after_help = "Writes a new LevelDB ring directory as node-fash's leveldb backend does:\n\
VNODES vnodes, the pnodes sorted, vnode v on pnode v mod P (round robin), every vnode's\n\
data 1, keys VNODE_COUNT, /VNODE/<v>, /PNODE, /PNODE/<p>, /PNODE/<p>/<v>, VNODE_DATA,\n\
ALGORITHM (sha256), VERSION and COMPLETE last. DIR must not exist or be empty.\n\
Manta names a pnode after its shard: tcp://<shard>:2020 (manta-adm create-topology -p 2020).\n\
The vnode count is fixed for the life of the ring: choose it for the largest fleet.\n\
Exit status: 0 created, 1 invalid arguments (a bad count, duplicate pnodes), 2 DIR could not be written.\n\n\
Examples:\n  tritonctl ring create -v 131072 -p tcp://1.moray.us-east.joyent.us:2020,tcp://2.moray.us-east.joyent.us:2020 -o hash_ring\n  \
tritonctl ring create -v 6 -p tcp://1.moray.emy-11.joyent.us:2020,tcp://2.moray.emy-11.joyent.us:2020 -o /tmp/ring -j"
    )]
    Create(CreateArgs),
    /// Find the vnode, pnode and data a key lives on (fash get-node; electric-moray's routing with --bucket).
    #[command(
        after_help = "Hashes each KEY as fash does (sha256; vnode = hash / (2^256-1 div VNODES)) and\n\
prints the vnode, the pnode it is on and its data (1, or e.g. \"ro\" for read-only).\n\
Without --bucket the key is hashed as given, like `fash get-node`. With --bucket the key\n\
goes through electric-moray's transform first, as a Moray request for that bucket would:\n\
bucket manta hashes an object by its directory (/acct/stor/dir/obj -> /acct/stor/dir;\n\
an account's /<uuid>/stor root as itself), manta_uploads by the path after the first ':'.\n\
The ring comes from -l DIR (a ring directory) or --image UUID (a manta-hash-ring image,\n\
fetched from --imgapi as electric-moray's setup fetches it).\n\
Output: as `get`: -j, -o yaml, -o COL,COL (KEY VNODE PNODE DATA, and HASHED with -o wide), -H.\n\
Exit status: 0 located, 1 invalid arguments, 2 the ring could not be read.\n\n\
Examples:\n  tritonctl ring locate -l hash_ring /yunong/yunong.txt\n  \
tritonctl ring locate -l hash_ring --bucket manta /bc8cd146-fecb-11e1-bd8a-bb6f54b49808/stor/cmd.tgz -j\n  \
tritonctl ring locate --image 5d3ec4b2-7f7b-4f6b-a8a5-1d4bd1a4c2f0 --imgapi http://10.99.99.21 --bucket manta /acct/stor/x"
    )]
    Locate(LocateArgs),
    /// Show a ring: its pnodes with their vnode counts, and the vnodes carrying data (fash get-pnodes, get-vnodes, get-data-vnodes).
    #[command(
        after_help = "One row per pnode, in the ring's /PNODE order: PNODE, VNODES it owns, DATA (how many\n\
of those carry data other than 1, such as \"ro\"). Then, when any vnode carries data, each\n\
such vnode with its pnode and data (electric-moray refuses writes to \"ro\" vnodes, and\n\
refuses bucket changes while any vnode has data). With -j: the vnode count, algorithm,\n\
interval, version, the image stamp (for an image), the pnodes and the data vnodes.\n\
The ring is read whole and checked: a directory whose keys disagree is refused, naming the key.\n\
Exit status: 0 shown, 1 invalid arguments, 2 the ring could not be read.\n\n\
Examples:\n  tritonctl ring show -l hash_ring\n  tritonctl ring show --image UUID --imgapi http://10.99.99.21 -j"
    )]
    Show(ShowArgs),
    /// What changes from ring A to ring B: vnodes moved between pnodes, data changed (fash diff, with data).
    #[command(
        after_help = "A and B are each a ring directory, a fash JSON ring file (as plans keep them), or an\n\
image UUID (fetched from --imgapi). Both must have the same vnode count. Prints one row per\n\
(FROM, TO) pair: how many vnodes move and which (ranges); then the vnodes whose data changes\n\
(fash's own diff ignores data), and pnodes added or removed. -j prints all of it as JSON,\n\
with \"identical\": true when nothing differs.\n\
Exit status: 0 compared (whether or not they differ), 1 invalid arguments, 2 a ring could not be read\n\
or the rings have different vnode counts.\n\n\
Examples:\n  tritonctl ring diff old_ring new_ring\n  tritonctl ring diff plan-ring.json hash_ring -j\n  \
tritonctl ring diff OLD_UUID NEW_UUID --imgapi http://10.99.99.21"
    )]
    Diff(DiffArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Number of vnodes (fixed for the life of the ring).
    #[arg(short = 'v', long, value_name = "VNODES")]
    pub vnodes: u32,
    /// Pnodes, comma separated (tcp://<shard>:2020 in Manta).
    #[arg(
        short = 'p',
        long,
        value_name = "PNODE,...",
        value_delimiter = ',',
        required = true
    )]
    pub pnodes: Vec<String>,
    /// The new ring directory.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the new ring as `ring show -j` does.
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `-l DIR` or `--image UUID --imgapi URL`.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// A ring directory (LevelDB), as `fash -l` takes it.
    #[arg(
        short = 'l',
        long = "location",
        value_name = "DIR",
        conflicts_with = "image"
    )]
    pub location: Option<PathBuf>,
    /// A manta-hash-ring image in IMGAPI (SAPI's HASH_RING_IMAGE names the live one).
    #[arg(long, value_name = "UUID")]
    pub image: Option<String>,
    /// IMGAPI URL for --image (SAPI's HASH_RING_IMGAPI_SERVICE names it).
    #[arg(long, env = "TRITONCTL_IMGAPI", value_name = "URL")]
    pub imgapi: Option<Endpoint>,
}

impl SourceArgs {
    fn source(&self) -> Result<RingSource, Failure> {
        RingSource::from_flags(
            self.location.as_deref(),
            self.image.as_deref(),
            self.imgapi.as_ref(),
        )
    }
}

/// How keys become bytes: utf8 (Node >= 6, mantav2) or latin1 (Node 0.10, mantav1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Encoding {
    Utf8,
    Latin1,
}

#[derive(Args, Debug)]
pub struct LocateArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Transform keys as electric-moray does for this bucket (manta, manta_uploads, ...).
    #[arg(short = 'b', long, value_name = "BUCKET")]
    pub bucket: Option<String>,
    /// How key strings become hashed bytes (electric-moray's Node version).
    #[arg(long, value_enum, default_value_t = Encoding::Utf8)]
    pub key_encoding: Encoding,
    /// Keys to locate.
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
    #[command(flatten)]
    pub listing: ListingArgs,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub listing: ListingArgs,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The ring before: a ring directory, a fash JSON file or an image UUID.
    pub a: String,
    /// The ring after.
    pub b: String,
    /// IMGAPI URL, when A or B is an image.
    #[arg(long, env = "TRITONCTL_IMGAPI", value_name = "URL")]
    pub imgapi: Option<Endpoint>,
    #[command(flatten)]
    pub listing: ListingArgs,
}

pub async fn run(cmd: RingCommand) -> Result<(), Failure> {
    match cmd {
        RingCommand::Create(a) => create(a).await,
        RingCommand::Locate(a) => locate(a).await,
        RingCommand::Show(a) => show(a).await,
        RingCommand::Diff(a) => diff(a).await,
    }
}

async fn create(a: CreateArgs) -> Result<(), Failure> {
    let ring = Ring::create(a.vnodes, &a.pnodes).map_err(|e| Failure::invalid(e.to_string()))?;
    let dir = a.dir.clone();
    let written = ring.clone();
    tokio::task::spawn_blocking(move || fashdb::write_ring(&dir, &written))
        .await
        .map_err(|e| Failure::error(e.to_string()))?
        .map_err(|e| Failure::error(e.to_string()))?;
    let label = a.dir.display().to_string();
    if a.json {
        let l = ring_listing::show(&ring, None, &label);
        print!("{}", listing::render(&l, &Output::Json, false)?);
    } else {
        println!(
            "created ring {label}: {} vnodes on {} pnodes (sha256, fash {})",
            ring.vnode_count(),
            ring.pnodes().len(),
            wire::fash::VERSION
        );
    }
    Ok(())
}

async fn locate(a: LocateArgs) -> Result<(), Failure> {
    let loaded = a.source.source()?.load().await?;
    let enc = match a.key_encoding {
        Encoding::Utf8 => KeyEncoding::Utf8,
        Encoding::Latin1 => KeyEncoding::Latin1Truncate,
    };
    let l = ring_listing::locate(&loaded.ring, a.bucket.as_deref(), enc, &a.keys)?;
    print!(
        "{}",
        listing::render(&l, &a.listing.format(), a.listing.no_headers)?
    );
    Ok(())
}

async fn show(a: ShowArgs) -> Result<(), Failure> {
    let loaded = a.source.source()?.load().await?;
    let format = a.listing.format();
    let l = ring_listing::show(&loaded.ring, loaded.stamp.as_ref(), &loaded.label);
    let mut out = String::new();
    let plain = matches!(format, Output::Table | Output::Wide);
    if plain && !a.listing.no_headers {
        out += &ring_listing::summary(&loaded.ring, loaded.stamp.as_ref(), &loaded.label);
    }
    out += &listing::render(&l, &format, a.listing.no_headers)?;
    if plain && loaded.ring.has_data_vnodes() {
        out.push('\n');
        let d = ring_listing::data_vnodes(&loaded.ring);
        out += &listing::render(&d, &format, a.listing.no_headers)?;
    }
    print!("{out}");
    Ok(())
}

async fn diff(a: DiffArgs) -> Result<(), Failure> {
    let before = RingSource::from_arg(&a.a, a.imgapi.as_ref())?;
    let after = RingSource::from_arg(&a.b, a.imgapi.as_ref())?;
    let (before, after) = (before.load().await?, after.load().await?);
    let d = before
        .ring
        .diff(&after.ring)
        .map_err(|e| Failure::error(format!("{} and {}: {e}", before.label, after.label)))?;
    let format = a.listing.format();
    let l = ring_listing::diff(&d, &before.label, &after.label);
    let mut out = String::new();
    let plain = matches!(format, Output::Table | Output::Wide);
    if plain && d.is_empty() {
        out += &format!("{} and {}: identical\n", before.label, after.label);
    } else {
        out += &listing::render(&l, &format, a.listing.no_headers)?;
        if plain {
            out += &ring_listing::diff_notes(&d);
        }
    }
    print!("{out}");
    Ok(())
}
