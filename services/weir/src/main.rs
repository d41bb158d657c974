//! `weir`: a Kafka-native metrics pipeline. One binary, one subcommand per role.
mod commands;

// The ingest path allocates many small strings per sample (protobuf decoding); glibc's
// allocator spent ~45% of the gateway's CPU in malloc/free under load, mimalloc far less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use weir_runtime::telemetry::{init_logging, LogFormat};
use weir_runtime::Topology;

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "Kafka-native metrics pipeline",
    propagate_version = true
)]
struct Cli {
    /// Log format: text or json (one JSON object per line). Level from RUST_LOG.
    #[arg(long, global = true, default_value = "text", env = "WEIR_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Where the deployment is described.
#[derive(Debug, Clone, Args)]
pub struct TopologyArgs {
    /// Topology file; the embedded topologies/local.yaml when absent.
    #[arg(short = 'f', long = "topology", env = "WEIR_TOPOLOGY")]
    pub file: Option<PathBuf>,
    /// Overrides kafka.bootstrap_servers of the topology.
    #[arg(long, env = "WEIR_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
}

impl TopologyArgs {
    pub fn load(&self) -> anyhow::Result<Topology> {
        let mut t = Topology::load(self.file.as_deref())?;
        if let Some(b) = &self.bootstrap_servers {
            t.kafka.bootstrap_servers = b.clone();
        }
        Ok(t)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest gateway: Prometheus remote write, Influx line protocol and JSON push into metrics.raw
    Gateway(commands::gateway::GatewayArgs),
    /// Scrape: Prometheus-compatible pull collection (scrape_configs) into metrics.raw, sharded across replicas
    Scrape(commands::scrape::ScrapeArgs),
    /// TSDB writer: metrics.raw to a Prometheus remote-write receiver (VictoriaMetrics, Mimir, ...)
    TsdbWriter(commands::tsdb_writer::TsdbWriterArgs),
    /// Rollup: metrics.raw to 1m/5m/1h aggregates in ClickHouse and metrics.rollup.<tier>
    Rollup(commands::rollup::RollupArgs),
    /// Alerter: Prometheus alerting rules on event time over metrics.raw, to alerts.triggered and Alertmanager
    Alerter(commands::alerter::AlerterArgs),
    /// Alert rule files: `check` validates them, `test` runs promtool-format unit tests
    #[command(subcommand)]
    Rules(commands::rules::RulesCommand),
    /// Kafka topics of a topology: create what is missing, report drift
    #[command(subcommand)]
    Topics(commands::topics::TopicsCommand),
    /// Validate a topology file; names the bad field when it fails
    Check(commands::check::CheckArgs),
    /// Import a VictoriaMetrics/Prometheus export or OpenMetrics text with timestamps into a topic
    Import(commands::import::ImportArgs),
    /// Summarise a dead-letter topic: counts by error kind, consumer group, source topic and hour
    Dlq(commands::dlq::DlqArgs),
    /// Replay a range of event time from a topic into the rollup, a TSDB, a rule backtest or another topic, beside the live pipeline
    Replay(Box<commands::replay::ReplayArgs>),
    /// Print records of a metrics topic, decoded, as JSON lines
    Tail(commands::tail::TailArgs),
    /// Print the Avro schema weir writes to metrics.raw, with its fingerprint
    Schema(commands::schema::SchemaArgs),
    /// Exit 0 when a service's /readyz answers 2xx (the image's HEALTHCHECK)
    Healthcheck(commands::healthcheck::HealthcheckArgs),
    /// Gateway API keys: `new` makes one, `hash` prints the hash the topology stores
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
}

fn main() -> ExitCode {
    weir_runtime::alloc::tune();
    weir_runtime::tls::install_default_provider();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Gateway(a) => commands::gateway::run(a).await,
            Command::Scrape(a) => commands::scrape::run(a).await,
            Command::TsdbWriter(a) => commands::tsdb_writer::run(a).await,
            Command::Rollup(a) => commands::rollup::run(a).await,
            Command::Alerter(a) => commands::alerter::run(a).await,
            Command::Rules(c) => commands::rules::run(c),
            Command::Topics(c) => commands::topics::run(c).await,
            Command::Check(a) => commands::check::run(a),
            Command::Replay(a) => commands::replay::run(*a).await,
            Command::Dlq(a) => commands::dlq::run(a).await,
            Command::Import(a) => commands::import::run(a).await,
            Command::Tail(a) => commands::tail::run(a).await,
            Command::Schema(a) => commands::schema::run(a),
            Command::Healthcheck(a) => commands::healthcheck::run(a).await,
            Command::Keys(c) => commands::keys::run(c),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
