//! What each subcommand does.

use crds::Kind;

use super::input;
use super::listing;
use super::objref;
use super::output;
use super::store_open;
use super::{Cli, Command, Failure};
use crate::runtime::events::{Event, Events};

pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Validate(f) => {
            let input = input::read(&f.files)?;
            report_diagnostics(&input)?;
            println!(
                "{} document(s) in {} file(s) are valid",
                input.documents.len(),
                input.files
            );
            Ok(())
        }
        Command::Apply(f) if f.plan.is_some() => {
            let plan = f.plan.as_ref().expect("checked");
            super::gitops::apply_plan(&cli.store, plan, &f.world).await
        }
        Command::Diff(a) => super::gitops::diff(&cli.store, a).await,
        Command::Ring(r) => super::ring::run(r).await,
        Command::Snapshot(a) => super::gitops::snapshot(&cli.store, a).await,
        Command::Export(c) => super::export::run(c).await,
        Command::Plan(a) => super::gitops::plan(&cli.store, a).await,
        Command::Apply(f) => {
            let input = input::read(&f.files)?;
            report_diagnostics(&input)?;
            let open = store_open::open(&cli.store).await?;
            let docs: Vec<_> = input.documents.iter().map(|d| d.document.clone()).collect();
            // Operations in flight decide whether they can take the change.
            let pins = crate::gitops::running::guard(&open.store, &docs)
                .await
                .map_err(|g| match g {
                    crate::gitops::running::Guard::Refused(m) => Failure::invalid(m),
                    crate::gitops::running::Guard::Error(m) => Failure::error(m),
                })?;
            let outcomes = open.store.apply_with(&docs, pins).await?;
            for o in &outcomes {
                println!(
                    "{}/{} {} (generation {})",
                    o.kind.short(),
                    o.name,
                    o.action.as_str(),
                    o.generation
                );
            }
            audit_applied(
                &open.store,
                crate::auth::audit::Action::Apply,
                &outcomes,
                "",
            )
            .await;
            Ok(())
        }
        Command::Get(g) => get(&cli.store, g).await,
        Command::Status(a) => super::status::run(&cli.store, a).await,
        Command::Describe(n) => {
            let (kind, name) = objref::object(&n.kind, n.name.as_deref())?;
            let open = store_open::open(&cli.store).await?;
            let doc = open
                .store
                .get(kind, &name)
                .await?
                .ok_or_else(|| not_found(kind, &name))?;
            let marker = crate::pause::get(open.store.coord(), kind, &name).await?;
            print!("{}", output::describe_with_pause(&doc, marker.as_ref()));
            Ok(())
        }
        Command::Delete(n) => {
            let (kind, name) = objref::object(&n.kind, n.name.as_deref())?;
            let open = store_open::open(&cli.store).await?;
            // A transplant in flight is only driven while its document exists.
            crate::gitops::running::guard_delete(&open.store, kind, &name)
                .await
                .map_err(|g| match g {
                    crate::gitops::running::Guard::Refused(m) => Failure::invalid(m),
                    crate::gitops::running::Guard::Error(m) => Failure::error(m),
                })?;
            if open.store.delete(kind, &name).await? {
                println!("{}/{name} deleted", kind.short());
                open.store
                    .audit(
                        crate::auth::audit::Action::Delete,
                        &format!("{}/{name}", kind.short()),
                        "deleted",
                    )
                    .await;
                Ok(())
            } else {
                Err(not_found(kind, &name))
            }
        }
        Command::Controller(args) => super::serve::controller(args, &cli.store).await,
        Command::Sim(cmd) => super::serve::sim(cmd, &cli.store).await,
        Command::Demo {
            timeout,
            strategy,
            web_addr,
        } => {
            let strategy = match strategy.as_str() {
                "rolling" => crds::manatee::Strategy::Rolling,
                _ => crds::manatee::Strategy::Switchover,
            };
            let mut print = |line: String| println!("{line}");
            let options = crate::demo::DemoOptions {
                web_addr: web_addr.0,
                ..Default::default()
            };
            let r = crate::demo::run_with(&mut print, timeout, strategy, options)
                .await
                .map_err(Failure::error)?;
            println!();
            println!(
                "summary: lab shard `sdc` upgraded by {} in {:.1}s through {} steps",
                crate::demo::strategy_name(r.strategy),
                r.elapsed.as_secs_f64(),
                r.steps
            );
            println!("  writes acknowledged: {}", r.acked);
            println!("  writes lost:         {}", r.lost);
            println!(
                "  write outage:        {:.0} ms longest, {:.0} ms in all ({} writes refused while the shard had no writable primary)",
                r.longest_outage.as_secs_f64() * 1000.0,
                r.total_outage.as_secs_f64() * 1000.0,
                r.failed_writes
            );
            if r.lost > 0 {
                return Err(Failure::error(format!(
                    "{} acknowledged writes were lost",
                    r.lost
                )));
            }
            Ok(())
        }
        Command::Approve {
            object,
            name,
            option,
        } => {
            let (kind, name) = objref::object(&object, name.as_deref())?;
            let object = format!("{}/{name}", kind.short());
            let open = store_open::open(&cli.store).await?;
            let done = match &option {
                Some(o) if kind == crds::Kind::ManateeVersion => {
                    crate::reconcile::decisions::decide(open.store.coord(), &name, o)
                        .await
                        .map_err(|e| Failure::invalid(e.to_string()))?
                }
                Some(_) => {
                    return Err(Failure::invalid(format!(
                        "{object}: --option answers a ManateeVersion transplant stopped past its point of no return"
                    )));
                }
                None => crate::reconcile::approve(open.store.coord(), kind, &name)
                    .await
                    .map_err(|e| Failure::error(e.to_string()))?,
            };
            if done.is_empty() {
                let mut msg = format!("{object}: no operation step is waiting for approval");
                if kind == crds::Kind::ManateeVersion {
                    for s in crate::reconcile::decisions::stopped(open.store.coord(), &name)
                        .await
                        .map_err(|e| Failure::error(e.to_string()))?
                    {
                        msg.push_str(&format!("\n{s}"));
                    }
                }
                return Err(Failure::invalid(msg));
            }
            for d in &done {
                println!("approved {d}");
            }
            let answer = match &option {
                Some(o) => format!("answered {o}"),
                None => "approved".to_string(),
            };
            record_decision(&open.store, kind, &name, "Approved", &answer, &done).await;
            open.store
                .audit(
                    crate::auth::audit::Action::Approve,
                    &object,
                    &format!("{answer}: {}", done.join("; ")),
                )
                .await;
            Ok(())
        }
        Command::Cancel { object, name } => {
            let (kind, name) = objref::object(&object, name.as_deref())?;
            let object = format!("{}/{name}", kind.short());
            if kind != crds::Kind::ManateeVersion {
                return Err(Failure::invalid(format!(
                    "{object}: only a ManateeVersion transplant can be cancelled"
                )));
            }
            let open = store_open::open(&cli.store).await?;
            let done = crate::reconcile::decisions::cancel(open.store.coord(), &name)
                .await
                .map_err(|e| Failure::error(e.to_string()))?;
            if done.is_empty() {
                return Err(Failure::invalid(format!(
                    "{object}: no transplant is in flight"
                )));
            }
            for d in &done {
                println!("{d}");
            }
            record_decision(&open.store, kind, &name, "Cancelled", "cancelled", &done).await;
            open.store
                .audit(
                    crate::auth::audit::Action::Cancel,
                    &object,
                    &format!("cancelled: {}", done.join("; ")),
                )
                .await;
            Ok(())
        }
        Command::Events {
            audit: true,
            listing,
            ..
        } => {
            let open = store_open::open(&cli.store).await?;
            super::auth_cmd::audit_events(open.store.coord(), &listing).await
        }
        Command::Events {
            object,
            name,
            watch,
            listing,
            ..
        } => events(&cli.store, object, name, watch, listing).await,
        Command::Auth(cmd) => super::auth_cmd::run(cmd, &cli.store).await,
        Command::Reshard(cmd) => super::reshard_cmd::run(cmd, &cli.store).await,
        Command::Wait {
            for_,
            object,
            name,
            timeout,
        } => {
            let what = super::watch::WaitFor::parse(&for_)?;
            // `wait` exits 1 on a timeout only: every other refusal is 2.
            let (kind, name) =
                objref::object(&object, name.as_deref()).map_err(|f| Failure::error(f.message))?;
            let open = store_open::open(&cli.store).await?;
            let state = super::watch::wait(&open.store, kind, &name, &what, timeout).await?;
            println!("{}/{name}: {state}", kind.short());
            Ok(())
        }
        Command::Pause {
            object,
            name,
            reason,
            by,
        } => {
            let (kind, name) = objref::object(&object, name.as_deref())?;
            let open = store_open::open(&cli.store).await?;
            super::pause_cmd::pause(&open.store, kind, &name, by, reason).await
        }
        Command::Resume { object, name } => {
            let (kind, name) = objref::object(&object, name.as_deref())?;
            let open = store_open::open(&cli.store).await?;
            super::pause_cmd::resume(&open.store, kind, &name).await
        }
        Command::Schema { kind } => {
            let kind = parse_kind(&kind)?;
            print!("{}", crds::schema::schema_json(kind));
            Ok(())
        }
    }
}

