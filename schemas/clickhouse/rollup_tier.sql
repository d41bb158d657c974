-- One table per rollup tier (`weir rollup` creates them at start: {database}, {table}
-- and {partition_by} are filled in per tier). Works on ClickHouse 18.16 and current
-- servers: no TTL, DateTime64, LowCardinality or SimpleAggregateFunction.
--
-- Rows are idempotent: a window written again (a correction within the allowed lateness,
-- a restart) has the same (series, window_start) and a count at least as high, and
-- ReplacingMergeTree keeps the row with the highest `version`: the recomputation
-- generation in the high 32 bits (0 live; `weir replay --into rollup` writes a newer one,
-- so a recomputed row replaces the old even with fewer samples), the count in the low 32.
-- Read with FINAL (or argMax by version) to see exactly one row per series and window
-- before merges.
--
-- Retention: `weir rollup` drops whole partitions older than the tier's retention (the
-- 18.16 server has no TTL); partitions are days for short retentions, months otherwise.
CREATE TABLE IF NOT EXISTS {database}.{table}
(
    series       String,
    metric       String,
    window_start DateTime,
    window_end   DateTime,
    count        UInt64,
    sum          Float64,
    min          Float64,
    max          Float64,
    first        Float64,
    first_ts     Int64,
    last         Float64,
    last_ts      Int64,
    increase     Float64,
    p50          Float64,
    p90          Float64,
    p95          Float64,
    p99          Float64,
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY {partition_by}
ORDER BY (series, window_start)
