//! What each subcommand does.

use crds::Kind;

use super::input;
use super::output;
use super::store_open;
use super::{Cli, Command, Failure};

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
        Command::Snapshot(a) => super::gitops::snapshot(&cli.store, a).await,
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
            for o in outcomes {
                println!(
                    "{}/{} {} (generation {})",
                    o.kind.short(),
                    o.name,
                    o.action.as_str(),
                    o.generation
                );
            }
            Ok(())
        }
        Command::Get(g) => {
            let kind = parse_kind(&g.kind)?;
            let open = store_open::open(&cli.store).await?;
            if g.watch {
                return super::watch::get_watch(&open.store, kind, g.name.as_deref(), g.output)
                    .await;
            }
            match g.name {
                Some(name) => {
                    let doc = open
                        .store
                        .get(kind, &name)
                        .await?
                        .ok_or_else(|| not_found(kind, &name))?;
                    let pauses = super::watch::pauses(&open.store, kind, &[&name]).await?;
                    match g.output {
                        super::OutputFormat::Table | super::OutputFormat::Wide => print!(
                            "{}",
                            output::render_list_with_pauses(
                                std::slice::from_ref(&doc),
                                g.output,
                                &pauses
                            )
                        ),
                        _ => print!("{}", output::render_one(&doc, g.output)),
                    }
                }
                None => {
                    let docs = open.store.list(kind).await?;
                    if docs.is_empty()
                        && matches!(
                            g.output,
                            super::OutputFormat::Table | super::OutputFormat::Wide
                        )
                    {
                        eprintln!("No {} documents in {}.", kind, open.description);
                        return Ok(());
                    }
                    let names: Vec<&str> = docs.iter().map(|d| d.name()).collect();
                    let pauses = super::watch::pauses(&open.store, kind, &names).await?;
                    print!(
                        "{}",
                        output::render_list_with_pauses(&docs, g.output, &pauses)
                    );
                }
            }
            Ok(())
        }
        Command::Describe(n) => {
            let kind = parse_kind(&n.kind)?;
            let open = store_open::open(&cli.store).await?;
            let doc = open
                .store
                .get(kind, &n.name)
                .await?
                .ok_or_else(|| not_found(kind, &n.name))?;
            let marker = crate::pause::get(open.store.coord(), kind, &n.name).await?;
            print!("{}", output::describe_with_pause(&doc, marker.as_ref()));
            Ok(())
        }
        Command::Delete(n) => {
            let kind = parse_kind(&n.kind)?;
            let open = store_open::open(&cli.store).await?;
            // A transplant in flight is only driven while its document exists.
            crate::gitops::running::guard_delete(&open.store, kind, &n.name)
                .await
                .map_err(|g| match g {
                    crate::gitops::running::Guard::Refused(m) => Failure::invalid(m),
                    crate::gitops::running::Guard::Error(m) => Failure::error(m),
                })?;
            if open.store.delete(kind, &n.name).await? {
                println!("{}/{} deleted", kind.short(), n.name);
                Ok(())
            } else {
                Err(not_found(kind, &n.name))
            }
        }
        Command::Controller(args) => super::serve::controller(args, &cli.store).await,
        Command::Sim(cmd) => super::serve::sim(cmd, &cli.store).await,
        Command::Demo { timeout } => {
            let mut print = |line: String| println!("{line}");
            let r = crate::demo::run(&mut print, timeout)
                .await
                .map_err(Failure::error)?;
            println!();
            println!(
                "summary: lab shard `sdc` upgraded in {:.1}s through {} steps",
                r.elapsed.as_secs_f64(),
                r.steps
            );
            println!("  writes acknowledged: {}", r.acked);
            println!("  writes lost:         {}", r.lost);
            println!(
                "  write outage:        {:.0} ms longest, {:.0} ms in all ({} writes refused while the primary was away)",
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
        Command::Approve { object, option } => {
            let (kind, name) = parse_object(&object)?;
            let open = store_open::open(&cli.store).await?;
            let done = match &option {
                Some(o) if kind == crds::Kind::ManateeVersion => {
                    crate::transplant::decide(open.store.coord(), &name, o)
                        .await
                        .map_err(Failure::invalid)?
                }
                Some(_) => {
                    return Err(Failure::invalid(format!(
                        "{object}: --option answers a ManateeVersion transplant stopped past its point of no return"
                    )));
                }
                None => crate::reconcile::approve(open.store.coord(), kind, &name)
                    .await
                    .map_err(Failure::error)?,
            };
            if done.is_empty() {
                let mut msg = format!("{object}: no operation step is waiting for approval");
                if kind == crds::Kind::ManateeVersion {
                    for s in crate::transplant::stopped(open.store.coord(), &name)
                        .await
                        .map_err(Failure::error)?
                    {
                        msg.push_str(&format!("\n{s}"));
                    }
                }
                return Err(Failure::invalid(msg));
            }
            for d in done {
                println!("approved {d}");
            }
            Ok(())
        }
        Command::Cancel { object } => {
            let (kind, name) = parse_object(&object)?;
            if kind != crds::Kind::ManateeVersion {
                return Err(Failure::invalid(format!(
                    "{object}: only a ManateeVersion transplant can be cancelled"
                )));
            }
            let open = store_open::open(&cli.store).await?;
            let done = crate::transplant::cancel(open.store.coord(), &name)
                .await
                .map_err(Failure::error)?;
            if done.is_empty() {
                return Err(Failure::invalid(format!(
                    "{object}: no transplant is in flight"
                )));
            }
            for d in done {
                println!("{d}");
            }
            Ok(())
        }
        Command::Events { object, watch } => {
            let filter = match &object {
                Some(o) => {
                    let (kind, name) = parse_object(o)?;
                    Some(format!("{kind}/{name}"))
                }
                None => None,
            };
            let open = store_open::open(&cli.store).await?;
            if watch {
                return super::watch::events_watch(&open.store, filter).await;
            }
            let events = crate::runtime::events::Events::new(open.store.coord().clone());
            for r in events.list(filter.as_deref()).await? {
                println!("{}", super::watch::event_line(&r));
            }
            Ok(())
        }
        Command::Wait {
            for_,
            object,
            timeout,
        } => {
            let what = super::watch::WaitFor::parse(&for_)?;
            let (kind, name) = parse_object(&object).map_err(|f| Failure::error(f.message))?;
            let open = store_open::open(&cli.store).await?;
            let state = super::watch::wait(&open.store, kind, &name, &what, timeout).await?;
            println!("{}/{name}: {state}", kind.short());
            Ok(())
        }
        Command::Pause { object, reason, by } => {
            let (kind, name) = parse_object(&object)?;
            let open = store_open::open(&cli.store).await?;
            super::pause_cmd::pause(&open.store, kind, &name, by, reason).await
        }
        Command::Resume { object } => {
            let (kind, name) = parse_object(&object)?;
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

pub fn parse_kind(s: &str) -> Result<Kind, Failure> {
    Kind::parse(s).ok_or_else(|| {
        Failure::invalid(format!(
            "unknown kind `{s}`; use HeadnodeSet (hs), ManateeVersion (mv) or ShardTopology (st)"
        ))
    })
}

/// `KIND/NAME` or `KIND NAME`-style object references.
fn parse_object(s: &str) -> Result<(Kind, String), Failure> {
    let (k, n) = s.split_once('/').ok_or_else(|| {
        Failure::invalid(format!(
            "`{s}`: expected KIND/NAME, e.g. manateeversion/sdc"
        ))
    })?;
    Ok((parse_kind(k)?, n.to_string()))
}

fn not_found(kind: Kind, name: &str) -> Failure {
    Failure::invalid(format!("{} `{name}` not found", kind))
}
