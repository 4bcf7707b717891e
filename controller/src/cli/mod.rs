//! The `tritonctl` command line (kubectl habits).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub mod auth_cmd;
pub mod commands;
pub mod exit;
pub mod export;
pub mod gitops;
pub mod input;
pub mod leader_cmd;
pub mod listing;
pub mod objref;
pub mod output;
pub mod pause_cmd;
pub mod reshard_cmd;
pub mod ring;
pub mod ring_listing;
pub mod ring_source;
pub mod serve;
pub mod status;
pub mod status_text;
pub mod store_args;
pub mod store_open;
pub mod watch;

/// Exit codes: 0 ok, 1 refused (invalid arguments or input, a conflict,
/// not found), 2 any other error; see [`exit`] for the whole table.
pub const EXIT_OK: u8 = 0;
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "tritonctl",
    version,
    about = "Declarative, reconciling operations for Triton DataCenter and Manta",
    long_about = "tritonctl keeps Triton and Manta where your desired-state documents say they should be: \
the headnode set (HeadnodeSet), the manatee version of each shard (ManateeVersion) and the Manta \
shard topology and hash ring (ShardTopology). Documents are YAML or JSON, kept in git, applied with \
`tritonctl apply`, and converged by `tritonctl controller` through safe, resumable steps.",
    after_help = "Examples:\n  tritonctl validate -f examples/lab/\n  tritonctl apply -f examples/lab/\n  tritonctl get manateeversions\n  tritonctl describe manateeversion sdc"
)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where documents are stored. Without --zk the embedded store is used.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// ZooKeeper connect string (`host:port,host:port`) of the DC's binder ensemble.
    /// Checked before anything is sent: a malformed one fails at once.
    /// On the command line it wins over TRITONCTL_DATA_DIR, and --data-dir over TRITONCTL_ZK.
    #[arg(long, global = true, env = "TRITONCTL_ZK", value_parser = store_args::parse_zk)]
    pub zk: Option<String>,
    /// Directory of the embedded store (default: $XDG_DATA_HOME/tritonctl or ~/.local/share/tritonctl).
    #[arg(long, global = true, env = "TRITONCTL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// ZooKeeper session timeout.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub session_timeout: std::time::Duration,
    /// Whether --session-timeout was given (else a `--config` file may set it).
    #[arg(skip)]
    pub session_timeout_given: bool,
}

