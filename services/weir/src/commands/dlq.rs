//! `weir dlq`: what a dead-letter topic holds — counts by error kind, consumer group,
//! source topic and hour, with an example error per kind — so an operator knows what to
//! fix and what to redrive (`weir replay --into topic --kind ...`).
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use weir_runtime::kafka::{partition_count, reader_config};
use weir_runtime::replay::range::{now_ms, show};
use weir_runtime::replay::reader::Polled;
use weir_runtime::replay::{parse_time, BoundedReader};

use crate::TopologyArgs;

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// The dead-letter topic.
    #[arg(long, default_value = "metrics.dlq")]
    topic: String,
    /// Only dead letters written at or after this time (RFC 3339 or relative like -6h).
    #[arg(long, allow_hyphen_values = true)]
    since: Option<String>,
}

fn header<'m, M: Message>(m: &'m M, key: &str) -> Option<&'m [u8]> {
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
}

pub async fn run(a: DlqArgs) -> anyhow::Result<ExitCode> {
    let topology = a.topology.load()?;
    let since = a
        .since
        .as_deref()
        .map(|s| parse_time(s, now_ms()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--since {e}"))?;
    let summary = tokio::task::spawn_blocking(move || -> anyhow::Result<serde_json::Value> {
        let config = reader_config(&topology.kafka, "weir-dlq");
        let probe: BaseConsumer = config.create().context("creating the Kafka consumer")?;
        let partitions = partition_count(probe.client(), &a.topic, Duration::from_secs(10))?;
        // Everything the topic holds now: from each partition's low to its high watermark.
        let mut parts = Vec::new();
        for p in 0..partitions {
            let (low, high) =
                probe.fetch_watermarks(&a.topic, p as i32, Duration::from_secs(10))?;
            parts.push((p, low, high));
        }
        let mut reader = BoundedReader::new(&config, &a.topic, &parts)?;
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_group: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_source: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_hour: BTreeMap<String, u64> = BTreeMap::new();
        let mut examples: BTreeMap<String, String> = BTreeMap::new();
        let (mut total, mut omitted) = (0u64, 0u64);
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        loop {
            let m = match reader.poll(Duration::from_millis(200)) {
                Polled::Done => break,
                Polled::Nothing => continue,
                Polled::Record(m) => m,
            };
            let ts = m.timestamp().to_millis().unwrap_or(0);
            if since.is_some_and(|s| ts < s) {
                continue;
            }
            let text = |k: &str| {
                header(&m, k)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_else(|| "(none)".into())
            };
            let kind = text("weir.error.kind");
            *by_kind.entry(kind.clone()).or_default() += 1;
            *by_group.entry(text("weir.consumer.group")).or_default() += 1;
            *by_source.entry(text("weir.source.topic")).or_default() += 1;
            *by_hour.entry(show(ts / 3_600_000 * 3_600_000)).or_default() += 1;
            examples.entry(kind).or_insert_with(|| text("weir.error"));
            if header(&m, "weir.payload.omitted").is_some() {
                omitted += 1;
            }
            total += 1;
            first = first.min(ts);
            last = last.max(ts);
        }
        Ok(serde_json::json!({
            "topic": a.topic,
            "dead_letters": total,
            "first": (total > 0).then(|| show(first)),
            "last": (total > 0).then(|| show(last)),
            "by_kind": by_kind,
            "by_consumer_group": by_group,
            "by_source_topic": by_source,
            "by_hour": by_hour,
            "example_error_by_kind": examples,
            "payload_omitted": omitted,
        }))
    })
    .await??;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(ExitCode::SUCCESS)
}
