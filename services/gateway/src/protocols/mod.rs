//! One module per push protocol. Each decodes a request body and feeds the series it
//! finds, as it parses them, to the shared [`BatchBuilder`](weir_ingest::BatchBuilder);
//! everything else (auth, admission, limits, validation, partitioning, Kafka) is done
//! once, here and in `ingest`.
pub mod influx;
pub mod json_push;
pub mod otlp;
pub mod remote_write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::auth::PeerIdentity;
use crate::error::{Answer, ApiError, ErrorStyle};
use crate::server::Gateway;
use weir_ingest::{BatchBuilder, Reservation, Written};

/// How one protocol is served.
pub struct Protocol {
    /// Metrics label and log field.
    pub name: &'static str,
    pub errors: ErrorStyle,
    /// Whether a request some of whose samples were rejected is answered as a success
    /// that says so (OTLP's partial success) rather than a 400 naming the first.
    pub partial_success: bool,
}

/// The content type without parameters, lower-cased.
pub(crate) fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// A request as the protocols take it: headers, body, and the caller's client
/// certificate when TLS client auth verified one.
pub struct Call {
    pub peer: Option<PeerIdentity>,
    pub headers: HeaderMap,
    pub body: Body,
}

impl<S: Send + Sync> FromRequest<S> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        Ok(Self {
            peer: parts.extensions.remove::<PeerIdentity>(),
            headers: parts.headers,
            body,
        })
    }
}

/// The common request flow: auth → tenant rate → admit → read body → decode → parse
/// → tenant limits → write.
/// Admission comes first, so a request the gateway has no room for is refused before
/// its body is read; the reservation it takes grows as the body is read (`body::read`),
/// decompressed (`decode`) and encoded (`parse` feeding the batch builder), all under
/// their limits. `decode` turns the raw body into the protocol's plain bytes.
pub(crate) async fn serve(
    gw: Arc<Gateway>,
    proto: &Protocol,
    call: Call,
    decode: impl FnOnce(Bytes, &HeaderMap, usize, &mut Reservation) -> Result<Bytes, ApiError>,
    parse: impl FnOnce(&[u8], &mut BatchBuilder<'_>) -> Result<(), ApiError>,
    ok: impl FnOnce(&Written) -> Response,
) -> Response {
    let started = Instant::now();
    let Call {
        peer,
        headers,
        body,
    } = call;
    // Taken when it is read; still here when the request was refused before that.
    let mut body = Some(body);
    let result = async {
        let tenant = gw.auth.tenant(&headers, peer.as_ref())?;
        let limits_key = tenant.as_deref().unwrap_or(crate::tenants::NO_TENANT);
        gw.tenants.precheck(limits_key)?;
        let declared = crate::body::declared_len(&headers).unwrap_or(0);
        let mut reservation = gw.ingest.admit(declared.min(gw.body_limits.max_body))?;
        let Some(body) = body.take() else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request body was already taken",
            ));
        };
        let raw = crate::body::read(body, &headers, gw.body_limits, &mut reservation).await?;
        metrics::counter!("weir_gateway_received_bytes_total", "protocol" => proto.name)
            .increment(raw.len() as u64);
        let (raw_len, before) = (raw.len(), reservation.bytes());
        let plain = decode(
            raw,
            &headers,
            gw.body_limits.max_decompressed,
            &mut reservation,
        )?;
        if reservation.bytes() > before {
            // Decompressed into a buffer of its own: the compressed one is gone.
            reservation.release(raw_len);
        }
        let plain_len = plain.len();
        let mut encoded = {
            let mut batch = gw.ingest.batch(tenant.as_deref(), plain_len, reservation);
            parse(&plain, &mut batch)?;
            batch.finish()
        };
        drop(plain);
        // Only the records are held while Kafka acknowledges them.
        encoded.reservation.release(plain_len);
        gw.tenants
            .admit(limits_key, encoded.samples, &encoded.series_hashes)?;
        let samples = encoded.samples;
        let w = gw.ingest.write(proto.name, encoded).await.and_then(|w| {
            match w.refusal() {
                Some(why) if !proto.partial_success => Err(ApiError::bad_request(why)),
                _ => Ok(w),
            }
        });
        if w.is_ok() || w.as_ref().is_err_and(|e| e.status == StatusCode::BAD_REQUEST) {
            metrics::counter!("weir_gateway_tenant_samples_total", "tenant" => limits_key.to_string())
                .increment(samples as u64);
        }
        w
    }
    .await;
    if let (Err(_), Some(body)) = (&result, body) {
        crate::body::discard(body, &headers).await;
    }
    let resp = match result {
        Ok(w) => ok(&w),
        Err(e) => {
            if e.status.is_server_error() || e.status == StatusCode::TOO_MANY_REQUESTS {
                // A tenant at 10x its limit or a broker outage refuses thousands of
                // requests a second: one line a second, with how many it stands for
                // (weir_gateway_requests_total counts every one).
                if let Some(suppressed) = NOT_WRITTEN_LOG.admit() {
                    tracing::warn!(protocol = proto.name, status = %e.status, error = %e.message, suppressed, "request not written");
                }
            } else {
                tracing::debug!(protocol = proto.name, status = %e.status, error = %e.message, "request refused");
            }
            e.into_response_with(proto.errors)
        }
    };
    let code = resp.status().as_u16().to_string();
    metrics::counter!("weir_gateway_requests_total", "protocol" => proto.name, "code" => code)
        .increment(1);
    metrics::histogram!("weir_gateway_request_duration_seconds", "protocol" => proto.name)
        .record(started.elapsed().as_secs_f64());
    resp
}

static NOT_WRITTEN_LOG: LogSampler = LogSampler::new();

/// Lets one log line a second through; counts the ones it held back.
struct LogSampler {
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl LogSampler {
    const fn new() -> Self {
        Self {
            last_second: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when this one may be logged.
    fn admit(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_second.load(Ordering::Relaxed);
        if now > last
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

pub(crate) fn no_content(_: &Written) -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod log_sampler_tests {
    use super::LogSampler;

    #[test]
    fn one_line_a_second_and_the_count_of_the_rest() {
        let s = LogSampler::new();
        assert_eq!(s.admit(), Some(0));
        for _ in 0..1000 {
            assert_eq!(s.admit(), None);
        }
        // The next second's first line says how many it stands for.
        s.last_second.store(0, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(s.admit(), Some(1000));
    }
}