/// Every `--timeout`-style flag parses with the documents' duration syntax.
pub use crds::common::parse_duration;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check documents against the schema and the safety rules, storing nothing.
    #[command(
        after_help = "Every problem is reported at once as FILE:LINE:COLUMN: error: FIELD: message.\n\
A directory is one desired-state set: rules across documents (one ManateeVersion per shard,\n\
one HeadnodeSet per datacenter) apply within each directory; a kind and name may appear once\n\
in the whole input. Only regular files are read, each once, at most 16 MiB each.\n\
Exit status: 0 valid, 1 invalid input or arguments, 2 could not read the input.\n\n\
Examples:\n  tritonctl validate -f examples/lab/\n  tritonctl validate -f lab/manatee.yaml\n  cat doc.yaml | tritonctl validate -f -"
    )]
    Validate(FileArgs),
    /// Validate and store documents; all of them or none.
    #[command(
        after_help = "Documents are created or updated. metadata.generation increases only when spec changes.\n\
A document carrying metadata.resourceVersion is applied only on top of exactly that version;\n\
otherwise the apply is refused as a conflict (exit 1) and nothing is stored.\n\n\
With --plan, applies exactly the documents of a saved plan (`tritonctl plan`), after observing\n\
the datacenter again: a plan whose documents were edited, that was already applied, or whose\n\
observed state moved (a takeover, a new image, someone else's apply) is refused (exit 1).\n\
An apply that would queue a new manatee image behind an operation past its point of no\n\
return is refused too.\n\
Exit status: 0 applied, 1 invalid input or arguments, a conflict or a refusal, 2 error.\n\n\
Examples:\n  tritonctl apply -f examples/lab/\n  tritonctl --zk 127.0.0.1:2181 apply -f prod/us-east/\n  tritonctl --zk 10.99.99.11:2181 apply --plan plan.json --sapi http://sapi ..."
    )]
    Apply(gitops::ApplyArgs),
    /// Show what applying would change: spec diffs and the operations each reconciler would run.
    #[command(
        after_help = "Per document: the spec change against the stored document (a unified diff of YAML,\n\
fields sorted, status left out), and the operation its reconciler would run against the\n\
observed datacenter: ordered steps, the peers/zones/vnodes each touches, health gates,\n\
approvals and windows, the expected write outage, the point of no return.\n\
Observes the datacenter when --sapi/--vmapi/--cnapi/--imgapi are given (manatee state from\n\
--zk), or plans offline against a snapshot with --observed.\n\
Exit status: 0 no differences, 1 differences, 2 error (invalid input or arguments too).\n\n\
Examples:\n  tritonctl diff -f examples/lab/\n  tritonctl diff -f prod/us-east/ --observed observed.json -o markdown > comment.md\n  tritonctl --zk 10.99.99.11:2181 diff -f prod/ --sapi http://10.99.99.32 --vmapi http://10.99.99.27 \\\n      --cnapi http://10.99.99.22 --imgapi http://10.99.99.21"
    )]
    Diff(gitops::DiffArgs),
    /// Record the observed state a plan needs, for offline diff and plan.
    #[command(
        after_help = "Writes the stored documents and their operation journals, every manatee shard they\n\
(and -f documents) name as the controller observes it (SAPI, VMAPI, CNAPI pg-status,\n\
ZooKeeper), the IMGAPI records of the images involved and the ring image, as versioned\n\
JSON (format tritonctl.observed/v1). `diff --observed` and `plan --observed` read it.\n\
Exit status: 0 written, 2 error (invalid input or arguments too).\n\n\
Example:\n  tritonctl --zk 10.99.99.11:2181 snapshot -f prod/ -o observed.json --sapi http://10.99.99.32 \\\n      --vmapi http://10.99.99.27 --cnapi http://10.99.99.22 --imgapi http://10.99.99.21"
    )]
    Snapshot(gitops::SnapshotArgs),
    /// Write a running region's documents as they are (`export shardtopology`): applying them changes nothing.
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Save a reviewed plan bound to the observed state it was planned against.
    #[command(
        after_help = "Writes the documents, the planned operations and a fingerprint of the observed state\n\
(manatee generations, roles and freeze, the instance set and images, image states, the ring\n\
image, the stored resourceVersions, operations in flight). Prints the review.\n\
`tritonctl apply --plan FILE` applies exactly this, or refuses if anything moved.\n\
Exit status: 0 saved, 2 error (invalid input or arguments too).\n\n\
Examples:\n  tritonctl plan -f prod/us-east/ -o plan.json --observed observed.json\n  tritonctl --zk 10.99.99.11:2181 plan -f prod/ -o plan.json --sapi http://10.99.99.32 ..."
    )]
    Plan(gitops::PlanArgs),
    /// List documents of a kind, or show one; `get leader` shows which controller leads.
    #[command(
        after_help = "KIND is HeadnodeSet, ManateeVersion or ShardTopology (or hs, mv, st; any case, plural ok).\n\
A document is named KIND NAME or KIND/NAME. `get leader` shows the leading controller:\n\
its identity (host, pid) and SINCE, when its candidate node was created in ZooKeeper.\n\
Output: -o table (default), wide, yaml, json (or -j), name, jsonpath=EXPR (RFC 9535, or\n\
kubectl's {.items[*].metadata.name}), or the columns to show (-o name,ready; any case).\n\
-H leaves the header out. Columns: NAME GENERATION OBSERVED READY PROGRESSING PAUSED\n\
OPERATION SPEC (the last two only with -o wide or when named).\n\
Exit status: 0 shown, 1 invalid arguments or not found, 2 error.\n\n\
Examples:\n  tritonctl get mv\n  tritonctl get manateeversion sdc -o yaml\n  tritonctl get mv/sdc -o jsonpath='{.status.observedGeneration}'\n  \
tritonctl get shardtopologies -o wide\n  tritonctl get mv -H -o name,ready\n  tritonctl get mv sdc -w\n  tritonctl get leader"
    )]
    Get(GetArgs),
    /// One screen for the datacenter: leader, documents with conditions and drift, operations in flight, HA posture, the ring.
    #[command(
        after_help = "Reads the store (--zk, or the embedded store): the leading controller, each document's\n\
conditions and its operation (current step, steps done, ETA from the steps done so far, the\n\
point of no return). With --sapi, --vmapi, --cnapi and --imgapi (or TRITONCTL_SAPI, ...) it\n\
also observes the datacenter, read-only: each document's drift (what `diff` of the stored\n\
document would change), the headnodes, binder members and quorum, moray instances, each\n\
manatee shard's primary, sync, asyncs, lag and freeze, and the hash ring (the deployed ring\n\
image when SAPI names one, else the one a stored ShardTopology describes): vnodes and\n\
read-only vnodes per shard. What could not be observed is listed, never left out.\n\
-j prints JSON; -r redraws every --interval until interrupted.\n\
The controller serves the same view in a browser: `tritonctl controller --web-addr ADDR`.\n\
Exit status: 0 shown, 1 invalid arguments, 2 error.\n\n\
Examples:\n  tritonctl status\n  tritonctl --zk 10.99.99.11:2181 status -r --sapi http://10.99.99.32 --vmapi http://10.99.99.27 \\\n      \
--cnapi http://10.99.99.22 --imgapi http://10.99.99.21\n  tritonctl status -j | jq '.documents[].operation'"
    )]
    Status(status::StatusArgs),
    /// Show a document in detail: spec, conditions, the operation's steps with timings.
    #[command(
        after_help = "Exit status: 0 shown, 1 invalid arguments or not found, 2 error.\n\n\
Examples:\n  tritonctl describe manateeversion sdc\n  tritonctl describe mv/sdc"
    )]
    Describe(NameArgs),
    /// Delete a stored document (the world is left as it is).
    #[command(
        after_help = "Exit status: 0 deleted, 1 invalid arguments, not found or refused (an operation in flight), 2 error.\n\n\
Examples:\n  tritonctl delete manateeversion sdc\n  tritonctl delete mv/sdc"
    )]
    Delete(NameArgs),
    /// Run the embedded demo: a simulated lab datacenter, a controller, and a manatee upgrade.
    #[command(
        after_help = "Starts a simulated lab datacenter on 127.0.0.1 (three headnodes, a three-peer\n\
manatee shard), applies examples/lab/, elects a controller, and upgrades the shard's\n\
manatee image while a client keeps writing. Streams the events, then prints the\n\
steps, the time, the writes lost (always 0) and the write outage. Needs nothing\n\
installed; nothing leaves the machine. While it runs, the controller's web view is\n\
served on 127.0.0.1 (a free port; --web-addr) and its URL printed. By default the primary is replaced by a\n\
switchover (the upgraded sync is promoted: one planned takeover); --strategy rolling\n\
shows sdcadm's order (freeze, reprovision the primary in place) and its longer outage.\n\
Exit status: 0 upgraded with no write lost, 1 invalid arguments, 2 error.\n\nExamples:\n  tritonctl demo\n  tritonctl demo --strategy rolling"
    )]
    Demo {
        /// Give up after this long.
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// How the primary is upgraded: switchover (a planned promotion of the
        /// upgraded sync: one takeover) or rolling (sdcadm's order: freeze and
        /// reprovision the primary in place).
        #[arg(long, default_value = "switchover", value_parser = ["switchover", "rolling"])]
        strategy: String,
        /// Serve the controller's web view here while the demo runs (port 0
        /// picks a free port; `off` serves nothing); its URL is printed.
        #[arg(long, default_value = "127.0.0.1:0", value_parser = serve::parse_web_addr)]
        web_addr: serve::MetricsAddr,
    },
    /// Approve the step that waits for approval (e.g. a shard's primary step), or one more attempt of a step that timed out.
    #[command(
        after_help = "Examples:\n  tritonctl approve manateeversion/manta-us-east\n  tritonctl approve manateeversion/sdc --option resume\n\n\
A step that times out stops its operation (Blocked, reason StepFailed): nothing is\n\
retried on its own. Fix the cause, then approve to let the step run once more.\n\n\
A transplant stopped past its point of no return is never approved by a plain\n\
`approve`: name the option. resume retries the failed step once (that stop only);\n\
reverse-transplant and restore-backup are not automated: tritonctl refuses them\n\
and prints what they would run. Each approval is recorded as an event naming who\n\
approved ($USER@hostname) and what.\n\
Exit status: 0 approved, 1 invalid arguments, not found or nothing to approve, 2 error."
    )]
    Approve {
        /// KIND/NAME or KIND NAME, e.g. manateeversion/sdc.
        object: String,
        /// NAME, when KIND is given alone.
        name: Option<String>,
        /// Past a transplant's point of no return: resume, reverse-transplant or restore-backup.
        #[arg(long, value_parser = ["resume", "reverse-transplant", "restore-backup"])]
        option: Option<String>,
    },
    /// Roll back a manatee transplant that has not reached its point of no return.
    #[command(
        after_help = "Example:\n  tritonctl cancel manateeversion/sdc\n\nPast the point of no return the cancel is refused and the options\n(resume, reverse-transplant, restore-backup) are printed. A cancel is recorded as\n\
an event naming who cancelled.\n\
Exit status: 0 cancelled, 1 invalid arguments, not found or nothing to cancel, 2 error."
    )]
    Cancel {
        /// KIND/NAME or KIND NAME, e.g. manateeversion/sdc.
        object: String,
        /// NAME, when KIND is given alone.
        name: Option<String>,
    },
    /// List the controller's events, oldest first; with -w, keep streaming new ones.
    #[command(
        after_help = "Output: as `get`: -H, -o COL,COL, -j, -o yaml, -o name (event/SEQ), -o jsonpath=EXPR.\n\
Columns: TIME TYPE OBJECT REASON MESSAGE (and, with -o wide or when named, OPERATION STEP).\n\
With -w, -o json prints one event a line.\n\
Exit status: 0 listed, 1 invalid arguments or not found (no such document and no event about it), 2 error.\n\n\
With --audit: the audit log, columns TIME IDENTITY VERIFIED ACTION OBJECT DECISION (PATH with\n\
-o wide). VERIFIED is `verified` when ZooKeeper recorded the creator's authenticated identity\n\
(a locked-down tree), `unverified` when the identity is what the process said (the embedded\n\
store: the local user), MISMATCH when they disagree.\n\
Examples:\n  tritonctl events\n  tritonctl events --audit\n  tritonctl events manateeversion/sdc\n  tritonctl events mv sdc -H -o time,reason\n  \
tritonctl --zk 10.99.99.11:2181 events -w manateeversion/sdc"
    )]
    Events {
        /// Only events of KIND/NAME (or KIND NAME).
        object: Option<String>,
        /// NAME, when KIND is given alone.
        name: Option<String>,
        /// After the stored events, print each new one as it is recorded (until interrupted).
        #[arg(short = 'w', long)]
        watch: bool,
        /// The audit log instead: who applied, deleted, approved, paused, resumed, cancelled,
        /// applied a plan or changed roles, and whether ZooKeeper verified that identity.
        #[arg(long, conflicts_with_all = ["watch", "object"])]
        audit: bool,
        #[command(flatten)]
        listing: listing::ListingArgs,
    },
    /// Wait until a document's condition holds, or until it is deleted.
    #[command(
        after_help = "A condition counts only once the controller has observed the document's current\n\
generation, so `apply` then `wait` never returns on the previous spec's Ready.\n\
While waiting, each change of state is printed on standard error.\n\
A condition that already holds ends the wait at once, whatever --timeout says.\n\
Exit status: 0 the condition holds, 1 timed out, 2 error (invalid arguments, the document does not exist or is Degraded).\n\n\
Examples:\n  tritonctl wait --for=condition=Ready manateeversion/sdc --timeout 10m\n  \
tritonctl wait --for=condition=Blocked=False mv/sdc\n  tritonctl wait --for=delete mv/sdc --timeout 1m"
    )]
    Wait {
        /// condition=NAME[=True|False|Unknown] (NAME: Ready, Progressing, Degraded, Paused,
        /// AwaitingApproval, Blocked; value True when left out) or delete.
        #[arg(long = "for", value_name = "CONDITION")]
        for_: String,
        /// KIND/NAME or KIND NAME, e.g. manateeversion/sdc.
        object: String,
        /// NAME, when KIND is given alone.
        name: Option<String>,
        /// Give up after this long (exit 1).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Stop a document's rollout: no new step starts until `tritonctl resume`.
    #[command(
        after_help = "The pause is a marker stored beside the document (who, when, why), not a spec\n\
edit, so applying the document again from git does not undo it; only `resume` does.\n\
A step already under way in the world finishes there; the next one does not start.\n\
`spec.rollout.paused: true` in a ManateeVersion pauses too (a pause decided in git).\n\
`get` shows who paused (PAUSED column), `describe` also when and why. Each pause is\n\
recorded as an event naming who paused and why.\n\
Exit status: 0 paused (or already paused), 1 invalid arguments or not found, 2 error.\n\n\
Examples:\n  tritonctl pause manateeversion/sdc --reason 'INC-42: moray errors'\n  tritonctl resume manateeversion/sdc"
    )]
    Pause {
        /// KIND/NAME or KIND NAME, e.g. manateeversion/sdc.
        object: String,
        /// NAME, when KIND is given alone.
        name: Option<String>,
        /// Why (shown by describe and in the Paused condition).
        #[arg(long)]
        reason: Option<String>,
        /// Who is pausing (default: $USER@hostname).
        #[arg(long)]
        by: Option<String>,
    },
    /// Lift a `tritonctl pause`.
    #[command(after_help = "A resume is recorded as an event naming who resumed.\n\
