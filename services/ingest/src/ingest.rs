//! The ingest path every protocol shares: validate → tenant → key → partition →
//! encode → produce → wait for acknowledgements.
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use http::StatusCode;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::Semaphore;
use weir_contract::avro::{BatchEncoder, MAX_SAMPLE_LEN, RECORD_OVERHEAD};
use weir_contract::series_key::write_key_parts;
use weir_contract::{partition_for_key, MetricType, Sample};
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
    /// The first rejection's reason, when samples were rejected.
    pub first_rejection: Option<String>,
}

impl Written {
    /// What a 400 for a partly refused request says, when samples were refused.
    pub fn refusal(&self) -> Option<String> {
        self.first_rejection.as_ref().map(|first| {
            format!(
                "rejected {} of {} samples ({} written); first: {first}",
                self.rejected,
                self.samples + self.rejected + self.dropped,
                self.samples
            )
        })
    }
}

pub struct Ingest {
    producer: FutureProducer,
    topic: String,
    partitions: AtomicU32,
    validator: Validator,
    tenant_label: String,
    max_series: usize,
    max_record_bytes: usize,
    max_expanded_bytes: usize,
    delivery_timeout: Duration,
    budget: Arc<Semaphore>,
    max_inflight_kib: u32,
    /// Records handed to the producer and not yet acknowledged, against
    /// `max_queued_records` (the producer's `queue.buffering.max.messages`): checked for a
    /// whole request before any of its records is enqueued, so a full queue refuses a
    /// request whole instead of after part of it went out.
    queued_records: AtomicUsize,
    max_queued_records: usize,
    /// Whether each request's series hashes are collected for the series limits.
    track_series: bool,
    health: Health,
}

/// A request's share of the in-flight budget, taken before its body is read and grown
/// as it is read, decompressed and encoded; given back when the request is answered.
/// The budget is counted in KiB so it fits a semaphore's permit count.
pub struct Reservation {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    budget: Arc<Semaphore>,
    max_kib: u32,
    bytes: usize,
}

impl Reservation {
    /// Reserves `more` bytes. A budget that is used up is a 429 (other requests finish
    /// and give theirs back); the configuration makes the largest request fit the whole
    /// budget, so a request alone never needs more than there is.
    pub fn grow(&mut self, more: usize) -> Result<(), ApiError> {
        self.bytes = self.bytes.saturating_add(more);
        let want = self.bytes.div_ceil(1024);
        if want > self.max_kib as usize {
            return Err(ApiError::too_large(format!(
                "request needs more than the gateway's whole in-flight budget of {} KiB (gateway.limits.max_inflight_bytes)",
                self.max_kib
            )));
        }
        let want = want as u32;
        let held = self.permit.as_ref().map_or(0, |p| p.num_permits()) as u32;
        if want <= held {
            return Ok(());
        }
        let extra = self
            .budget
            .clone()
            .try_acquire_many_owned(want - held)
            .map_err(|_| {
                metrics::counter!("weir_gateway_throttled_total").increment(1);
                ApiError::retry(
                    StatusCode::TOO_MANY_REQUESTS,
                    "the gateway is at its in-flight limit; retry later",
                    Duration::from_secs(1),
                )
            })?;
        match &mut self.permit {
            Some(p) => p.merge(extra),
            None => self.permit = Some(extra),
        }
        self.report();
        Ok(())
    }

    /// Gives back `less` bytes (a buffer the request no longer holds).
    pub fn release(&mut self, less: usize) {
        self.bytes = self.bytes.saturating_sub(less);
        let want = self.bytes.div_ceil(1024);
        if let Some(p) = &mut self.permit {
            let held = p.num_permits();
            if held > want {
                drop(p.split(held - want));
                self.report();
            }
        }
    }

    /// A reservation against a budget of its own of `max_bytes` (tests, fuzzing).
    pub fn standalone(max_bytes: usize) -> Self {
        let kib = max_bytes.div_ceil(1024).clamp(1, u32::MAX as usize / 2) as u32;
        Self {
            permit: None,
            budget: Arc::new(Semaphore::new(kib as usize)),
            max_kib: kib,
            bytes: 0,
        }
    }

