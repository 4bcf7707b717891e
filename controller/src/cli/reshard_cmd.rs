//! `tritonctl reshard tune OPERATION [NAME [VALUE]]`: a resharding's
//! cleanup settings, changed while it runs (as manta-reshard's `reshard
//! plan UUID tune`). The settings live in
//! [`crate::layout::reshard_tuning_path`]; the cleanup engine
//! ([`crate::cleanup`]) reads them before each round of batches.

use clap::Subcommand;
use serde_json::json;

use super::Failure;
use super::listing::{Listing, ListingArgs, render};
use super::store_open;
use crate::cleanup::tuning::{Overrides, Tunable, Tuning, read_overrides, write_overrides};
use crate::layout;

#[derive(Subcommand, Debug)]
pub enum ReshardCommand {
    /// Show or change a resharding's cleanup tuning while it runs.
    #[command(after_help = TUNE_HELP)]
    Tune {
        /// The resharding operation's id (as `describe` shows it).
        operation: String,
        /// One tunable: connections, batch_size, pause_ms, max_read_p99_ms.
        name: Option<String>,
        /// Its new value, or `default` to go back to the default.
        value: Option<String>,
        #[command(flatten)]
        listing: ListingArgs,
    },
}

const TUNE_HELP: &str = "The cleanup that ends a resharding deletes, on both shards, the rows each side no longer\n\
owns, in batches over direct PostgreSQL connections to the shard primary. It reads these\n\
settings before every round of batches, so a change takes effect within one batch:\n\n\
  NAME              RANGE        DEFAULT  (manta-reshard's)  WHAT\n\
  connections       1..256       4        (10)               connections deleting in parallel\n\
  batch_size        1..100000    2000     (10)               rows per DELETE\n\
  pause_ms          0..60000     0        (1000)             pause of each connection between batches\n\
  max_read_p99_ms   0..60000     20       (none)             back off while the shard's read p99 is above\n\
                                                             this (pause doubles, connections halve, per\n\
                                                             50 ms over it); 0 never throttles\n\n\
Without NAME, shows every tunable (SET says whether an operator set it); with NAME alone,\n\
that one. With VALUE, sets it (`default` unsets it); a concurrent change is refused, never\n\
overwritten. Listings take -j, -H, -o.\n\
Exit status: 0 done, 1 invalid arguments or a refused change, 2 error.\n\n\
Examples:\n  tritonctl reshard tune 1.moray-split-7f3a\n  tritonctl reshard tune 1.moray-split-7f3a batch_size 5000\n  \
tritonctl reshard tune 1.moray-split-7f3a max_read_p99_ms 0\n  tritonctl reshard tune 1.moray-split-7f3a -j";

pub async fn run(cmd: ReshardCommand, store: &super::StoreArgs) -> Result<(), Failure> {
    match cmd {
        ReshardCommand::Tune {
            operation,
            name,
            value,
            listing,
        } => {
            tune(
                store,
                &operation,
                name.as_deref(),
                value.as_deref(),
                &listing,
            )
            .await
        }
    }
}

fn valid_operation(op: &str) -> Result<(), Failure> {
    let ok = !op.is_empty()
        && op.len() <= 200
        && op
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Failure::invalid(format!(
            "operation {op:?}: expected an operation id (letters, digits, - _ . :)"
        )))
    }
}

async fn tune(
    store: &super::StoreArgs,
    operation: &str,
    name: Option<&str>,
    value: Option<&str>,
    listing: &ListingArgs,
) -> Result<(), Failure> {
    valid_operation(operation)?;
    let tunable = name
        .map(Tunable::parse)
        .transpose()
        .map_err(|e| Failure::invalid(e.to_string()))?;
    let path = layout::reshard_tuning_path(operation);
    let open = store_open::open(store).await?;
    let coord = open.store.coord().clone();
    let (mut o, version) = read_overrides(coord.as_ref(), &path)
        .await
        .map_err(|e| Failure::error(e.to_string()))?;
    if let (Some(t), Some(v)) = (tunable, value) {
        let before = t.show(&Tuning::default().with(&o));
        t.set(&mut o, v)
            .map_err(|e| Failure::invalid(e.to_string()))?;
        write_overrides(coord.as_ref(), &path, &o, version)
            .await
            .map_err(|e| match &e {
                crate::cleanup::TuningError::Coord { error, .. }
                    if matches!(
                        error.root(),
                        coord::CoordError::BadVersion(_) | coord::CoordError::NodeExists(_)
                    ) =>
                {
                    Failure::invalid(format!(
                        "{operation}: the tuning changed while this was written; nothing was \
                         changed, look again and retry ({e})"
                    ))
                }
                crate::cleanup::TuningError::Coord { error, .. }
                    if matches!(error.root(), coord::CoordError::NoAuth(_)) =>
                {
                    Failure::invalid(format!("{operation}: {}", super::no_auth_message(error)))
                }
                _ => Failure::error(e.to_string()),
            })?;
        let after = t.show(&Tuning::default().with(&o));
        eprintln!("{operation}: {} {before} -> {after}", t.name());
    }
    let shown: Vec<Tunable> = match tunable {
        Some(t) => vec![t],
        None => Tunable::ALL.to_vec(),
    };
    print!(
        "{}",
        render(
            &tuning_listing(operation, &o, &shown),
            &listing.format(),
            listing.no_headers
        )?
    );
    Ok(())
}

/// The tunables as a listing: NAME, VALUE, SET, RANGE, DEFAULT.
pub fn tuning_listing(operation: &str, o: &Overrides, shown: &[Tunable]) -> Listing {
    let now = Tuning::default().with(o);
    let def = Tuning::default();
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|t| {
            let (lo, hi) = t.range();
            vec![
                t.name().to_string(),
                t.show(&now),
                if t.is_set(o) { "yes" } else { "no" }.to_string(),
                format!("{lo}..{hi}"),
                t.show(&def),
                t.help().to_string(),
            ]
        })
        .collect();
    let items: serde_json::Map<String, serde_json::Value> = shown
        .iter()
        .map(|t| {
            let (lo, hi) = t.range();
            (
                t.name().to_string(),
                json!({
                    "value": serde_json::from_str::<serde_json::Value>(&t.show(&now)).unwrap_or(json!(null)),
                    "set": t.is_set(o),
                    "min": lo,
                    "max": hi,
                    "default": serde_json::from_str::<serde_json::Value>(&t.show(&def)).unwrap_or(json!(null)),
                }),
            )
        })
        .collect();
    Listing {
        columns: &["NAME", "VALUE", "SET", "RANGE", "DEFAULT", "WHAT"],
        narrow: 5,
        names: shown
            .iter()
            .map(|t| format!("tuning/{operation}/{}", t.name()))
            .collect(),
        rows,
        value: json!({ "operation": operation, "tunables": items }),
    }
}