Exit status: 0 resumed, 1 invalid arguments, not found or not paused, 2 error.\n\n\
Example:\n  tritonctl resume manateeversion/sdc")]
    Resume {
        /// KIND/NAME or KIND NAME, e.g. manateeversion/sdc.
        object: String,
        /// NAME, when KIND is given alone.
        name: Option<String>,
    },
    /// Run the controller: campaign for leadership, then reconcile until SIGTERM/SIGINT.
    #[command(
        after_help = "Needs ZooKeeper (--zk, or `zookeeper.servers` in --config): documents, status, operation\n\
journals and the leader election live there, and so do the manatee shards' state. Several\n\
controllers may run; one leads, the others wait. Logs go to stderr; /metrics and /healthz\n\
are served on --metrics-addr. Leadership lost: exit 3; restart it (a new process campaigns again).\n\
Settings: a flag wins over its environment variable, which wins over the --config file,\n\
which wins over the default. A config file with an unknown key or a bad value stops the\n\
start (exit 1) naming FILE:LINE:COLUMN, the key and the reason; --check-config checks only.\n\
Exit status: 0 stopped by SIGTERM/SIGINT, 1 invalid arguments, 2 error, 3 leadership lost.\n\n\
Examples:\n  tritonctl controller --config /opt/smartdc/tritonctl/etc/config.json\n  \
tritonctl controller --config etc/config.json --check-config\n  tritonctl --zk 10.99.99.11:2181 controller --sapi http://10.99.99.32 \\\n      \
--vmapi http://10.99.99.28 --cnapi http://10.99.99.22 --imgapi http://10.99.99.21 \\\n      \
--log-format json 2>&1 | bunyan"
    )]
    Controller(serve::ControllerArgs),
    /// The simulated datacenter as a standalone process.
    #[command(subcommand)]
    Sim(serve::SimCommand),
    /// fash's verbs on Manta hash rings: LevelDB ring directories and ring images.
    #[command(
        subcommand,
        after_help = "A ring is a LevelDB directory in node-fash's layout (what electric-moray serves\n\
from, `-l DIR`), a manta-hash-ring image in IMGAPI (a gzip tar of that directory,\n\
`--image UUID --imgapi URL`), or for `diff` also a fash JSON file (plans keep that form).\n\n\
Examples:\n  tritonctl ring create -v 6 -p tcp://1.moray.emy-11.joyent.us:2020,tcp://2.moray.emy-11.joyent.us:2020 -o hash_ring\n  \
tritonctl ring locate -l hash_ring /yunong/yunong.txt\n  tritonctl ring show -l hash_ring\n  tritonctl ring diff old_ring hash_ring"
    )]
    Ring(ring::RingCommand),
    /// A resharding's live cleanup tuning (`reshard tune`).
    #[command(
        subcommand,
        after_help = "Examples:\n  tritonctl reshard tune 1.moray-split-7f3a\n  tritonctl reshard tune 1.moray-split-7f3a batch_size 5000"
    )]
    Reshard(reshard_cmd::ReshardCommand),
    /// Identities and roles on the datacenter's ZooKeeper (access control), as the admin identity.
    #[command(
        subcommand,
        after_help = "Identities authenticate to ZooKeeper with digest credentials; each node tritonctl\n\
creates gets an ACL naming the identities whose role allows the access:\n\
  viewer    reads documents, status, events, plans and the audit log\n\
  operator  viewer, and apply, delete, pause, resume, cancel\n\
  approver  viewer, and approve\n\
  admin     manages identities and roles (`auth add`, `auth remove`)\n\
  controller  the controller process: writes status, events, journals, locks, the election\n\
A client without credentials reads and writes nothing under /tritonctl; ZooKeeper itself\n\
refuses (\"not authorized\", exit 1). The embedded store has no access control.\n\n\
Credentials come from the environment, never the command line:\n\
  TRITONCTL_CREDENTIALS=FILE   a file holding IDENTITY:SECRET, mode 0600 (refused otherwise)\n\
  TRITONCTL_ZK_IDENTITY and TRITONCTL_ZK_SECRET\n\
  or ~/.config/tritonctl/credentials when it exists.\n\n\
Every apply, delete, approve, pause, resume, cancel and plan application is recorded with\n\
the identity that made it: `tritonctl events --audit`.\n\n\
Examples:\n  TRITONCTL_CREDENTIALS=~/admin.cred tritonctl --zk 10.99.99.11:2181 auth init \\\n      \
--controller-credentials /opt/tritonctl/controller.cred --dry-run\n  \
tritonctl auth add alice --role operator --credentials alice.cred\n  tritonctl auth list\n  tritonctl auth whoami"
    )]
    Auth(auth_cmd::AuthCommand),
    /// Print the JSON Schema of a kind.
    #[command(
        after_help = "Exit status: 0 printed, 1 invalid arguments (an unknown kind).\n\n\
Example:\n  tritonctl schema ShardTopology > shardtopology.schema.json"
    )]
    Schema {
        /// HeadnodeSet, ManateeVersion or ShardTopology.
        kind: String,
    },
}

