use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use crate::TopologyArgs;

#[derive(Debug, Args)]
pub struct RollupArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Overrides rollup.listen (the /metrics, /healthz, /readyz address).
    #[arg(long, env = "WEIR_ROLLUP_LISTEN")]
    listen: Option<SocketAddr>,
    /// Overrides rollup.group.
    #[arg(long)]
    group: Option<String>,
}

pub async fn run(a: RollupArgs) -> anyhow::Result<ExitCode> {
    let mut topology = a.topology.load()?;
    if let Some(l) = a.listen {
        topology.rollup.listen = l;
    }
    if let Some(g) = a.group {
        topology.rollup.group = g;
    }
    let shutdown = weir_runtime::shutdown::on_signals();
    weir_rollup::run(topology, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
