//! `weir import`: backfill of data that never went through Kafka — a VictoriaMetrics or
//! Prometheus export, or an OpenMetrics / Prometheus text file with timestamps — into a
//! topic in the data contract's format, ready to replay (`weir replay`) into the rollup,
//! a TSDB or a backtest. The migration path from an existing TSDB.
//!
//! - [`vm_json`]: JSON lines as `/api/v1/export` writes them;
//! - [`text`]: sample lines of the text exposition formats, with their timestamps.
//!
//! Each record holds series of one partition (the one their key hashes to, as the
//! gateway writes them), stamped with its newest sample's time, so a replay finds it by
//! event time.
pub mod text;
pub mod vm_json;

/// A series parsed from an import file: labels sorted, without `__name__`.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
}

impl Parsed {
    /// From a label map holding `__name__`; empty values are dropped, as Prometheus
    /// treats a label with an empty value as absent.
    pub fn from_labels(
        mut pairs: Vec<(String, String)>,
        samples: Vec<(i64, f64)>,
    ) -> Result<Self, String> {
        let at = pairs
            .iter()
            .position(|(k, _)| k == "__name__")
            .ok_or("no __name__ label")?;
        let (_, name) = pairs.swap_remove(at);
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort();
        weir_contract::names::check_series(
            &name,
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|v| v.message)?;
        Ok(Self {
            name,
            labels: pairs,
            samples,
        })
    }
}

/// The formats `weir import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `/api/v1/export` JSON lines.
    VmJson,
    /// OpenMetrics text: timestamps in seconds.
    OpenMetrics,
    /// Prometheus text 0.0.4: timestamps in milliseconds.
    PrometheusText,
}

/// The format of a file that starts with `head`: JSON lines start with `{`; of the text
/// formats, OpenMetrics writes timestamps in seconds (with a fraction, or below 10^11 —
/// the year 5138) where Prometheus writes milliseconds (10^11 ms is 1973).
pub fn detect(head: &str) -> Format {
    let first = head.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(l) if l.starts_with('{') => Format::VmJson,
        _ => {
            for line in head.lines() {
                if let Ok(Some(s)) = text::parse_line(line, Format::PrometheusText) {
                    if let Some(raw) = s.raw_timestamp {
                        return if raw.contains('.')
                            || raw.parse::<f64>().is_ok_and(|t| t.abs() < 1e11)
                        {
                            Format::OpenMetrics
                        } else {
                            Format::PrometheusText
                        };
                    }
                }
                if line.trim() == "# EOF" {
                    return Format::OpenMetrics;
                }
            }
            Format::OpenMetrics
        }
    }
}

/// What an import did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub files: usize,
    pub lines: u64,
    pub series: u64,
    pub samples: u64,
    pub records: u64,
    pub rejected_lines: u64,
    /// The first rejections, `file:line: why`.
    pub rejections: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Records are cut below this, well under the broker's 1 MiB default.
const MAX_RECORD_BYTES: usize = 512 * 1024;
/// Samples of one series per push: a long series is split over records.
const MAX_SAMPLES_PER_PUSH: usize = 8_192;

