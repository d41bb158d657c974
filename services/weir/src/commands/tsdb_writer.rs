use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use crate::TopologyArgs;

#[derive(Debug, Args)]
pub struct TsdbWriterArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Overrides tsdb_writer.listen (the /metrics, /healthz, /readyz address).
    #[arg(long, env = "WEIR_TSDB_WRITER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Overrides tsdb_writer.group.
    #[arg(long)]
    group: Option<String>,
}

pub async fn run(a: TsdbWriterArgs) -> anyhow::Result<ExitCode> {
    let mut topology = a.topology.load()?;
    if let Some(l) = a.listen {
        topology.tsdb_writer.listen = l;
    }
    if let Some(g) = a.group {
        topology.tsdb_writer.group = g;
    }
    let shutdown = weir_runtime::shutdown::on_signals();
    weir_tsdb_writer::run(topology, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