    /// A new, empty reservation against the same budget.
    pub fn sharing(&self) -> Self {
        Self {
            permit: None,
            budget: self.budget.clone(),
            max_kib: self.max_kib,
            bytes: 0,
        }
    }

    /// Bytes reserved so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn report(&self) {
        let used = self.max_kib as usize - self.budget.available_permits();
        metrics::gauge!("weir_gateway_inflight_bytes").set((used * 1024) as f64);
    }
}

impl Drop for Reservation {
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
    pub max_expanded_bytes: usize,
    pub delivery_timeout: Duration,
    pub max_inflight_bytes: u64,
    /// The producer's `queue.buffering.max.messages`.
    pub max_queued_records: usize,
    /// Collect each series' hash for the tenant series limits.
    pub track_series: bool,
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
            max_expanded_bytes: s.max_expanded_bytes,
            delivery_timeout: s.delivery_timeout,
            budget: Arc::new(Semaphore::new(kib as usize)),
            max_inflight_kib: kib,
            queued_records: AtomicUsize::new(0),
            max_queued_records: s.max_queued_records.max(1),
            track_series: s.track_series,
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

    /// Admits a request before its body is read: 503 while Kafka is unreachable, 429
    /// when the in-flight budget has no room for `bytes` (the declared body length).
    /// The reservation then grows as the body is read, decompressed and encoded, so
    /// memory stays bounded by the budget whatever the body expands into.
    pub fn admit(&self, bytes: usize) -> Result<Reservation, ApiError> {
        if !self.health.is_ready() || self.partitions() == 0 {
            return Err(ApiError::retry(
                StatusCode::SERVICE_UNAVAILABLE,
                "Kafka is not reachable; retry later",
                Duration::from_secs(5),
            ));
        }
        let mut r = Reservation {
            permit: None,
            budget: self.budget.clone(),
            max_kib: self.max_inflight_kib,
            bytes: 0,
        };
        // Every request holds at least 1 KiB, so a flood of empty ones is bounded too.
        r.grow(bytes.max(1))?;
        Ok(r)
    }

    /// Starts encoding one request's series. `size_hint` is the decoded body's length,
    /// to size the per-partition buffers once.
    pub fn batch<'a>(
        &'a self,
        tenant: Option<&'a str>,
        size_hint: usize,
        reservation: Reservation,
    ) -> BatchBuilder<'a> {
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
            reservation,
            expanded: 0,
            charged: 0,
            rejected: Rejections::default(),
            dropped: 0,
            series: 0,
            samples: 0,
            offered: 0,
            series_hashes: Vec::new(),
        }
    }

    /// Produces an encoded request and waits for Kafka. `Ok` when everything valid was
    /// acknowledged, with what was rejected (the protocol decides whether that is a 400
    /// or a partial success).
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
            first_rejection: None,
        };
        self.produce(e.records).await?;
        drop(e.reservation);
        metrics::counter!("weir_gateway_samples_total", "protocol" => protocol, "outcome" => "accepted")
            .increment(e.samples as u64);
        metrics::counter!("weir_gateway_series_total", "protocol" => protocol)
            .increment(e.series as u64);
        Ok(Written {
            first_rejection: e.rejected.first,
            ..written
        })
    }

    async fn produce(&self, records: Vec<(i32, Vec<u8>)>) -> Result<(), ApiError> {
        if records.is_empty() {
            return Ok(());
        }
        // Room for every record of the request, or none is enqueued: a client told to
        // retry must not have had part of its request written already.
        let _queued = QueueSlots::take(self, records.len())?;
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
                Err((e, _)) => {
                    metrics::counter!("weir_gateway_records_total", "outcome" => "failed")
                        .increment(1);
                    // Records before this one are already on their way; nothing else
                    // can be done about them but to say so in the log.
                    if !pending.is_empty() {
                        tracing::warn!(error = %e, enqueued = pending.len(), "a request was enqueued only in part");
                    }
                    return Err(kafka_error("cannot enqueue record for Kafka", &e));
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
                Ok(Err((e, _))) => failed = Some(e),
                Err(_) => {
                    failed = Some(KafkaError::Canceled);
                }
            }
        }
        metrics::counter!("weir_gateway_records_total", "outcome" => "acked").increment(ok);
        metrics::counter!("weir_gateway_record_bytes_total").increment(bytes);
        if let Some(e) = failed {
            metrics::counter!("weir_gateway_records_total", "outcome" => "failed")
                .increment(records.len() as u64 - ok);
            tracing::warn!(error = %e, "Kafka did not acknowledge a record");
            return Err(kafka_error("Kafka did not acknowledge every record", &e));
        }
        Ok(())
    }
}