#[derive(Args, Debug)]
pub struct FileArgs {
    /// A file, a directory (read recursively: *.yaml, *.yml, *.json) or `-` for standard input. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// KIND, KIND/NAME, or `leader`.
    pub kind: String,
    /// NAME, when KIND is given alone.
    pub name: Option<String>,
    #[command(flatten)]
    pub listing: listing::ListingArgs,
    /// After printing, print a row again whenever what it shows changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    /// KIND/NAME, or KIND followed by NAME.
    pub kind: String,
    /// NAME, when KIND is given alone.
    pub name: Option<String>,
}

/// The formats every document listing had before `-o` took columns,
/// `name` and `jsonpath=` too (see [`listing::Output`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Wide,
    Yaml,
    Json,
}

impl OutputFormat {
    pub fn output(self) -> listing::Output {
        match self {
            OutputFormat::Table => listing::Output::Table,
            OutputFormat::Wide => listing::Output::Wide,
            OutputFormat::Yaml => listing::Output::Yaml,
            OutputFormat::Json => listing::Output::Json,
        }
    }
}

/// An error that maps to an exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_INVALID,
            message: message.into(),
        }
    }
    pub fn error(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_ERROR,
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::error(format!("{e:#}"))
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Failure {
        match e {
            crate::store::StoreError::Conflict { .. } => Failure::invalid(e.to_string()),
            crate::store::StoreError::Coord(c)
                if matches!(c.root(), coord::CoordError::NoAuth(_)) =>
            {
                Failure::invalid(no_auth_message(&c))
            }
            other => Failure::error(other.to_string()),
        }
    }
}

