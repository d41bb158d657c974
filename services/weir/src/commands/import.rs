//! `weir import`: a VictoriaMetrics or Prometheus export (JSON lines of `/api/v1/export`)
//! or OpenMetrics / Prometheus text with timestamps, into a topic, ready to replay.
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use weir_runtime::import::Format;
use weir_runtime::replay::{Counters, Reporter};

use crate::TopologyArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// From the first line: JSON lines, or text with timestamps in seconds (OpenMetrics)
    /// or milliseconds (Prometheus).
    Auto,
    /// JSON lines as VictoriaMetrics' /api/v1/export writes them.
    VmJson,
    /// OpenMetrics text; timestamps in seconds.
    Openmetrics,
    /// Prometheus text format 0.0.4; timestamps in milliseconds.
    Prometheus,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Files to import (`.gz` is decompressed; `-` reads stdin).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The topic to write (an empty one keeps the import apart from live data).
    #[arg(long, default_value = "metrics.raw")]
    topic: String,
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatArg,
}

pub async fn run(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let topology = a.topology.load()?;
    let format = match a.format {
        FormatArg::Auto => None,
        FormatArg::VmJson => Some(Format::VmJson),
        FormatArg::Openmetrics => Some(Format::OpenMetrics),
        FormatArg::Prometheus => Some(Format::PrometheusText),
    };
    let counters = Arc::new(Counters::default());
    let reporter = Reporter::counting(counters.clone(), "records_written", "bytes");
    let interrupt = weir_runtime::shutdown::on_signals();
    let r =
        weir_runtime::import::run(&topology, &a.files, &a.topic, format, counters, interrupt).await;
    reporter.finish().await;
    let summary = r?;
    for e in &summary.rejections {
        eprintln!("rejected {e}");
    }
    println!("{}", serde_json::to_string(&summary)?);
    // Some lines refused: the rest is imported, and the exit status says it was not all.
    Ok(if summary.rejected_lines > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