/// A request's records counted against the producer queue until they are acknowledged.
struct QueueSlots<'a> {
    ingest: &'a Ingest,
    n: usize,
}

impl<'a> QueueSlots<'a> {
    fn take(ingest: &'a Ingest, n: usize) -> Result<Self, ApiError> {
        let before = ingest.queued_records.fetch_add(n, Ordering::AcqRel);
        if before + n > ingest.max_queued_records && before > 0 {
            ingest.queued_records.fetch_sub(n, Ordering::AcqRel);
            metrics::counter!("weir_gateway_records_total", "outcome" => "queue_full")
                .increment(n as u64);
            return Err(ApiError::retry(
                StatusCode::TOO_MANY_REQUESTS,
                "the Kafka producer queue is full; retry later",
                Duration::from_secs(1),
            ));
        }
        Ok(Self { ingest, n })
    }
}

impl Drop for QueueSlots<'_> {
    fn drop(&mut self) {
        self.ingest
            .queued_records
            .fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// What a client is told about a Kafka error: 413 for a record the broker will never
/// take (a retry would fail the same way forever), 429 for a full queue, else 503.
fn kafka_error(what: &str, e: &KafkaError) -> ApiError {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::InvalidRecord) => {
            ApiError::too_large(format!(
                "{what}: {e}; a record of this request is larger than Kafka accepts (lower gateway.limits.max_record_bytes or raise the broker's message.max.bytes)"
            ))
        }
        Some(C::QueueFull) => ApiError::retry(
            StatusCode::TOO_MANY_REQUESTS,
            "the Kafka producer queue is full; retry later",
            Duration::from_secs(1),
        ),
        _ => ApiError::retry(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}: {e}; retry later"),
            Duration::from_secs(5),
        ),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One request's records, ready to produce, and the budget they hold.
pub struct Encoded {
    pub records: Vec<(i32, Vec<u8>)>,
    pub series: usize,
    pub samples: usize,
    pub rejected: Rejections,
    pub dropped: usize,
    pub reservation: Reservation,
    /// A hash of each series' key, when the series limits need them.
    pub series_hashes: Vec<u64>,
}

/// How often the expanded bytes are charged to the in-flight budget (a semaphore call
/// per series would show in the profile).
const CHARGE_STEP: usize = 64 << 10;

/// A label set checked once and shared by the series that follow (a line-protocol line,
/// a JSON device): its labels are normalised and carry the tenant, or it was refused.
pub enum LabelSet<'s> {
    Ok(Vec<LabelRef<'s>>),
    /// Why every series with these labels is refused.
    Refused(String),
}

/// Validates, keys, partitions and encodes a request's series one at a time, straight
/// from borrowed parts, into one Avro record per partition (split above
/// `max_record_bytes`, a long series across several records of its partition).
/// Everything it builds is charged to the request's reservation, and past
/// `max_expanded_bytes` the request is refused: the answer to bodies that expand.
pub struct BatchBuilder<'i> {
    ingest: &'i Ingest,
    tenant: Option<&'i str>,
    partitions: u32,
    now: i64,
    encoders: Vec<BatchEncoder>,
    records: Vec<(i32, Vec<u8>)>,
    key: String,
    kept: Vec<Sample>,
    reservation: Reservation,
    /// Bytes of records built so far (finished and open).
    expanded: usize,
    /// Of those, the bytes charged to the reservation.
    charged: usize,
    rejected: Rejections,
    dropped: usize,
    series: usize,
    samples: usize,
    offered: usize,
    series_hashes: Vec<u64>,
}

