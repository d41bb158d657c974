use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::TopologyArgs;

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the topology's missing topics; report drift; never delete or shrink
    Apply(ApplyArgs),
    /// Show each topic's partitions and how many records they hold
    Describe(DescribeArgs),
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    topology: TopologyArgs,
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
    match c {
        TopicsCommand::Apply(a) => apply(a).await,
        TopicsCommand::Describe(d) => describe(d).await,
    }
}

async fn describe(d: DescribeArgs) -> anyhow::Result<ExitCode> {
    let topology = d.topology.load()?;
    let stats =
        tokio::task::spawn_blocking(move || weir_runtime::topics::describe(&topology)).await??;
    for t in stats {
        let per: Vec<String> = t
            .partitions
            .iter()
            .map(|(p, lo, hi)| format!("{p}:{}", hi - lo))
            .collect();
        println!(
            "{:<22} {:>9} records  [partition:records {}]",
            t.topic,
            t.records(),
            per.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn apply(a: ApplyArgs) -> anyhow::Result<ExitCode> {
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
