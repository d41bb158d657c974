//! ClickHouse: one ReplacingMergeTree table per tier (DDL from `schemas/clickhouse`),
//! rows versioned by their count so a window written again replaces its row, and
//! retention by dropping whole partitions (the 18.16 server has no TTL).
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use weir_contract::avro::RollupRecord;
use weir_runtime::config::TierConfig;

use super::metric_of;

const TIER_DDL: &str = include_str!("../../../../schemas/clickhouse/rollup_tier.sql");

/// Day partitions while a tier keeps rows up to this long, month partitions beyond.
const DAILY_UP_TO: Duration = Duration::from_secs(62 * 86_400);

#[derive(Debug, Clone, Serialize, clickhouse::Row)]
pub struct ChRow {
    pub series: String,
    pub metric: String,
    pub window_start: u32,
    pub window_end: u32,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: f64,
    pub first_ts: i64,
    pub last: f64,
    pub last_ts: i64,
    pub increase: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub version: u64,
}

impl ChRow {
    /// The row of `r`, written by recomputation `generation` (0 for the live rollup).
    pub fn from_record(r: &RollupRecord<'_>, generation: u32) -> Self {
        Self {
            series: r.series.to_string(),
            metric: metric_of(r.series).to_string(),
            window_start: (r.window_start / 1000).max(0) as u32,
            window_end: (r.window_end / 1000).max(0) as u32,
            count: r.count as u64,
            sum: r.sum,
            min: r.min,
            max: r.max,
            first: r.first,
            first_ts: r.first_ts,
            last: r.last,
            last_ts: r.last_ts,
            increase: r.increase,
            p50: r.p50,
            p90: r.p90,
            p95: r.p95,
            p99: r.p99,
            version: version(generation, r.count as u64),
        }
    }
}

/// A row's ReplacingMergeTree version: the recomputation generation first, so a replay's
/// row replaces the live one even when it holds fewer samples (a fixed double count);
/// then the sample count, so within one run a window written again from fewer records
/// (re-read after a restart, part of it before the resumed offset) never replaces the
/// complete row.
pub fn version(generation: u32, count: u64) -> u64 {
    ((generation as u64) << 32) | count.min(u32::MAX as u64)
}

/// The partition expression of a tier's table.
pub fn partition_by(retention: Duration) -> &'static str {
    if retention <= DAILY_UP_TO {
        "toYYYYMMDD(window_start)"
    } else {
        "toYYYYMM(window_start)"
    }
}

/// The DDL of one tier's table.
pub fn ddl(database: &str, tier: &TierConfig) -> String {
    TIER_DDL
        .replace("{database}", database)
        .replace("{table}", &tier.table())
        .replace("{partition_by}", partition_by(tier.retention))
}

pub struct ClickHouseSink {
    server: clickhouse::Client,
    client: clickhouse::Client,
    database: String,
    tiers: Vec<TierConfig>,
    generation: u32,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct PartRow {
    partition: String,
}

/// How to reach ClickHouse: the sink's URL, database, credentials and TLS.
#[derive(Debug, Clone)]
pub struct ClickHouseTarget {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    /// Resolved (`env:VAR` read).
    pub password: Option<String>,
    pub tls: weir_runtime::config::TlsClientOptions,
}

impl ClickHouseTarget {
    pub fn of(spec: &weir_runtime::config::SinkSpec) -> anyhow::Result<Self> {
        let weir_runtime::config::SinkSpec::ClickHouse {
            url,
            database,
            user,
            password,
            tls,
        } = spec
        else {
            anyhow::bail!("not a clickhouse sink");
        };
        let password = password
            .as_deref()
            .map(weir_runtime::config::resolve_secret)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        Ok(Self {
            url: url.clone(),
            database: database.clone(),
            user: user.clone(),
            password,
            tls: tls.clone(),
        })
    }
}

impl ClickHouseSink {
    pub fn new(t: &ClickHouseTarget, tiers: Vec<TierConfig>) -> anyhow::Result<Self> {
        // The crate's own TLS features pick their roots and provider themselves; ours
        // is the one config every sink shares (CA bundle, client certificate,
        // insecure_skip_verify), handed to hyper-rustls.
        let tls = weir_runtime::tls::client_config(&t.tls)
            .map_err(|e| anyhow::anyhow!("clickhouse sink TLS: {e}"))?;
        if t.tls.insecure_skip_verify {
            tracing::warn!("clickhouse sink: tls.insecure_skip_verify is on: the server's certificate is not checked");
        }
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_keepalive(Some(std::time::Duration::from_secs(60)));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let hyper =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                // ClickHouse closes idle connections after 3 s.
                .pool_idle_timeout(std::time::Duration::from_secs(2))
                .build(https);
        // The server checks nothing the crate would validate on 18.16 (no
        // RowBinaryWithNamesAndTypes there): validation off, as the local notes say.
        let mut server = clickhouse::Client::with_http_client(hyper)
            .with_url(&t.url)
            .with_validation(false);
        if let Some(u) = &t.user {
            server = server.with_user(u);
        }
        if let Some(p) = &t.password {
            server = server.with_password(p);
        }
        let client = server.clone().with_database(&t.database);
        Ok(Self {
            server,
            client,
            database: t.database.clone(),
            tiers,
            generation: 0,
        })
    }