impl<'i> BatchBuilder<'i> {
    /// Adds one series. Labels are normalised in place; the tenant label is set (replacing
    /// any value the client sent). Bad series and samples are counted as rejections, not
    /// errors; errors are limits of the whole request (413) and a full budget (429).
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
        self.count_series()?;
        let v = &self.ingest.validator;
        if let Err(why) = v.check_series(name, labels) {
            self.rejected.add(samples.len(), || why);
            return Ok(());
        }
        self.set_tenant(labels);
        self.encode(name, labels, samples, metric_type, unit)
    }

    /// Checks a label set that several series share, once: see [`LabelSet`].
    pub fn label_set<'s>(&self, mut labels: Vec<LabelRef<'s>>) -> LabelSet<'s>
    where
        'i: 's,
    {
        match self.ingest.validator.check_labels(&mut labels) {
            Ok(()) => {
                self.set_tenant(&mut labels);
                LabelSet::Ok(labels)
            }
            Err(why) => LabelSet::Refused(format!(
                "{why} (labels {})",
                crate::validate::describe("", &labels)
            )),
        }
    }

    /// Adds one series of a shared, checked label set: only its name and samples are
    /// checked here.
    pub fn add_to_set<'s>(
        &mut self,
        name: &str,
        set: &LabelSet<'s>,
        samples: &[Sample],
        metric_type: MetricType,
        unit: Option<&str>,
    ) -> Result<(), ApiError> {
        self.count_series()?;
        let labels = match set {
            LabelSet::Ok(l) => l,
            LabelSet::Refused(why) => {
                self.rejected
                    .add(samples.len(), || format!("series {name}...: {why}"));
                return Ok(());
            }
        };
        if let Err(why) = self.ingest.validator.check_name(name, labels) {
            self.rejected.add(samples.len(), || why);
            return Ok(());
        }
        self.encode(name, labels, samples, metric_type, unit)
    }

    /// Adds bytes the protocol itself holds for the request (e.g. metrics it must keep
    /// until it knows their labels) to the reservation.
    pub fn charge(&mut self, bytes: usize) -> Result<(), ApiError> {
        self.reservation.grow(bytes)
    }

    fn count_series(&mut self) -> Result<(), ApiError> {
        self.offered += 1;
        if self.offered > self.ingest.max_series {
            return Err(ApiError::too_large(format!(
                "more than {} series in one request (gateway.limits.max_series_per_request)",
                self.ingest.max_series
            )));
        }
        Ok(())
    }

    fn set_tenant<'s>(&self, labels: &mut Vec<LabelRef<'s>>)
    where
        'i: 's,
    {
        if let Some(t) = self.tenant {
            let label = self.ingest.tenant_label.as_str();
            match labels.binary_search_by(|(n, _)| (*n).cmp(label)) {
                Ok(i) => labels[i].1 = t,
                Err(i) => labels.insert(i, (label, t)),
            }
        }
    }

    /// Filters the samples, then encodes the series into its partition's records: across
    /// as many records as its samples need, in order, none above `max_record_bytes`.
    fn encode(
        &mut self,
        name: &str,
        labels: &[LabelRef<'_>],
        samples: &[Sample],
        metric_type: MetricType,
        unit: Option<&str>,
    ) -> Result<(), ApiError> {
        let v = &self.ingest.validator;
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
        let max = self.ingest.max_record_bytes;
        let head = BatchEncoder::series_head_bound(name, labels.iter().copied(), unit, self.tenant);
        let room = max.saturating_sub(head + RECORD_OVERHEAD) / MAX_SAMPLE_LEN;
        if room == 0 {
            // Validation's limits keep this from happening (the configuration is checked
            // for it); should it, the series is refused rather than left to fail in Kafka.
            return Err(ApiError::too_large(format!(
                "series {}: its name and labels take {head} bytes, more than one Kafka record holds (gateway.limits.max_record_bytes = {max})",
                crate::validate::describe(name, labels)
            )));
        }
        self.key.clear();
        write_key_parts(&mut self.key, name, labels.iter().copied());
        let p = partition_for_key(self.key.as_bytes(), self.partitions) as usize;
        if self.ingest.track_series {
            use std::hash::BuildHasher;
            // 64 bits: a collision among a tenant's million series is a ~1e-7 chance
            // of one series not counted, which a limit can live with.
            let h =
                foldhash::quality::FixedState::with_seed(0x7765_6972).hash_one(self.key.as_bytes());
            self.series_hashes.push(h);
        }
        let enc = &mut self.encoders[p];
        for chunk in self.kept.chunks(room) {
            let need = head + chunk.len() * MAX_SAMPLE_LEN;
            if !enc.is_empty() && enc.approx_len() + need > max {
                self.records.push((p as i32, enc.finish()));
            }
            let before = enc.approx_len();
            enc.push_parts(
                name,
                labels.iter().copied(),
                chunk,
                metric_type,
                unit,
                self.tenant,
            );
            self.expanded += enc.approx_len() - before;
        }
        self.series += 1;
        self.samples += self.kept.len();
        if self.expanded > self.ingest.max_expanded_bytes {
            return Err(ApiError::too_large(format!(
                "request expands to more than {} bytes of records (gateway.limits.max_expanded_bytes); send fewer series per request, or fewer fields per shared label set",
                self.ingest.max_expanded_bytes
            )));
        }
        if self.expanded - self.charged >= CHARGE_STEP {
            self.reservation.grow(self.expanded - self.charged)?;
            self.charged = self.expanded;
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
            reservation: self.reservation,
            series_hashes: self.series_hashes,
        }
    }
}

