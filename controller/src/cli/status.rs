//! `tritonctl status`: the datacenter or region at a glance (issue #21),
//! once, as JSON (`-j`), or redrawn until interrupted (`-r`, as manta-reshard's
//! `reshard status -r`).

use std::time::Duration;

use clap::Args;

use super::gitops::WorldArgs;
use super::{Failure, StoreArgs, parse_duration, store_open};
use crate::web::gather;
use crate::web::observe::{LiveObserve, Observe};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print the overview as JSON (one object; with -r, one a line).
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Redraw every --interval until interrupted.
    #[arg(short = 'r', long)]
    pub redraw: bool,
    /// How often -r redraws.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    #[command(flatten)]
    pub world: WorldArgs,
}

pub async fn run(store: &StoreArgs, args: StatusArgs) -> Result<(), Failure> {
    let open = store_open::open(store).await?;
    let zk = store
        .zk
        .as_ref()
        .map(|z| format!("zookeeper {z}"))
        .unwrap_or_else(|| "the embedded store".into());
    let observe = args
        .world
        .endpoints()?
        .map(|e| LiveObserve::new(&open.store, &e, &zk));
    let observe = observe.as_ref().map(|o| o as &dyn Observe);
    let clear = args.redraw && !args.json && console::Term::stdout().is_term();
    loop {
        let o = gather::overview(&open.store, &open.description, observe)
            .await
            .map_err(Failure::error)?;
        let text = if args.json {
            let j = if args.redraw {
                serde_json::to_string(&o)
            } else {
                serde_json::to_string_pretty(&o)
            };
            j.expect("the overview serializes") + "\n"
        } else {
            super::status_text::render(&o)
        };
        if clear {
            // Home and clear, then the screen.
            print!("\x1b[H\x1b[2J{text}");
        } else {
            print!("{text}");
        }
        if !args.redraw {
            return Ok(());
        }
        if !args.json && !clear {
            println!();
        }
        tokio::time::sleep(args.interval).await;
    }
}
