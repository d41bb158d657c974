//! Per-tenant limits: samples per second (a token bucket with a burst), active series,
//! and a global guard on new series per hour. Each tenant has its own lock, so a noisy
//! tenant contends only with itself.
//!
//! A request is checked twice. Before its body is read: a tenant whose bucket is empty
//! is refused at once, at the cost of a header parse. After it is parsed (its sample
//! count and series known) and before anything is produced: the request passes whole or
//! not at all, so a refused request has written nothing and its retry duplicates
//! nothing. Every refusal is a 429 with `Retry-After` and names the limit.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use weir_runtime::config::{TenantLimits, TenantsConfig};

use crate::error::ApiError;

/// The tenant name limits use when auth is off.
pub const NO_TENANT: &str = "default";

pub struct TenantLimiter {
    /// Some limit is set: without one, requests skip the limiter (no lock, no map).
    limited: bool,
    cfg: TenantsConfig,
    max_new_series_per_hour: u64,
    started: Instant,
    tenants: RwLock<HashMap<Arc<str>, Arc<Mutex<TenantState>>>>,
    /// (hour since start, new series admitted in it), over all tenants.
    new_series: Mutex<(u64, u64)>,
}

struct TenantState {
    limits: TenantLimits,
    tokens: f64,
    refilled: Instant,
    /// Series hash → minute (since start) it was last written.
    series: HashMap<u64, u32>,
    swept: u32,
}

impl TenantLimiter {
    pub fn new(cfg: TenantsConfig, max_new_series_per_hour: u64) -> Self {
        let rated = cfg.defaults.samples_per_second > 0.0
            || cfg
                .overrides
                .values()
                .any(|o| o.samples_per_second.unwrap_or(0.0) > 0.0);
        let mut me = Self {
            limited: false,
            cfg,
            max_new_series_per_hour,
            started: Instant::now(),
            tenants: RwLock::new(HashMap::new()),
            new_series: Mutex::new((0, 0)),
        };
        me.limited = rated || me.tracks_series();
        me
    }

    /// Whether requests must carry their series hashes (some series limit is on).
    pub fn tracks_series(&self) -> bool {
        self.max_new_series_per_hour > 0
            || self.cfg.defaults.max_active_series > 0
            || self
                .cfg
                .overrides
                .values()
                .any(|o| o.max_active_series.unwrap_or(0) > 0)
    }

    fn state(&self, tenant: &str) -> Arc<Mutex<TenantState>> {
        if let Ok(m) = self.tenants.read() {
            if let Some(s) = m.get(tenant) {
                return s.clone();
            }
        }
        let limits = self.cfg.limits_of(tenant);
        let mut m = match self.tenants.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(Arc::from(tenant))
            .or_insert_with(|| {
                Arc::new(Mutex::new(TenantState {
                    limits,
                    tokens: limits.burst as f64,
                    refilled: Instant::now(),
                    series: HashMap::new(),
                    swept: 0,
                }))
            })
            .clone()
    }

    fn minute(&self) -> u32 {
        (self.started.elapsed().as_secs() / 60) as u32
    }

    /// Before the body is read: refuses a tenant whose bucket is empty.
    pub fn precheck(&self, tenant: &str) -> Result<(), ApiError> {
        if !self.limited {
            return Ok(());
        }
        let st = self.state(tenant);
        let mut s = lock(&st);
        if s.limits.samples_per_second <= 0.0 {
            return Ok(());
        }
        s.refill();
        if s.tokens < 1.0 {
            let wait = (1.0 - s.tokens) / s.limits.samples_per_second;
            return Err(throttled(
                tenant,
                "samples_per_second",
                rate_message(tenant, &s.limits),
                wait,
            ));
        }
        Ok(())
    }

    /// After parsing: takes `samples` from the bucket and records `series` as active,
    /// or refuses the whole request and takes nothing.
    pub fn admit(&self, tenant: &str, samples: usize, series: &[u64]) -> Result<(), ApiError> {
        if !self.limited {
            return Ok(());
        }
        let st = self.state(tenant);
        let mut s = lock(&st);
        let minute = self.minute();
        let l = s.limits;
        if l.samples_per_second > 0.0 {
            s.refill();
            if samples as u64 > l.burst {
                metrics::counter!("weir_gateway_tenant_throttled_total", "tenant" => tenant.to_string(), "limit" => "burst").increment(1);
                return Err(ApiError::too_large(format!(
                    "tenant {tenant}: a request of {samples} samples is larger than the tenant's burst of {} (gateway.tenants burst); send smaller requests",
                    l.burst
                )));
            }
            if s.tokens < samples as f64 {
                let wait = (samples as f64 - s.tokens) / l.samples_per_second;
                return Err(throttled(
                    tenant,
                    "samples_per_second",
                    rate_message(tenant, &l),
                    wait,
                ));
            }
        }
        let mut new = 0u64;
        if !series.is_empty() {
            let idle_minutes = (self.cfg.active_series_idle.as_secs() / 60).max(1) as u32;
            if s.swept != minute {
                s.series
                    .retain(|_, seen| minute.saturating_sub(*seen) < idle_minutes);
                s.swept = minute;
            }
            new = series.iter().filter(|h| !s.series.contains_key(h)).count() as u64;
            if l.max_active_series > 0 && s.series.len() as u64 + new > l.max_active_series {
                return Err(throttled(
                    tenant,
                    "max_active_series",
                    format!(
                        "tenant {tenant} is at its limit of {} active series (gateway.tenants max_active_series): {} active, this request adds {new}; series not written for {} stop counting",
                        l.max_active_series,
                        s.series.len(),
                        humantime::format_duration(self.cfg.active_series_idle)
                    ),
                    60.0,
                ));
            }
            if new > 0 && self.max_new_series_per_hour > 0 {
                let hour = self.started.elapsed().as_secs() / 3600;
                let mut g = match self.new_series.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                if g.0 != hour {
                    *g = (hour, 0);
                }
                if g.1 + new > self.max_new_series_per_hour {
                    let left = 3600 - self.started.elapsed().as_secs() % 3600;
                    return Err(throttled(
                        tenant,
                        "max_new_series_per_hour",
                        format!(
                            "the gateway admitted its limit of {} new series this hour (gateway.limits.max_new_series_per_hour); requests with known series still pass",
                            self.max_new_series_per_hour
                        ),
                        left as f64,
                    ));
                }
                g.1 += new;
            }
            for h in series {
                s.series.insert(*h, minute);
            }
            metrics::gauge!("weir_gateway_tenant_active_series", "tenant" => tenant.to_string())
                .set(s.series.len() as f64);
        }
        if l.samples_per_second > 0.0 {
            s.tokens -= samples as f64;
        }
        if new > 0 {
            metrics::counter!("weir_gateway_new_series_total").increment(new);
        }
        Ok(())
    }
}

