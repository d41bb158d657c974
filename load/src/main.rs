//! `weir-load`: the demo fleet and the benchmarks.
//!
//! - `fleet`: simulated edge devices pushing to a gateway over JSON, Influx line protocol
//!   and remote write, for the quick start.
//! - `bench-gateway`: the gateway's CPU cost per sample for remote write into Kafka, with
//!   the broker isolated (librdkafka's mock cluster, in this process) and end to end on
//!   tansu; plus bytes per sample on the topic against snappy remote write.
//! - `bench-writer`: the tsdb-writer from Kafka to VictoriaMetrics, and lag after an outage.
//! - `bench-window`: the window engine (rollup dataflow) in process.
//! - `bench-rollup`: the rollup end to end through tansu into ClickHouse.
//! - `bench-alerter`: alert latency of the alerter against Prometheus, same samples.
//! - `bench-scrape`: `weir scrape` against vmagent scraping the same targets.
mod bench_alerter;
mod bench_gateway;
mod bench_rollup;
mod bench_scrape;
mod bench_tenants;
mod bench_window;
mod bench_writer;
mod certs;
mod fleet;
mod proc_stat;
mod process;
mod workload;

use clap::{Parser, Subcommand};

// As in the weir binary: the engine's cost with the allocator it runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "weir-load", about = "Load generator and benchmarks for weir")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Push a simulated fleet of devices to a gateway and report what flowed
    Fleet(fleet::FleetArgs),
    /// Measure gateway samples per CPU-second for remote write into Kafka
    BenchGateway(bench_gateway::BenchArgs),
    /// Measure whether a tenant at 10x its limit changes another tenant's latency
    BenchTenants(bench_tenants::TenantsBenchArgs),
    /// Measure tsdb-writer samples per CPU-second and lag recovery after a sink outage
    BenchWriter(bench_writer::WriterBenchArgs),
    /// Measure window-engine (rollup dataflow) samples per CPU-second in process
    BenchWindow(bench_window::WindowBenchArgs),
    /// Measure the rollup end to end: tansu -> weir rollup -> ClickHouse and rollup topics
    BenchRollup(bench_rollup::RollupBenchArgs),
    /// Measure alert latency: weir's alerter against Prometheus on the same samples
    BenchAlerter(bench_alerter::AlerterBenchArgs),
    /// Measure samples scraped per CPU-second: weir scrape against vmagent, same targets
    BenchScrape(bench_scrape::ScrapeBenchArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    weir_runtime::alloc::tune();
    weir_runtime::tls::install_default_provider();
    match Cli::parse().command {
        Command::Fleet(a) => fleet::run(a).await,
        Command::BenchGateway(a) => bench_gateway::run(a).await,
        Command::BenchTenants(a) => bench_tenants::run(a).await,
        // Blocking HTTP and its own runtime: run it off the async one.
        Command::BenchWriter(a) => {
            tokio::task::spawn_blocking(move || bench_writer::run(a)).await?
        }
        Command::BenchRollup(a) => {
            tokio::task::spawn_blocking(move || bench_rollup::run(a)).await?
        }
        Command::BenchAlerter(a) => {
            tokio::task::spawn_blocking(move || bench_alerter::run(a)).await?
        }
        Command::BenchScrape(a) => bench_scrape::run(a).await,
        Command::BenchWindow(a) => {
            tokio::task::spawn_blocking(move || bench_window::run(a)).await?
        }
    }
}
