//! The ingest path every protocol shares: validate → tenant → key → partition →
//! encode → produce → wait for acknowledgements.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::Semaphore;
use weir_contract::avro::BatchEncoder;
use weir_contract::series_key::write_key_parts;
use weir_contract::{partition_for_key, MetricType, Sample, Series};
use weir_runtime::ops::Health;

use crate::error::ApiError;
use crate::validate::{LabelRef, Rejections, Validator};

/// What a request wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub series: usize,
    pub samples: usize,
    pub records: usize,
    pub rejected: usize,
    pub dropped: usize,
}

pub struct Ingest {
    producer: FutureProducer,
    topic: String,
    partitions: AtomicU32,
    validator: Validator,
    tenant_label: String,
    max_series: usize,
    max_record_bytes: usize,
    delivery_timeout: Duration,
    inflight: Arc<Semaphore>,
    max_inflight_kib: u32,
    health: Health,
}

/// Keeps a request's share of the in-flight budget until it is answered.
/// The gauge follows the budget both ways: up when admitted, down when answered.
pub struct InflightPermit {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    budget: Arc<Semaphore>,
    max_kib: u32,
}

impl InflightPermit {
    fn report(&self) {
        let used = self.max_kib as usize - self.budget.available_permits();
        metrics::gauge!("weir_gateway_inflight_bytes").set((used * 1024) as f64);
    }
}

impl Drop for InflightPermit {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.report();
    }
}

pub struct IngestSettings {
    pub topic: String,
    pub validator: Validator,
    pub tenant_label: String,
    pub max_series: usize,
    pub max_record_bytes: usize,
    pub delivery_timeout: Duration,
    pub max_inflight_bytes: u64,
}