impl TenantState {
    fn refill(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens =
            (self.tokens + dt * self.limits.samples_per_second).min(self.limits.burst as f64);
    }
}

fn lock(m: &Mutex<TenantState>) -> std::sync::MutexGuard<'_, TenantState> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn rate_message(tenant: &str, l: &TenantLimits) -> String {
    format!(
        "tenant {tenant} is over its limit of {} samples/s with a burst of {} (gateway.tenants samples_per_second)",
        l.samples_per_second, l.burst
    )
}

fn throttled(tenant: &str, limit: &'static str, message: String, wait_secs: f64) -> ApiError {
    metrics::counter!("weir_gateway_tenant_throttled_total", "tenant" => tenant.to_string(), "limit" => limit)
        .increment(1);
    let after = Duration::from_secs_f64(wait_secs.clamp(1.0, 3600.0).ceil());
    ApiError::retry(StatusCode::TOO_MANY_REQUESTS, message, after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_runtime::config::TenantLimitOverrides;

    fn limiter(rate: f64, burst: u64, series: u64) -> TenantLimiter {
        let mut cfg = TenantsConfig {
            defaults: TenantLimits {
                samples_per_second: rate,
                burst,
                max_active_series: series,
            },
            ..TenantsConfig::default()
        };
        cfg.overrides.insert(
            "big".into(),
            TenantLimitOverrides {
                samples_per_second: Some(1e9),
                burst: Some(1_000_000_000),
                max_active_series: Some(0),
            },
        );
        TenantLimiter::new(cfg, 0)
    }

    #[test]
    fn a_tenant_over_its_rate_is_refused_whole_and_others_pass() {
        let l = limiter(100.0, 1000, 0);
        l.admit("noisy", 1000, &[]).unwrap();
        let e = l.admit("noisy", 500, &[]).unwrap_err();
        assert_eq!(e.status, 429);
        assert!(e.message.contains("samples_per_second"), "{}", e.message);
        assert!(e.retry_after.unwrap() >= Duration::from_secs(1));
        assert_eq!(l.precheck("noisy").unwrap_err().status, 429);
        l.admit("quiet", 1000, &[]).unwrap();
        l.admit("big", 100_000_000, &[]).unwrap();
        let e = l.admit("quiet", 5000, &[]).unwrap_err();
        assert_eq!(e.status, 413, "a request above the burst can never pass");
    }

    #[test]
    fn active_series_are_limited_per_tenant_and_known_ones_pass() {
        let l = limiter(0.0, 0, 3);
        l.admit("a", 3, &[1, 2, 3]).unwrap();
        l.admit("a", 3, &[1, 2, 3]).unwrap();
        let e = l.admit("a", 1, &[4]).unwrap_err();
        assert_eq!(e.status, 429);
        assert!(e.message.contains("max_active_series"), "{}", e.message);
        l.admit("b", 3, &[4, 5, 6]).unwrap();
    }

    #[test]
    fn without_limits_nothing_is_tracked() {
        let l = TenantLimiter::new(TenantsConfig::default(), 0);
        assert!(!l.tracks_series());
        l.admit("a", 1_000_000_000, &[1, 2, 3]).unwrap();
        l.precheck("a").unwrap();
        assert!(l.tenants.read().unwrap().is_empty());
    }

    #[test]
    fn the_new_series_guard_spans_tenants() {
        let l = TenantLimiter::new(TenantsConfig::default(), 4);
        assert!(l.tracks_series());
        l.admit("a", 2, &[1, 2]).unwrap();
        l.admit("b", 2, &[3, 4]).unwrap();
        let e = l.admit("c", 1, &[5]).unwrap_err();
        assert!(
            e.message.contains("max_new_series_per_hour"),
            "{}",
            e.message
        );
        l.admit("a", 2, &[1, 2]).unwrap();
    }
}