/// Reads `files` (gzip when named `*.gz`; `-` is stdin) and produces their samples to
/// `topic`. A line that cannot be imported is counted and named (the first 20), the
/// rest goes on.
pub async fn run(
    topology: &crate::Topology,
    files: &[std::path::PathBuf],
    topic: &str,
    format: Option<Format>,
    counters: std::sync::Arc<crate::replay::Counters>,
    interrupt: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Summary> {
    use anyhow::Context;
    use std::io::BufRead;
    use weir_contract::avro::BatchEncoder;
    use weir_contract::model::Sample;
    use weir_contract::partitioner::partition_for_key;
    use weir_contract::series_key::write_key_parts;

    use crate::produce::OutRecord;
    use crate::replay::Counters;

    let spec = topology
        .topic(topic)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("--topic {topic:?} is not declared under topics"))?;
    let producer: rdkafka::producer::FutureProducer =
        crate::kafka::producer_config(&topology.kafka, &spec)
            .create()
            .context("creating the producer")?;
    let partitions = {
        let p = producer.clone();
        let t = topic.to_string();
        tokio::task::spawn_blocking(move || {
            crate::kafka::partition_count(
                rdkafka::producer::Producer::client(&p),
                &t,
                std::time::Duration::from_secs(10),
            )
        })
        .await??
    };
    let mut summary = Summary {
        files: files.len(),
        ..Default::default()
    };
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    Counters::add(&counters.total_records, total);
    let mut encoders: Vec<BatchEncoder> = (0..partitions).map(|_| BatchEncoder::new()).collect();
    let mut newest = vec![i64::MIN; partitions as usize];
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut pending: Vec<OutRecord> = Vec::new();
    let mut key = String::new();
    for file in files {
        let name = file.display().to_string();
        let raw: Box<dyn std::io::Read + Send> = if name == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(file).with_context(|| format!("opening {name}"))?)
        };
        let reader: Box<dyn BufRead + Send> = if name.ends_with(".gz") {
            Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
                raw,
            )))
        } else {
            Box::new(std::io::BufReader::new(raw))
        };
        let lines = reader.lines();
        let mut fmt = format;
        let mut n = 0u64;
        for line in lines {
            if interrupt.is_cancelled() {
                anyhow::bail!("interrupted: records produced so far stay in {topic}; an import is not resumed (importing the file again duplicates them)");
            }
            let line = line.with_context(|| format!("reading {name}"))?;
            n += 1;
            Counters::add(&counters.records, line.len() as u64 + 1);
            let f = *fmt.get_or_insert_with(|| detect(&line));
            let parsed = match f {
                Format::VmJson => vm_json::parse_line(&line),
                _ => text::parse_line(&line, f).map(|l| l.map(|l| l.parsed)),
            };
            let p = match parsed {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => {
                    summary.rejected_lines += 1;
                    if summary.rejections.len() < 20 {
                        summary.rejections.push(format!("{name}:{n}: {e}"));
                    }
                    continue;
                }
            };
            summary.series += 1;
            key.clear();
            write_key_parts(
                &mut key,
                &p.name,
                p.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            let part = partition_for_key(key.as_bytes(), partitions) as usize;
            let samples: Vec<Sample> = p.samples.iter().map(|(t, v)| Sample::new(*t, *v)).collect();
            for chunk in samples.chunks(MAX_SAMPLES_PER_PUSH) {
                let enc = &mut encoders[part];
                enc.push_parts(
                    &p.name,
                    p.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    chunk,
                    weir_contract::MetricType::Unknown,
                    None,
                    None,
                );
                for s in chunk {
                    newest[part] = newest[part].max(s.timestamp_ms);
                    first = first.min(s.timestamp_ms);
                    last = last.max(s.timestamp_ms);
                }
                summary.samples += chunk.len() as u64;
                Counters::add(&counters.samples_read, chunk.len() as u64);
                if enc.approx_len() > MAX_RECORD_BYTES {
                    pending.push(OutRecord {
                        key: None,
                        payload: enc.finish(),
                        partition: Some(part as i32),
                        headers: None,
                        timestamp: Some(newest[part]),
                    });
                    newest[part] = i64::MIN;
                }
            }
            if pending.len() >= 16 {
                let n = flush(&producer, topic, &mut pending, &interrupt).await?;
                summary.records += n;
                Counters::add(&counters.written, n);
            }
        }
        summary.lines += n;
    }
    for (q, enc) in encoders.iter_mut().enumerate() {
        if !enc.is_empty() {
            pending.push(OutRecord {
                key: None,
                payload: enc.finish(),
                partition: Some(q as i32),
                headers: None,
                timestamp: Some(newest[q]),
            });
        }
    }
    let n = flush(&producer, topic, &mut pending, &interrupt).await?;
    summary.records += n;
    Counters::add(&counters.written, n);
    if first <= last {
        summary.from = Some(crate::replay::range::show(first));
        summary.to = Some(crate::replay::range::show(last));
    }
    Ok(summary)
}

/// Produces `pending` until Kafka acknowledged every record (retrying what it did not).
async fn flush(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    pending: &mut Vec<crate::produce::OutRecord>,
    interrupt: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<u64> {
    let n = pending.len() as u64;
    let mut backoff = crate::backoff::Backoff::new(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(10),
    );
    loop {
        match crate::produce::send_pending(
            producer,
            topic,
            pending,
            std::time::Duration::from_secs(30),
        )
        .await
        {
            Ok(()) => return Ok(n),
            Err(e) if e.is_permanent() => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "import: producing failed; retrying what was not acknowledged");
                if !backoff.wait_unless(interrupt).await {
                    anyhow::bail!("interrupted while Kafka was failing");
                }
            }
        }
    }
}
