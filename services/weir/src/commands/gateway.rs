use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use crate::TopologyArgs;

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Overrides gateway.listen of the topology.
    #[arg(long, env = "WEIR_GATEWAY_LISTEN")]
    listen: Option<SocketAddr>,
}

pub async fn run(a: GatewayArgs) -> anyhow::Result<ExitCode> {
    let mut topology = a.topology.load()?;
    if let Some(l) = a.listen {
        topology.gateway.listen = l;
    }
    let shutdown = weir_runtime::shutdown::on_signals();
    weir_gateway::run(topology, shutdown, None).await?;
    Ok(ExitCode::SUCCESS)
}
