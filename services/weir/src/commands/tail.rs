use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use weir_runtime::kafka::{client_config, partition_count};

use crate::TopologyArgs;

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Topic to read.
    #[arg(long, default_value = "metrics.raw")]
    topic: String,
    /// Start at the beginning of each partition instead of its end.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// Stop after this long without a new record.
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
}

/// Reads without a consumer group (nothing is committed), decodes each record and prints
/// `{"partition":..,"offset":..,"key":..,"batch":{...}}` (`"alert"` for alert events) or
/// the decode error.
pub async fn run(a: TailArgs) -> anyhow::Result<ExitCode> {
    let topology = a.topology.load()?;
    let decoder = topology.decoder();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&topology.kafka)
            .set("group.id", "weir-tail")
            .set("enable.auto.commit", "false")
            .create()
            .context("creating the Kafka consumer")?;
        let n = partition_count(consumer.client(), &a.topic, Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n as i32 {
            let start = if a.from_beginning { Offset::Beginning } else { Offset::End };
            tpl.add_partition_offset(&a.topic, p, start)?;
        }
        consumer.assign(&tpl)?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let mut seen = 0u64;
        let mut last = Instant::now();
        loop {
            if a.max_records.is_some_and(|m| seen >= m) {
                break;
            }
            if a.idle_timeout.is_some_and(|t| last.elapsed() > t) {
                break;
            }
            let Some(msg) = consumer.poll(Duration::from_millis(200)) else { continue };
            let msg = msg.context("reading from Kafka")?;
            last = Instant::now();
            seen += 1;
            let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
            let payload = msg.payload().unwrap_or_default();
            // Alert events (alerts.triggered) have a schema of their own.
            let line = match weir_contract::avro::decode_alert_event(payload) {
                Ok(alert) => serde_json::json!({
                    "partition": msg.partition(), "offset": msg.offset(), "key": key, "alert": alert,
                }),
                Err(weir_contract::avro::AlertDecodeError::Header) => match decoder.decode(payload) {
                Ok(batch) => serde_json::json!({
                    "partition": msg.partition(), "offset": msg.offset(), "key": key, "batch": batch,
                }),
                Err(e) => serde_json::json!({
                    "partition": msg.partition(), "offset": msg.offset(), "key": key,
                    "error": e.to_string(), "error_kind": e.kind(),
                }),
                },
                Err(e) => serde_json::json!({
                    "partition": msg.partition(), "offset": msg.offset(), "key": key,
                    "error": e.to_string(), "error_kind": "alert_event",
                }),
            };
            // A closed pipe (`| head`) ends the tail quietly.
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                break;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
    .await?
}