    /// Rows written as recomputation `generation` (a replay), which replace every row of
    /// an earlier generation.
    pub fn with_generation(mut self, generation: u32) -> Self {
        self.generation = generation;
        self
    }

    /// Creates the database and every tier's table if missing.
    pub async fn ensure_schema(&self) -> anyhow::Result<()> {
        self.server
            .query(&format!("CREATE DATABASE IF NOT EXISTS {}", self.database))
            .execute()
            .await
            .with_context(|| format!("creating ClickHouse database {}", self.database))?;
        for t in &self.tiers {
            self.server
                .query(&ddl(&self.database, t))
                .execute()
                .await
                .with_context(|| {
                    format!("creating ClickHouse table {}.{}", self.database, t.table())
                })?;
        }
        Ok(())
    }

    pub async fn write(&self, tier: usize, rows: &[RollupRecord<'_>]) -> anyhow::Result<()> {
        let Some(t) = self.tiers.get(tier) else {
            return Ok(());
        };
        if rows.is_empty() {
            return Ok(());
        }
        let table = t.table();
        let mut insert = self
            .client
            .insert::<ChRow>(&table)
            .await
            .with_context(|| format!("insert into {}.{table}", self.database))?;
        for r in rows {
            insert
                .write(&ChRow::from_record(r, self.generation))
                .await
                .with_context(|| format!("insert into {}.{table}", self.database))?;
        }
        insert
            .end()
            .await
            .with_context(|| format!("insert into {}.{table}", self.database))?;
        Ok(())
    }

    /// Drops every partition whose rows are all older than the tier's retention; returns
    /// how many.
    pub async fn enforce_retention(&self) -> anyhow::Result<usize> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        let mut dropped = 0;
        for t in &self.tiers {
            let parts: Vec<PartRow> = self
                .server
                .query("SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active")
                .bind(&self.database)
                .bind(t.table())
                .fetch_all()
                .await
                .with_context(|| format!("listing partitions of {}.{}", self.database, t.table()))?;
            let cutoff = now - t.retention.as_secs() as i64;
            for p in parts {
                let Some(end) = partition_end(&p.partition) else {
                    continue;
                };
                if end <= cutoff {
                    self.server
                        .query(&format!(
                            "ALTER TABLE {}.{} DROP PARTITION {}",
                            self.database,
                            t.table(),
                            p.partition
                        ))
                        .execute()
                        .await
                        .with_context(|| {
                            format!("dropping partition {} of {}", p.partition, t.table())
                        })?;
                    tracing::info!(table = %t.table(), partition = %p.partition, "dropped partition past retention");
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }
}

/// The end (exclusive, Unix seconds, UTC) of a `YYYYMMDD` or `YYYYMM` partition.
pub fn partition_end(p: &str) -> Option<i64> {
    let digits = p.trim_matches('\'');
    let (y, m, d) = match digits.len() {
        8 => (
            digits[..4].parse::<i64>().ok()?,
            digits[4..6].parse::<i64>().ok()?,
            Some(digits[6..].parse::<i64>().ok()?),
        ),
        6 => (digits[..4].parse().ok()?, digits[4..].parse().ok()?, None),
        _ => return None,
    };
    let day_number = |y: i64, m: i64, d: i64| -> i64 {
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    };
    let end_day = match d {
        Some(d) => day_number(y, m, d) + 1,
        None if m == 12 => day_number(y + 1, 1, 1),
        None => day_number(y, m + 1, 1),
    };
    Some(end_day * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_ends() {
        assert_eq!(partition_end("19700101"), Some(86_400));
        assert_eq!(partition_end("197001"), Some(31 * 86_400));
        assert_eq!(partition_end("202612"), partition_end("20261231"));
        assert_eq!(partition_end("x"), None);
    }

    #[test]
    fn ddl_fills_in_the_tier() {
        let t = TierConfig {
            name: "1h".into(),
            size: Duration::from_secs(3600),
            retention: Duration::from_secs(365 * 86_400),
            topic_override: None,
        };
        let d = ddl("weir", &t);
        assert!(d.contains("CREATE TABLE IF NOT EXISTS weir.rollup_1h"));
        assert!(d.contains("PARTITION BY toYYYYMM(window_start)"));
        assert!(d.contains("ReplacingMergeTree(version)"));
    }
}