/// Runs a protocol's parser against a real batch builder and decodes the records it
/// would produce, for the protocols' tests and the fuzz targets (nothing is sent: the
/// producer points at a closed port and is never used).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;
    use weir_contract::avro::Decoder;
    use weir_contract::Series;
    use weir_runtime::config::ValidationConfig;

    pub struct Limits {
        pub partitions: u32,
        pub max_series: usize,
        pub max_record_bytes: usize,
        pub max_expanded_bytes: usize,
        pub max_inflight_bytes: u64,
    }

    impl Default for Limits {
        fn default() -> Self {
            Self {
                partitions: 1,
                max_series: 50_000,
                max_record_bytes: 900 << 10,
                max_expanded_bytes: 64 << 20,
                max_inflight_bytes: 256 << 20,
            }
        }
    }

    pub fn ingest(l: Limits) -> Ingest {
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .expect("producer");
        let validation = ValidationConfig {
            max_sample_age: Duration::from_secs(200 * 365 * 86_400),
            ..ValidationConfig::default()
        };
        Ingest::new(
            producer,
            l.partitions,
            IngestSettings {
                topic: "t".into(),
                validator: Validator::new(validation),
                tenant_label: "tenant".into(),
                max_series: l.max_series,
                max_record_bytes: l.max_record_bytes,
                max_expanded_bytes: l.max_expanded_bytes,
                delivery_timeout: Duration::from_secs(1),
                max_inflight_bytes: l.max_inflight_bytes,
                max_queued_records: 100_000,
                track_series: true,
            },
            {
                let h = Health::new();
                h.set_ready();
                h
            },
        )
    }

    /// The series (in record order) and the rejections of one request.
    pub struct Outcome {
        pub series: Vec<Series>,
        pub records: Vec<(i32, Vec<u8>)>,
        pub rejected: Rejections,
    }

    impl Outcome {
        pub fn keys(&self) -> Vec<String> {
            self.series.iter().map(Series::key).collect()
        }
    }

    pub fn run_with(
        l: Limits,
        parse: impl FnOnce(&mut BatchBuilder<'_>) -> Result<(), ApiError>,
    ) -> Result<Outcome, ApiError> {
        run_on(&ingest(l), parse)
    }

    /// One ingest with the default limits for the whole process: a librdkafka client
    /// per input would cost its threads each time (and look like a leak to a fuzzer).
    pub fn shared() -> &'static Ingest {
        static INGEST: std::sync::OnceLock<Ingest> = std::sync::OnceLock::new();
        INGEST.get_or_init(|| ingest(Limits::default()))
    }

    pub fn run_on(
        ingest: &Ingest,
        parse: impl FnOnce(&mut BatchBuilder<'_>) -> Result<(), ApiError>,
    ) -> Result<Outcome, ApiError> {
        let r = ingest.admit(1)?;
        let mut b = ingest.batch(None, 0, r);
        parse(&mut b)?;
        let e = b.finish();
        let mut series = Vec::new();
        for (_, rec) in &e.records {
            series.extend(Decoder::new().decode(rec).expect("decodes").series);
        }
        Ok(Outcome {
            series,
            records: e.records,
            rejected: e.rejected,
        })
    }

    pub fn run(
        parse: impl FnOnce(&mut BatchBuilder<'_>) -> Result<(), ApiError>,
    ) -> Result<Outcome, ApiError> {
        run_on(shared(), parse)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn labels(n: usize, len: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("l{i:02}"), "v".repeat(len)))
            .collect()
    }

    #[test]
    fn a_long_series_is_split_across_records_of_its_partition_in_order() {
        let samples: Vec<Sample> = (0..100_000).map(|i| Sample::new(i, i as f64)).collect();
        let l = Limits {
            partitions: 4,
            max_record_bytes: 64 << 10,
            ..Limits::default()
        };
        let out = run_with(l, |b| {
            b.add(
                "m",
                &mut vec![("a", "b")],
                &samples,
                MetricType::Gauge,
                None,
            )
        })
        .unwrap();
        assert!(out.records.len() > 20, "{} records", out.records.len());
        let p = out.records[0].0;
        for (part, rec) in &out.records {
            assert_eq!(*part, p, "every record on the series' partition");
            assert!(rec.len() <= 64 << 10, "record of {} bytes", rec.len());
        }
        let got: Vec<Sample> = out.series.iter().flat_map(|s| s.samples.clone()).collect();
        assert_eq!(got, samples, "all samples, in order");
    }

    #[test]
    fn records_never_exceed_the_limit_whatever_the_mix() {
        let big = labels(20, 1000);
        let l = Limits {
            partitions: 3,
            max_record_bytes: 200 << 10,
            ..Limits::default()
        };
        let out = run_with(l, |b| {
            for i in 0..300 {
                let name = format!("m{i}");
                let mut ls: Vec<LabelRef<'_>> =
                    big.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let samples: Vec<Sample> =
                    (0..(i * 7 % 500)).map(|t| Sample::new(t, 1.0)).collect();
                b.add(&name, &mut ls, &samples, MetricType::Gauge, None)?;
            }
            Ok(())
        })
        .unwrap();
        for (_, rec) in &out.records {
            assert!(rec.len() <= 200 << 10, "record of {} bytes", rec.len());
        }
        let names: std::collections::BTreeSet<&str> =
            out.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 299, "every series with samples");
    }

    #[test]
    fn expansion_past_the_limit_is_413_naming_it() {
        let big = labels(30, 2000);
        let l = Limits {
            max_expanded_bytes: 4 << 20,
            ..Limits::default()
        };
        let err = run_with(l, |b| {
            let set = b.label_set(big.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect());
            for i in 0..20_000 {
                let name = format!("f{i}");
                b.add_to_set(&name, &set, &[Sample::new(1, 1.0)], MetricType::Gauge, None)?;
            }
            Ok(())
        })
        .err()
        .expect("refused");
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            err.message.contains("max_expanded_bytes"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_refused_label_set_rejects_its_series_without_copying_them() {
        let long = "x".repeat(70_000);
        let out = run(|b| {
            let set = b.label_set(vec![("host", long.as_str())]);
            for i in 0..1_000 {
                let name = format!("f{i}");
                b.add_to_set(&name, &set, &[Sample::new(1, 1.0)], MetricType::Gauge, None)?;
            }
            Ok(())
        })
        .unwrap();
        assert!(out.records.is_empty());
        assert_eq!(out.rejected.samples, 1_000);
        let first = out.rejected.first.unwrap();
        assert!(first.contains("longer than 2048"), "{first}");
        assert!(first.len() < 1_000, "{} bytes", first.len());
    }

    #[test]
    fn the_budget_bounds_what_requests_hold_together() {
        let ingest = ingest(Limits {
            max_inflight_bytes: 1 << 20,
            ..Limits::default()
        });
        let mut a = ingest.admit(600 << 10).unwrap();
        assert_eq!(
            ingest.admit(600 << 10).err().unwrap().status,
            StatusCode::TOO_MANY_REQUESTS
        );
        a.grow(300 << 10).unwrap();
        assert_eq!(
            a.grow(200 << 10).err().unwrap().status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "more than the whole budget, alone"
        );
        drop(a);
        ingest.admit(600 << 10).unwrap();
    }
}
