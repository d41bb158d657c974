//! Tenants downstream: which tenant a series belongs to, and where its requests go.
//!
//! With `tsdb_writer.tenancy` off there is one route, the group's sink, and nothing here
//! costs more than a branch. On, a series' tenant is its contract `tenant` field, else
//! its tenant label, else the default tenant; each tenant gets a route (its own sink, or
//! the group's sink with `{tenant}` replaced by its id) the first time it is seen. A
//! batch holding several tenants is cut into one request per tenant, so no request ever
//! mixes two tenants' series.
//!
//! A series whose tenant cannot be routed — a value that could leave its URL path, or a
//! tenant past `max_tenants` — goes to the dead-letter topic with the reason, rather than
//! to another tenant or the default one.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use weir_contract::avro::{BatchEncoder, SeriesRef};
use weir_contract::Sample;
use weir_runtime::config::{check_tenant_id, TenancyConfig, Topology};

use crate::sink::{RemoteWriteSink, Target};

/// Where one tenant's requests go.
pub struct Route {
    /// Empty with tenancy off.
    pub tenant: String,
    pub sink: Arc<RemoteWriteSink>,
    pub target: Target,
}

/// Why a series has no route.
#[derive(Debug, Clone, PartialEq)]
pub struct Unroutable {
    pub kind: &'static str,
    pub message: String,
}

pub struct Router {
    /// `None`: tenancy off, every series takes route 0.
    cfg: Option<TenancyConfig>,
    default_sink: Arc<RemoteWriteSink>,
    tenant_sinks: HashMap<String, Arc<RemoteWriteSink>>,
    index: HashMap<String, u32>,
    routes: Vec<Arc<Route>>,
}

impl Router {
    /// The routes of `topology`'s writer, whose group sink is `sink`.
    pub fn new(
        topology: &Topology,
        sink: RemoteWriteSink,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let sink = Arc::new(sink);
        let cfg = &topology.tsdb_writer.tenancy;
        if !cfg.enabled {
            return Ok(Self::single(sink));
        }
        let mut tenant_sinks = HashMap::new();
        for (tenant, name) in &cfg.sinks {
            let spec = topology.sinks.get(name).ok_or_else(|| {
                anyhow::anyhow!("tsdb_writer.tenancy.sinks.{tenant}: no sink {name:?}")
            })?;
            let s = RemoteWriteSink::new(spec, timeout)
                .map_err(|e| e.context(format!("tsdb_writer.tenancy.sinks.{tenant}")))?;
            tenant_sinks.insert(tenant.clone(), Arc::new(s));
        }
        Ok(Self {
            cfg: Some(cfg.clone()),
            default_sink: sink,
            tenant_sinks,
            index: HashMap::new(),
            routes: Vec::new(),
        })
    }

    /// One route, `sink`, for every series.
    pub fn single(sink: Arc<RemoteWriteSink>) -> Self {
        let target = sink
            .target("")
            .expect("an untemplated sink has a fixed target");
        let route = Arc::new(Route {
            tenant: String::new(),
            sink: sink.clone(),
            target,
        });
        Self {
            cfg: None,
            default_sink: sink,
            tenant_sinks: HashMap::new(),
            index: HashMap::new(),
            routes: vec![route],
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.is_some()
    }

    /// The group's sink as logs may show it.
    pub fn shown_url(&self) -> &str {
        self.default_sink.shown_url()
    }

    pub fn route(&self, i: u32) -> &Arc<Route> {
        &self.routes[i as usize]
    }

    /// The route of series `s`, made when its tenant is new.
    pub fn route_of(&mut self, s: &SeriesRef<'_, '_>) -> Result<u32, Unroutable> {
        let Some(cfg) = &self.cfg else {
            return Ok(0);
        };
        let tenant = s
            .tenant
            .filter(|t| !t.is_empty())
            .or_else(|| {
                s.labels
                    .iter()
                    .find(|(n, _)| *n == cfg.label)
                    .map(|(_, v)| *v)
            })
            .unwrap_or(&cfg.default_tenant);
        if let Some(i) = self.index.get(tenant) {
            return Ok(*i);
        }
        if self.routes.len() >= cfg.max_tenants {
            return Err(Unroutable {
                kind: "too_many_tenants",
                message: format!(
                    "tenant {:?} is past tsdb_writer.tenancy.max_tenants ({}) distinct tenants",
                    weir_contract::names::cut(tenant),
                    cfg.max_tenants
                ),
            });
        }
        let id = cfg.ids.get(tenant).map(String::as_str).unwrap_or(tenant);
        check_tenant_id(id).map_err(|message| Unroutable {
            kind: "invalid_tenant",
            message,
        })?;
        let sink = self
            .tenant_sinks
            .get(tenant)
            .unwrap_or(&self.default_sink)
            .clone();
        let target = sink.target(id).map_err(|e| Unroutable {
            kind: "invalid_tenant",
            message: format!("tenant {tenant:?}: {e}"),
        })?;
        let i = self.routes.len() as u32;
        self.routes.push(Arc::new(Route {
            tenant: tenant.to_string(),
            sink,
            target,
        }));
        self.index.insert(tenant.to_string(), i);
        tracing::info!(
            tenant,
            url = self.routes[i as usize].target.shown_url(),
            "new tenant route"
        );
        Ok(i)
    }
}

/// Series of one record that had no route, gathered into one dead letter.
#[derive(Default)]
pub struct Unrouted {
    enc: BatchEncoder,
    first: Option<Unroutable>,
    samples: usize,
}

impl Unrouted {
    pub fn push(&mut self, s: &SeriesRef<'_, '_>, samples: &[Sample], why: Unroutable) {
        self.enc.push_parts(
            s.name,
            s.labels.iter().copied(),
            samples,
            s.metric_type,
            s.unit,
            s.tenant,
        );
        self.samples += samples.len();
        self.first.get_or_insert(why);
    }

    /// The dead letter of the record, if any series of it had no route: payload, kind,
    /// message.
    pub fn finish(&mut self) -> Option<(Vec<u8>, &'static str, String)> {
        let why = self.first.take()?;
        let samples = std::mem::take(&mut self.samples);
        metrics::counter!("weir_tsdb_writer_samples_total", "outcome" => "unroutable")
            .increment(samples as u64);
        Some((
            self.enc.finish(),
            why.kind,
            format!(
                "{samples} sample(s) of series without a tenant route, first: {}",
                why.message
            ),
        ))
    }

    /// Forgets what a record that then failed to decode pushed.
    pub fn reset(&mut self) {
        if self.first.take().is_some() {
            self.samples = 0;
            drop(self.enc.finish());
        }
    }
}
