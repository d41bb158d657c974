use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::TopologyArgs;

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the topology's missing topics; report drift; never delete or shrink
    Apply(ApplyArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Only report what would be created.
    #[arg(long)]
    dry_run: bool,
    /// Exit with status 3 when drift is found.
    #[arg(long)]
    fail_on_drift: bool,
}

pub async fn run(c: TopicsCommand) -> anyhow::Result<ExitCode> {
    let TopicsCommand::Apply(a) = c;
    let topology = a.topology.load()?;
    let report = weir_runtime::topics::apply(&topology, a.dry_run).await?;
    for t in &report.created {
        println!("created  {t}");
    }
    for t in &report.unchanged {
        println!("ok       {t}");
    }
    for d in &report.drift {
        println!("DRIFT    {d}");
    }
    for n in &report.notes {
        println!("note     {n}");
    }
    if !report.drift.is_empty() {
        println!(
            "{} drift(s) found; weir never changes existing topics: fix them by hand or update the topology",
            report.drift.len()
        );
        if a.fail_on_drift {
            return Ok(ExitCode::from(3));
        }
    }
    Ok(ExitCode::SUCCESS)
}
