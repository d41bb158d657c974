//! `weir replay`: a range of event time, read again from a topic into one target, beside
//! the live pipeline and without touching its consumer groups.
//!
//! What is common to every target happens here: the range, where it lies in each
//! partition, the refusal of a range retention already removed, the dry run, the state
//! that makes a rerun resume, the progress and the summary. The targets live with their
//! roles (`weir_rollup::replay`, `weir_tsdb_writer::replay`, ...).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use weir_runtime::config::SinkSpec;
use weir_runtime::kafka::reader_config;
use weir_runtime::replay::locate::outside_retention;
use weir_runtime::replay::range::{now_ms, show};
use weir_runtime::replay::state::{default_dir, replay_id};
use weir_runtime::replay::{
    locate, parse_time, Counters, EventRange, PartState, ReplayState, Reporter, Span, StateFile,
};
use weir_runtime::role::RoleOps;
use weir_runtime::selector::Selector;
use weir_runtime::Topology;

use crate::TopologyArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Recompute the rollup rows of every window wholly inside the range.
    Rollup,
    /// Write the range's raw samples to the TSDB writer's sink, or to --sink.
    TsdbWriter,
    /// Backtest: the alerts a rule file would have fired over the range, as JSON lines.
    Alerter,
    /// Copy the range's samples into --to-topic, partitioned by series (redrive).
    Topic,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Rollup => "rollup",
            Target::TsdbWriter => "tsdb-writer",
            Target::Alerter => "alerter",
            Target::Topic => "topic",
        }
    }

    /// What the summary counts as written.
    fn written(self) -> &'static str {
        match self {
            Target::Rollup => "rows_written",
            Target::TsdbWriter => "samples_written",
            Target::Alerter => "alerts",
            Target::Topic => "samples_written",
        }
    }
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Start of the range (event time, inclusive): RFC 3339, or relative like -6h.
    #[arg(long, allow_hyphen_values = true)]
    from: String,
    /// End of the range (event time, exclusive): RFC 3339, relative like -1h, or now.
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    to: String,
    /// What to replay into.
    #[arg(long)]
    into: Target,
    /// The topic to read.
    #[arg(long, default_value = "metrics.raw")]
    topic: String,
    /// Only series matching this selector (tsdb-writer, topic), e.g. 'node_load1{job="node"}'
    #[arg(long = "match")]
    selector: Option<String>,
    /// Topic: where the samples go (e.g. metrics.raw, to redrive metrics.late).
    /// Alerter: also write the backtest's alerts to this topic as Avro alert events.
    #[arg(long)]
    to_topic: Option<String>,
    /// Topic: only dead letters of these error kinds (the weir.error.kind header), e.g.
    /// wrong_partition; see `weir dlq` for the kinds a topic holds.
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// A remote-write URL to write to instead of the TSDB writer group's sink.
    #[arg(long)]
    sink: Option<String>,
    /// Alerter: the rule files to backtest (alerter.rule_files when absent).
    #[arg(long, num_args = 1..)]
    rules: Vec<PathBuf>,
    /// Alerter: write the alerts to this file instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Alerter: evaluate from this long before the range, so alerts pending or firing
    /// when it begins are known (default: the rules' longest for + keep_firing_for +
    /// lookback).
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// At most this many samples read per second, so the live groups are not starved.
    #[arg(long)]
    max_rate: Option<u64>,
    /// How much earlier and later than the range records are read: samples are produced
    /// after their event time, and a little out of order.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    margin: Duration,
    /// Print, per partition, what would be read, and the time range the topic holds.
    #[arg(long)]
    dry_run: bool,
    /// Start over even if an earlier run of the same replay left progress.
    #[arg(long)]
    restart: bool,
    /// Rollup: also write the recomputed rows to the rollup topics.
    #[arg(long)]
    with_topics: bool,
    /// Where progress is kept for resuming.
    #[arg(long, env = "WEIR_REPLAY_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// /metrics, /healthz and /readyz of the replay (an ephemeral port by default).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

