use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::TopologyArgs;

#[derive(Debug, Args)]
pub struct AlerterArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Overrides alerter.listen (the /metrics, /healthz, /readyz address).
    #[arg(long, env = "WEIR_ALERTER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Overrides alerter.rule_files (repeatable).
    #[arg(long = "rules", value_name = "FILE")]
    rule_files: Vec<PathBuf>,
}

pub async fn run(a: AlerterArgs) -> anyhow::Result<ExitCode> {
    let mut topology = a.topology.load()?;
    if let Some(l) = a.listen {
        topology.alerter.listen = l;
    }
    if !a.rule_files.is_empty() {
        topology.alerter.rule_files = a.rule_files;
    }
    let shutdown = weir_runtime::shutdown::on_signals();
    weir_alerter::service::run(topology, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