/// ZooKeeper refused this identity (its ACL): say so, and how to find out
/// who one is and what one may do.
pub fn no_auth_message(e: &coord::CoordError) -> String {
    format!(
        "{}: ZooKeeper refused this identity; `tritonctl auth whoami` shows who you are and your \
         roles (credentials come from TRITONCTL_CREDENTIALS or TRITONCTL_ZK_IDENTITY/TRITONCTL_ZK_SECRET)",
        e.root()
    )
}

pub fn main() -> ExitCode {
    exit::quiet_on_closed_output();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

/// Parse the command line; a usage error is printed and its exit status
/// returned (1, or 2 for the commands whose 1 answers a question).
pub fn parse(args: &[std::ffi::OsString]) -> Result<Cli, u8> {
    let usage = || exit::usage_code(exit::subcommand_of(args).as_deref());
    let matches = match Cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return Err(if e.use_stderr() { usage() } else { EXIT_OK });
        }
    };
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return Err(usage());
        }
    };
    cli.store.session_timeout_given = matches!(
        matches.value_source("session_timeout"),
        Some(clap::parser::ValueSource::CommandLine)
    );
    if let Err(message) = store_args::resolve(&mut cli.store, &matches) {
        eprintln!("error: {message}");
        return Err(usage());
    }
    Ok(cli)
}
