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
use weir_contract::series_key::write_key;
use weir_contract::{partition_for_key, Label, Series};
use weir_runtime::ops::Health;

use crate::error::ApiError;
use crate::validate::{Dropped, Rejections, Validator};

/// A protocol's parse of one request.
#[derive(Debug, Default)]
pub struct Parsed {
    pub series: Vec<Series>,
    /// Samples the protocol layer already refused (unparseable lines, native histograms).
    pub rejected: Rejections,
    /// Merge series that occur more than once (line protocol and JSON repeat a series per
    /// timestamp; remote write does not, so it skips the cost).
    pub merge_duplicates: bool,
}

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
pub struct InflightPermit(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

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
        metrics::gauge!("weir_gateway_inflight_bytes").set(
            ((self.max_inflight_kib as usize - self.inflight.available_permits()) * 1024) as f64,
        );
        Ok(InflightPermit(permit))
    }

    /// Writes a parsed request. `Ok` when everything valid was acknowledged and nothing
    /// was rejected; a 400 naming the first rejection when some samples were refused
    /// (the valid ones are still written and acknowledged first).
    pub async fn write(
        &self,
        protocol: &'static str,
        tenant: Option<&str>,
        parsed: Parsed,
    ) -> Result<Written, ApiError> {
        let Parsed {
            mut series,
            mut rejected,
            merge_duplicates,
        } = parsed;
        if series.len() > self.max_series {
            return Err(ApiError::too_large(format!(
                "{} series in one request, over the limit of {} (gateway.limits.max_series_per_request)",
                series.len(),
                self.max_series
            )));
        }
        let now = now_ms();
        let mut dropped = Dropped::default();
        series.retain_mut(|s| {
            let keep = self.validator.check(s, now, &mut rejected, &mut dropped);
            if keep {
                if let Some(t) = tenant {
                    set_tenant(s, &self.tenant_label, t);
                }
            }
            keep
        });
        if merge_duplicates {
            merge(&mut series);
        }
        let records = self.encode(&series);
        let samples: usize = series.iter().map(|s| s.samples.len()).sum();
        let written = Written {
            series: series.len(),
            samples,
            records: records.len(),
            rejected: rejected.samples,
            dropped: dropped.0,
        };
        metrics::counter!("weir_gateway_samples_total", "protocol" => protocol, "outcome" => "rejected")
            .increment(rejected.samples as u64);
        metrics::counter!("weir_gateway_samples_total", "protocol" => protocol, "outcome" => "dropped")
            .increment(dropped.0 as u64);
        self.produce(records).await?;
        metrics::counter!("weir_gateway_samples_total", "protocol" => protocol, "outcome" => "accepted")
            .increment(samples as u64);
        metrics::counter!("weir_gateway_series_total", "protocol" => protocol)
            .increment(series.len() as u64);
        if let Some(first) = rejected.first {
            let total = samples + rejected.samples + dropped.0;
            return Err(ApiError::bad_request(format!(
                "rejected {} of {total} samples ({samples} written); first: {first}",
                rejected.samples
            )));
        }
        Ok(written)
    }

    /// One record per partition (split further above `max_record_bytes`).
    fn encode(&self, series: &[Series]) -> Vec<(i32, Vec<u8>)> {
        let n = self.partitions.load(Ordering::Relaxed).max(1);
        let mut encoders: Vec<BatchEncoder> = (0..n).map(|_| BatchEncoder::new()).collect();
        let mut records = Vec::new();
        let mut key = String::with_capacity(256);
        for s in series {
            key.clear();
            write_key(&mut key, &s.name, &s.labels);
            let p = partition_for_key(key.as_bytes(), n);
            let enc = &mut encoders[p as usize];
            enc.push(s);
            if enc.approx_len() >= self.max_record_bytes {
                records.push((p as i32, enc.finish()));
            }
        }
        for (p, enc) in encoders.iter_mut().enumerate() {
            if !enc.is_empty() {
                records.push((p as i32, enc.finish()));
            }
        }
        records
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

/// Sets the tenant label (replacing a client-sent one) and the tenant field.
fn set_tenant(s: &mut Series, label: &str, tenant: &str) {
    match s.labels.binary_search_by(|l| l.name.as_str().cmp(label)) {
        Ok(i) => s.labels[i].value = tenant.to_string(),
        Err(i) => s.labels.insert(i, Label::new(label, tenant)),
    }
    s.tenant = Some(tenant.to_string());
}

/// Folds series with the same name and labels into one, keeping sample order.
fn merge(series: &mut Vec<Series>) {
    if series.len() < 2 {
        return;
    }
    let mut index: HashMap<String, usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series.drain(..) {
        match index.get(&s.key()) {
            Some(&i) => out[i].samples.extend(s.samples),
            None => {
                index.insert(s.key(), out.len());
                out.push(s);
            }
        }
    }
    *series = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_contract::Sample;

    #[test]
    fn tenant_label_is_inserted_in_order_and_overrides() {
        let mut s = Series::new(
            "m",
            vec![Label::new("a", "1"), Label::new("z", "2")],
            vec![],
        );
        set_tenant(&mut s, "tenant", "acme");
        assert_eq!(s.key(), r#"m{a="1",tenant="acme",z="2"}"#);
        let mut s = Series::new("m", vec![Label::new("tenant", "evil")], vec![]);
        set_tenant(&mut s, "tenant", "acme");
        assert_eq!(s.key(), r#"m{tenant="acme"}"#);
        assert_eq!(s.tenant.as_deref(), Some("acme"));
    }

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