impl ReplayArgs {
    /// The arguments that make a replay the same replay (relative times as written).
    fn identity(&self, topology: &Topology) -> Vec<String> {
        vec![
            format!("into={}", self.into.name()),
            format!("topic={}", self.topic),
            format!("from={}", self.from),
            format!("to={}", self.to),
            format!("match={}", self.selector.as_deref().unwrap_or("")),
            format!("sink={}", self.sink.as_deref().unwrap_or("")),
            format!("with_topics={}", self.with_topics),
            format!("rules={:?}", self.rules),
            format!("to_topic={}", self.to_topic.as_deref().unwrap_or("")),
            format!("kinds={:?}", self.kinds),
            format!("warmup={:?}", self.warmup),
            format!("bootstrap={}", topology.kafka.bootstrap_servers),
            format!("rollup_group={}", topology.rollup.group),
            format!("tsdb_group={}", topology.tsdb_writer.group),
        ]
    }
}

pub async fn run(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let topology = a.topology.load()?;
    if topology.topic(&a.topic).is_none() {
        anyhow::bail!("--topic {:?} is not declared under topics", a.topic);
    }
    let selector = a
        .selector
        .as_deref()
        .map(Selector::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if selector.is_some() && matches!(a.into, Target::Rollup | Target::Alerter) {
        anyhow::bail!("--match applies to --into tsdb-writer and topic; a rollup replay recomputes every series of its windows, a backtest reads what its rules select");
    }
    if a.into == Target::Topic && a.to_topic.is_none() {
        anyhow::bail!("--into topic needs --to-topic");
    }
    if a.to_topic.is_some() && !matches!(a.into, Target::Topic | Target::Alerter) {
        anyhow::bail!("--to-topic goes with --into topic or alerter");
    }
    if !a.kinds.is_empty() && a.into != Target::Topic {
        anyhow::bail!("--kind applies to --into topic (redriving dead letters)");
    }
    let now = now_ms();
    let range = EventRange::new(
        parse_time(&a.from, now).map_err(|e| anyhow::anyhow!("--from {e}"))?,
        parse_time(&a.to, now).map_err(|e| anyhow::anyhow!("--to {e}"))?,
    )
    .map_err(anyhow::Error::msg)?;
    let dir = a.state_dir.clone().unwrap_or_else(default_dir);
    let identity = a.identity(&topology);
    let id = replay_id(&identity);

    // A backtest prints its alerts: it runs whole every time rather than resume.
    let fresh = a.restart || a.dry_run || a.into == Target::Alerter;
    let earlier = if fresh {
        None
    } else {
        StateFile::open(&dir, &id)?
    };
    let (warmup, lead) = if a.into == Target::Alerter {
        let rules = weir_alerter::backtest::load_rules(&topology, &a.rules)?;
        let warmup = a
            .warmup
            .unwrap_or_else(|| weir_alerter::backtest::default_warmup(&rules));
        (warmup, weir_alerter::backtest::read_lead(&rules, warmup))
    } else {
        (Duration::ZERO, Duration::ZERO)
    };
    let state = match earlier {
        Some(f) => {
            let s = f.snapshot().context("replay state lock poisoned")?;
            if s.done {
                println!(
                    "{}",
                    summary_json(
                        &s,
                        "complete (an earlier run finished it; --restart to run it again)"
                    )
                );
                return Ok(ExitCode::SUCCESS);
            }
            tracing::info!(state = %f.path().display(), from = %show(s.range.from_ms), to = %show(s.range.to_ms), remaining = s.remaining(), "resuming an interrupted replay");
            f
        }
        None => {
            if a.into == Target::Rollup {
                check_rollup_range(&topology, range)?;
            }
            let reader = reader_config(&topology.kafka, "weir-replay-locate");
            let (topic, margin) = (a.topic.clone(), a.margin);
            let read_from = range.from_ms - lead.as_millis() as i64;
            let spans = tokio::task::spawn_blocking(move || {
                locate(&reader, &topic, read_from, range.to_ms, margin)
            })
            .await?
            .with_context(|| format!("locating the range in {}", a.topic))?;
            if let Some(earliest) = outside_retention(&spans, read_from) {
                anyhow::bail!(
                    "the range (with what it reads before it) starts at {} but {} holds records only from {} on (retention removed the rest): replay from {} or later",
                    show(read_from),
                    a.topic,
                    show(earliest),
                    show(earliest)
                );
            }
            if a.dry_run {
                print_plan(&a.topic, range, a.margin, &spans);
                return Ok(ExitCode::SUCCESS);
            }
            StateFile::create(
                &dir,
                ReplayState {
                    id: id.clone(),
                    args: identity,
                    topic: a.topic.clone(),
                    range,
                    generation: (now / 1000).clamp(1, u32::MAX as i64) as u32,
                    partitions: spans
                        .iter()
                        .map(|s| {
                            (
                                s.partition,
                                PartState {
                                    start: s.start,
                                    end: s.end,
                                    next: s.start,
                                    checkpoint: String::new(),
                                },
                            )
                        })
                        .collect(),
                    done: false,
                    totals: Default::default(),
                },
            )?
        }
    };
    let snapshot = state.snapshot().context("replay state lock poisoned")?;
    let (range, partitions) = (snapshot.range, snapshot.partitions.len() as u32);

    let ops = RoleOps::serve(a.listen, "starting the replay").await?;
    tracing::info!(addr = %ops.addr, into = a.into.name(), topic = %a.topic, from = %show(range.from_ms), to = %show(range.to_ms), records = snapshot.remaining(), state = %state.path().display(), "replaying");
    let counters = Arc::new(Counters::default());
    counters.total_records.store(
        snapshot.remaining().max(0) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let reporter = Reporter::start(counters.clone(), a.into.written());
    let interrupt = weir_runtime::shutdown::on_signals();
    let started = std::time::Instant::now();
    let complete = match a.into {
        Target::Rollup => {
            weir_rollup::replay::run(
                topology,
                weir_rollup::replay::RollupReplay {
                    range,
                    state: state.clone(),
                    partitions,
                    counters: counters.clone(),
                    max_rate: a.max_rate,
                    to_topics: a.with_topics,
                },
                &ops,
                interrupt,
            )
            .await
        }
        Target::TsdbWriter => {
            let sink = a.sink.as_ref().map(|url| SinkSpec::PrometheusRemoteWrite {
                url: url.clone(),
                headers: Default::default(),
                basic_auth: None,
                bearer_token: None,
                tls: Default::default(),
            });
            weir_tsdb_writer::replay::run(
                topology,
                weir_tsdb_writer::replay::TsdbReplay {
                    range,
                    state: state.clone(),
                    partitions,
                    counters: counters.clone(),
                    max_rate: a.max_rate,
                    selector,
                    sink,
                },
                &ops,
                interrupt,
            )
            .await
        }
        Target::Topic => {
            weir_runtime::replay::redrive::run(
                &topology,
                weir_runtime::replay::redrive::Redrive {
                    range,
                    state: state.clone(),
                    to_topic: a.to_topic.clone().unwrap_or_default(),
                    selector,
                    kinds: a.kinds.clone(),
                    counters: counters.clone(),
                    max_rate: a.max_rate,
                },
                interrupt,
            )
            .await
        }
        Target::Alerter => {
            let topology = topology.clone();
            let b = weir_alerter::backtest::Backtest {
                range,
                rule_files: a.rules.clone(),
                state: state.clone(),
                partitions,
                counters: counters.clone(),
                max_rate: a.max_rate,
                warmup,
                to_topic: a.to_topic.clone(),
            };
            let output = a.output.clone();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop2 = stop.clone();
            let watcher = {
                let interrupt = interrupt.clone();
                tokio::spawn(async move {
                    interrupt.cancelled().await;
                    stop2.store(true, std::sync::atomic::Ordering::Relaxed);
                })
            };
            let r = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
                let mut out: Box<dyn std::io::Write> = match &output {
                    Some(p) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(p)
                            .with_context(|| format!("creating {}", p.display()))?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout())),
                };
                weir_alerter::backtest::run(&topology, b, &mut out, &stop)
            })
            .await
            .map_err(|_| anyhow::anyhow!("the backtest panicked"));
            watcher.abort();
            r.and_then(|r| r)
        }
    };
    reporter.finish().await;
    ops.close().await;
    let complete = complete?;
    let elapsed = started.elapsed().as_secs_f64();
    state.update(|s| {
        for (k, c) in [
            ("records", &counters.records),
            ("samples_read", &counters.samples_read),
            ("samples_in_range", &counters.samples_kept),
            (a.into.written(), &counters.written),
            ("undecodable_records", &counters.undecodable),
            ("refused_series", &counters.refused),
        ] {
            *s.totals.entry(k.to_string()).or_default() += Counters::get(c);
        }
        if complete {
            s.done = true;
            for p in s.partitions.values_mut() {
                p.next = p.end;
            }
        }
    })?;
    let s = state.snapshot().context("replay state lock poisoned")?;
    let mut out = summary_json(&s, if complete { "complete" } else { "interrupted" });
    out["this_run"] = counters.json(a.into.written());
    out["this_run"]["seconds"] = serde_json::json!((elapsed * 1000.0).round() / 1000.0);
    if a.into == Target::Alerter && a.output.is_none() {
        // stdout carries the alerts.
        eprintln!("{out}");
    } else {
        println!("{out}");
    }
    if complete {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "interrupted: progress saved in {}; run the same command again to resume",
            state.path().display()
        );
        Ok(ExitCode::from(130))
    }
}