fn report_diagnostics(input: &input::Input) -> Result<(), Failure> {
    for d in &input.diagnostics {
        eprintln!("{d}");
    }
    if input.has_errors() {
        let n = input.diagnostics.iter().filter(|d| d.is_error()).count();
        return Err(Failure::invalid(format!(
            "{n} error(s); nothing was applied"
        )));
    }
    Ok(())
}

pub use super::objref::parse_kind;

pub use super::objref::not_found;

/// Each document an apply changed, in the audit log (`suffix` says how,
/// e.g. which plan).
pub async fn audit_applied(
    store: &crate::store::Store,
    action: crate::auth::audit::Action,
    outcomes: &[crate::store::ApplyOutcome],
    suffix: &str,
) {
    for o in outcomes
        .iter()
        .filter(|o| o.action != crate::store::ApplyAction::Unchanged)
    {
        let decision = format!(
            "{} (generation {}, resourceVersion {}){suffix}",
            o.action.as_str(),
            o.generation,
            o.resource_version
        );
        store
            .audit(action, &format!("{}/{}", o.kind.short(), o.name), &decision)
            .await;
    }
}

/// Record an operator's decision (approve, cancel) as an event naming who
/// made it (the authenticated identity, or the local user and host). The
/// decision is made already: a failure to record it is a warning.
async fn record_decision(
    store: &crate::store::Store,
    kind: Kind,
    name: &str,
    reason: &str,
    answer: &str,
    done: &[String],
) {
    let who = store.principal().name();
    let message = format!("{answer} by {who}: {}", done.join("; "));
    let event = Event::normal(format!("{kind}/{name}"), reason, message);
    if let Err(e) = Events::new(store.coord().clone())
        .record(&event, None)
        .await
    {
        eprintln!("warning: {reason} was not recorded as an event: {e}");
    }
}

