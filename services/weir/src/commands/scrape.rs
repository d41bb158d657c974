use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use crate::TopologyArgs;

#[derive(Debug, Args)]
pub struct ScrapeArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Overrides scrape.listen (ops and /api/v1/targets).
    #[arg(long, env = "WEIR_SCRAPE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Overrides scrape.config_file: a Prometheus configuration with scrape_configs.
    #[arg(long = "config.file", env = "WEIR_SCRAPE_CONFIG")]
    config_file: Option<std::path::PathBuf>,
    /// Static sharding, as vmagent's -promscrape.cluster.membersCount: replicas in all.
    #[arg(long, env = "WEIR_SCRAPE_MEMBERS_COUNT")]
    members_count: Option<u32>,
    /// This replica's number, from 0 (-promscrape.cluster.memberNum).
    #[arg(long, env = "WEIR_SCRAPE_MEMBER_NUM")]
    member_num: Option<u32>,
    /// Replicas that scrape each target (-promscrape.cluster.replicationFactor).
    #[arg(long, env = "WEIR_SCRAPE_REPLICATION_FACTOR")]
    replication_factor: Option<u32>,
}

pub async fn run(a: ScrapeArgs) -> anyhow::Result<ExitCode> {
    let mut topology = a.topology.load()?;
    if let Some(l) = a.listen {
        topology.scrape.listen = l;
    }
    if let Some(f) = a.config_file {
        topology.scrape.config_file = Some(f);
        topology.scrape.prometheus = None;
    }
    let shutdown = weir_runtime::shutdown::on_signals();
    let options = weir_scrape::Options {
        members_count: a.members_count,
        member_num: a.member_num,
        replication_factor: a.replication_factor,
    };
    weir_scrape::run(topology, options, shutdown, None).await?;
    Ok(ExitCode::SUCCESS)
}