/// Windows that end after the live rollup's watermark may still be corrected, and the
/// log does not hold their late samples yet: a range ending there would write windows
/// the live rollup completes later.
fn check_rollup_range(topology: &Topology, range: EventRange) -> anyhow::Result<()> {
    let r = &topology.rollup;
    let settle = (r.out_of_orderness + r.allowed_lateness).as_millis() as i64;
    let latest = now_ms() - settle;
    if range.to_ms > latest {
        anyhow::bail!(
            "--to {} is too recent: windows ending after {} may still take late samples (rollup.out_of_orderness + allowed_lateness); end the range at or before that",
            show(range.to_ms),
            show(latest)
        );
    }
    Ok(())
}

fn summary_json(s: &ReplayState, status: &str) -> serde_json::Value {
    serde_json::json!({
        "replay": s.id,
        "status": status,
        "topic": s.topic,
        "from": show(s.range.from_ms),
        "to": show(s.range.to_ms),
        "generation": s.generation,
        "partitions": s.partitions.len(),
        "totals": s.totals,
    })
}

fn print_plan(topic: &str, range: EventRange, margin: Duration, spans: &[Span]) {
    let held_from = spans.iter().filter_map(|s| s.earliest_ms).min();
    let held_to = spans.iter().filter_map(|s| s.latest_ms).max();
    let plan = serde_json::json!({
        "dry_run": true,
        "topic": topic,
        "from": show(range.from_ms),
        "to": show(range.to_ms),
        "margin": humantime::format_duration(margin).to_string(),
        "topic_holds": {
            "from": held_from.map(show),
            "to": held_to.map(show),
        },
        "records": spans.iter().map(Span::records).sum::<i64>(),
        "partitions": spans.iter().map(|s| serde_json::json!({
            "partition": s.partition,
            "start_offset": s.start,
            "end_offset": s.end,
            "records": s.records(),
            "low_watermark": s.low,
            "high_watermark": s.high,
        })).collect::<Vec<_>>(),
    });
    println!("{plan}");
}