impl Ingest {
    pub fn new(
        producer: FutureProducer,
        partitions: u32,
        s: IngestSettings,
        health: Health,
    ) -> Self {
        let kib = (s.max_inflight_bytes / 1024).clamp(1, u32::MAX as u64 / 2) as u32;
        Self {
            producer,
            topic: s.topic,
            partitions: AtomicU32::new(partitions),
            validator: s.validator,
            tenant_label: s.tenant_label,
            max_series: s.max_series,
            max_record_bytes: s.max_record_bytes,
            delivery_timeout: s.delivery_timeout,
            inflight: Arc::new(Semaphore::new(kib as usize)),
            max_inflight_kib: kib,
            health,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Partitions of the topic as last seen; 0 before Kafka first answered.
    pub fn partitions(&self) -> u32 {
        self.partitions.load(Ordering::Relaxed)
    }

    pub fn set_partitions(&self, n: u32) {
        if n > 0 {
            let old = self.partitions.swap(n, Ordering::Relaxed);
            if old != 0 && old != n {
                tracing::warn!(topic = %self.topic, old, new = n, "partition count changed; series now map to new partitions");
            }
        }
    }

    /// Reserves room for a request of `bytes` (decompressed), or answers 429 so the
    /// client backs off while Kafka catches up. Memory stays bounded by the budget.
    pub fn admit(&self, bytes: usize) -> Result<InflightPermit, ApiError> {
        if !self.health.is_ready() || self.partitions() == 0 {
            return Err(ApiError::retry(
                StatusCode::SERVICE_UNAVAILABLE,
                "Kafka is not reachable; retry later",
                Duration::from_secs(5),
            ));
        }
        let kib = ((bytes / 1024) as u32 + 1).min(self.max_inflight_kib);
        let permit = self
            .inflight
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| {
                metrics::counter!("weir_gateway_throttled_total").increment(1);
                ApiError::retry(
                    StatusCode::TOO_MANY_REQUESTS,
                    "the gateway is at its in-flight limit; retry later",
                    Duration::from_secs(1),
                )
            })?;
        let permit = InflightPermit {
            permit: Some(permit),
            budget: self.inflight.clone(),
            max_kib: self.max_inflight_kib,
        };
        permit.report();
        Ok(permit)
    }

    /// Starts encoding one request's series. `size_hint` is the decoded body's length,
    /// to size the per-partition buffers once.
    pub fn batch<'a>(&'a self, tenant: Option<&'a str>, size_hint: usize) -> BatchBuilder<'a> {
        let n = self.partitions().max(1);
        // Avro of a request is about 1.5x its protobuf; spread over the partitions.
        let per_partition = (size_hint * 3 / 2 / n as usize).min(self.max_record_bytes) + 64;
        BatchBuilder {
            ingest: self,
            tenant,
            partitions: n,
            now: now_ms(),
            encoders: (0..n)
                .map(|_| BatchEncoder::with_capacity(per_partition))
                .collect(),
            records: Vec::new(),
            key: String::with_capacity(256),
            kept: Vec::new(),
            rejected: Rejections::default(),
            dropped: 0,
            series: 0,
            samples: 0,
            offered: 0,
        }
    }

    /// Produces an encoded request and waits for Kafka. `Ok` when everything valid was
    /// acknowledged and nothing was rejected; a 400 naming the first rejection when some
    /// samples were refused (the valid ones are written and acknowledged first).
    pub async fn write(&self, protocol: &'static str, e: Encoded) -> Result<Written, ApiError> {
        metrics::counter!("weir_gateway_samples_total", "protocol" => protocol, "outcome" => "rejected")
            .increment(e.rejected.samples as u64);
        metrics::counter!("weir_gateway_samples_total", "protocol" => protocol, "outcome" => "dropped")
            .increment(e.dropped as u64);
        let written = Written {
            series: e.series,
            samples: e.samples,
            records: e.records.len(),
            rejected: e.rejected.samples,
            dropped: e.dropped,
        };
        self.produce(e.records).await?;
        metrics::counter!("weir_gateway_samples_total", "protocol" => protocol, "outcome" => "accepted")
            .increment(e.samples as u64);
        metrics::counter!("weir_gateway_series_total", "protocol" => protocol)
            .increment(e.series as u64);
        if let Some(first) = e.rejected.first {
            let total = e.samples + e.rejected.samples + e.dropped;
            return Err(ApiError::bad_request(format!(
                "rejected {} of {total} samples ({} written); first: {first}",
                e.rejected.samples, e.samples
            )));
        }
        Ok(written)
    }

    async fn produce(&self, records: Vec<(i32, Vec<u8>)>) -> Result<(), ApiError> {
        if records.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut pending = Vec::with_capacity(records.len());
        let mut bytes = 0u64;
        for (partition, payload) in &records {
            bytes += payload.len() as u64;
            let rec: FutureRecord<'_, (), [u8]> = FutureRecord::to(&self.topic)
                .partition(*partition)
                .payload(payload);
            match self.producer.send_result(rec) {
                Ok(f) => pending.push(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    metrics::counter!("weir_gateway_records_total", "outcome" => "queue_full")
                        .increment(1);
                    return Err(ApiError::retry(
                        StatusCode::TOO_MANY_REQUESTS,
                        "the Kafka producer queue is full; retry later",
                        Duration::from_secs(1),
                    ));
                }
                Err((e, _)) => {
                    metrics::counter!("weir_gateway_records_total", "outcome" => "failed")
                        .increment(1);
                    return Err(ApiError::retry(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("cannot enqueue record for Kafka: {e}"),
                        Duration::from_secs(5),
                    ));
                }
            }
        }
        let acks = tokio::time::timeout(self.delivery_timeout, join_all(pending))
            .await
            .map_err(|_| {
                ApiError::retry(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "Kafka did not acknowledge within {:?}; retry later",
                        self.delivery_timeout
                    ),
                    Duration::from_secs(5),
                )
            })?;
        metrics::histogram!("weir_gateway_kafka_ack_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let mut failed = None;
        let mut ok = 0u64;
        for a in acks {
            match a {
                Ok(Ok(_)) => ok += 1,
                Ok(Err((e, _))) => failed = Some(e.to_string()),
                Err(_) => failed = Some("delivery cancelled: producer shut down".into()),
            }
        }
        metrics::counter!("weir_gateway_records_total", "outcome" => "acked").increment(ok);
        metrics::counter!("weir_gateway_record_bytes_total").increment(bytes);
        if let Some(e) = failed {
            metrics::counter!("weir_gateway_records_total", "outcome" => "failed")
                .increment(records.len() as u64 - ok);
            tracing::warn!(error = %e, "Kafka did not acknowledge a record");
            return Err(ApiError::retry(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Kafka did not acknowledge every record: {e}; retry later"),
                Duration::from_secs(5),
            ));
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One request's records, ready to produce.
#[derive(Debug, Default)]
pub struct Encoded {
    pub records: Vec<(i32, Vec<u8>)>,
    pub series: usize,
    pub samples: usize,
    pub rejected: Rejections,
    pub dropped: usize,
}

/// Validates, keys, partitions and encodes a request's series one at a time, straight
/// from borrowed parts, into one Avro record per partition (split above
/// `max_record_bytes`).
pub struct BatchBuilder<'i> {
    ingest: &'i Ingest,
    tenant: Option<&'i str>,
    partitions: u32,
    now: i64,
    encoders: Vec<BatchEncoder>,
    records: Vec<(i32, Vec<u8>)>,
    key: String,
    kept: Vec<Sample>,
    rejected: Rejections,
    dropped: usize,
    series: usize,
    samples: usize,
    offered: usize,
}

impl<'i> BatchBuilder<'i> {
    /// Adds one series. Labels are normalised in place; the tenant label is set (replacing
    /// any value the client sent). Bad series and samples are counted as rejections, not
    /// errors; the only error is a request with too many series (413).
    pub fn add<'s>(
        &mut self,
        name: &'s str,
        labels: &mut Vec<LabelRef<'s>>,
        samples: &[Sample],
        metric_type: MetricType,
        unit: Option<&'s str>,
    ) -> Result<(), ApiError>
    where
        'i: 's,
    {
        self.offered += 1;
        if self.offered > self.ingest.max_series {
            return Err(ApiError::too_large(format!(
                "more than {} series in one request (gateway.limits.max_series_per_request)",
                self.ingest.max_series
            )));
        }
        let v = &self.ingest.validator;
        if let Err(why) = v.check_series(name, labels) {
            self.rejected.add(samples.len(), || why);
            return Ok(());
        }
        if let Some(t) = self.tenant {
            let label = self.ingest.tenant_label.as_str();
            match labels.binary_search_by(|(n, _)| (*n).cmp(label)) {
                Ok(i) => labels[i].1 = t,
                Err(i) => labels.insert(i, (label, t)),
            }
        }
        let (bad, first) = v.filter_samples(samples, self.now, &mut self.kept, &mut self.dropped);
        if bad > 0 {
            let key = crate::validate::describe(name, labels);
            self.rejected.add(bad, || {
                format!("series {key}: {}", first.unwrap_or_default())
            });
        }
        if self.kept.is_empty() {
            return Ok(());
        }
        self.key.clear();
        write_key_parts(&mut self.key, name, labels.iter().copied());
        let p = partition_for_key(self.key.as_bytes(), self.partitions);
        let enc = &mut self.encoders[p as usize];
        enc.push_parts(
            name,
            labels.iter().copied(),
            &self.kept,
            metric_type,
            unit,
            self.tenant,
        );
        if enc.approx_len() >= self.ingest.max_record_bytes {
            self.records.push((p as i32, enc.finish()));
        }
        self.series += 1;
        self.samples += self.kept.len();
        Ok(())
    }

    /// Adds owned series (line protocol, JSON), folding repeats of one series together.
    pub fn add_owned(&mut self, mut series: Vec<Series>) -> Result<(), ApiError> {
        merge(&mut series);
        let mut labels: Vec<LabelRef<'_>> = Vec::new();
        for s in &series {
            labels.clear();
            labels.extend(s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
            self.add(
                &s.name,
                &mut labels,
                &s.samples,
                s.metric_type,
                s.unit.as_deref(),
            )?;
        }
        Ok(())
    }

    /// Counts samples the protocol layer refused (unparseable lines, native histograms).
    pub fn reject(&mut self, samples: usize, why: impl FnOnce() -> String) {
        self.rejected.add(samples, why);
    }

    pub fn finish(mut self) -> Encoded {
        for (p, enc) in self.encoders.iter_mut().enumerate() {
            if !enc.is_empty() {
                self.records.push((p as i32, enc.finish()));
            }
        }
        Encoded {
            records: self.records,
            series: self.series,
            samples: self.samples,
            rejected: self.rejected,
            dropped: self.dropped,
        }
    }
}

/// Folds series with the same name and labels into one, keeping sample order.
fn merge(series: &mut Vec<Series>) {
    if series.len() < 2 {
        return;
    }
    let mut index: HashMap<String, usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series.drain(..) {
        let key = s.key();
        match index.get(&key) {
            Some(&i) => out[i].samples.extend(s.samples),
            None => {
                index.insert(key, out.len());
                out.push(s);
            }
        }
    }
    *series = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_folds_repeated_series() {
        let mut v = vec![
            Series::new("m", vec![], vec![Sample::new(1, 1.0)]),
            Series::new("n", vec![], vec![Sample::new(1, 1.0)]),
            Series::new("m", vec![], vec![Sample::new(2, 2.0)]),
        ];
        merge(&mut v);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].samples, vec![Sample::new(1, 1.0), Sample::new(2, 2.0)]);
    }
}