async fn get(store: &super::StoreArgs, g: super::GetArgs) -> Result<(), Failure> {
    let format = g.listing.format();
    if matches!(g.kind.to_ascii_lowercase().as_str(), "leader" | "leaders") && g.name.is_none() {
        let open = store_open::open(store).await?;
        let leader = super::leader_cmd::current(&open.store).await?;
        if leader.is_none() && format.is_rows() {
            eprintln!("No controller leads in {}.", open.description);
            return Ok(());
        }
        let l = super::leader_cmd::listing(leader.as_ref());
        print!("{}", listing::render(&l, &format, g.listing.no_headers)?);
        return Ok(());
    }
    let (kind, name) = objref::kind_and_name(&g.kind, g.name.as_deref())?;
    // An unknown column is refused before the store is opened.
    if format.is_rows() {
        listing::columns(&output::DOC_COLUMNS, output::DOC_NARROW, &format)?;
    }
    let open = store_open::open(store).await?;
    if g.watch {
        return super::watch::get_watch(
            &open.store,
            kind,
            name.as_deref(),
            &format,
            g.listing.no_headers,
        )
        .await;
    }
    let wide = matches!(format, listing::Output::Wide);
    let l = match &name {
        Some(name) => {
            let doc = open
                .store
                .get(kind, name)
                .await?
                .ok_or_else(|| not_found(kind, name))?;
            let pauses = super::watch::pauses(&open.store, kind, &[name]).await?;
            output::doc_listing(std::slice::from_ref(&doc), &pauses, wide, true)
        }
        None => {
            let docs = open.store.list(kind).await?;
            if docs.is_empty() && format.is_rows() {
                eprintln!("No {} documents in {}.", kind, open.description);
                return Ok(());
            }
            let names: Vec<&str> = docs.iter().map(|d| d.name()).collect();
            let pauses = super::watch::pauses(&open.store, kind, &names).await?;
            output::doc_listing(&docs, &pauses, wide, false)
        }
    };
    print!("{}", listing::render(&l, &format, g.listing.no_headers)?);
    Ok(())
}

async fn events(
    store: &super::StoreArgs,
    object: Option<String>,
    name: Option<String>,
    watch: bool,
    args: listing::ListingArgs,
) -> Result<(), Failure> {
    let format = args.format();
    let target = match &object {
        Some(o) => Some(objref::object(o, name.as_deref())?),
        None => None,
    };
    if format.is_rows() {
        listing::columns(
            &super::watch::EVENT_COLUMNS,
            super::watch::EVENT_NARROW,
            &format,
        )?;
    }
    let filter = target.as_ref().map(|(k, n)| format!("{k}/{n}"));
    let open = store_open::open(store).await?;
    let events = Events::new(open.store.coord().clone());
    let stored = events.list(filter.as_deref()).await?;
    // Events outlive their document (a deleted one keeps its history); a
    // name with neither is a typo.
    if let Some((kind, name)) = &target
        && stored.is_empty()
        && open.store.get(*kind, name).await?.is_none()
    {
        return Err(not_found(*kind, name));
    }
    if watch {
        return super::watch::events_watch(&open.store, filter, &format, args.no_headers).await;
    }
    let l = super::watch::event_listing(&stored, matches!(format, listing::Output::Wide));
    print!("{}", listing::render(&l, &format, args.no_headers)?);
    Ok(())
}
