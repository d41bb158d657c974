//! The rollup end to end: records on a tansu topic → `weir rollup` → ClickHouse tiers,
//! compared row by row with a batch computation over the same samples; then a replay, a
//! rollup killed three times, and a two-member group losing a member — each must end with
//! exactly the same rows.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rdkafka::producer::Producer;
use weir_e2e::rollup::*;
use weir_e2e::*;

#[test]
fn rollup_rows_equal_the_batch_computation_and_a_replay_reproduces_them() {
    ensure_stack();
    let p = Pipeline::new();
    let data = p.data();
    let (expected, late) = p.expected(&data);
    assert!(late > 0);
    // A poison record first in partition 1: dead-lettered, everything after it rolled up.
    let poison = producer();
    send(&poison, &p.raw, 1, b"\xC3\x01 not avro at all");
    poison.flush(Duration::from_secs(10)).unwrap();
    produce(&p.raw, &data, &p.prefix);
    let rollup = p.rollup("rollups");
    p.assert_exact(&expected, Duration::from_secs(120));
    let dead = read_topic(&p.dlq, 1, Duration::from_secs(30), |r| !r.is_empty());
    assert_eq!(
        dead.len(),
        1,
        "the poison record is on the dead-letter topic"
    );
    assert_eq!(dead[0].payload, b"\xC3\x01 not avro at all");
    // Late samples went to the late topic, in metrics.raw's format. The side topic is
    // at least once: a partition read again after the startup rebalance sends its late
    // samples again, so the distinct ones are counted.
    let late_records = read_topic(&p.late, 1, Duration::from_secs(30), |r| {
        distinct_samples(r).len() >= late
    });
    assert_eq!(
        distinct_samples(&late_records).len(),
        late,
        "every late sample on the late topic, and nothing else"
    );
    assert!(sample_count(&late_records) >= late);
    assert!(metric(&rollup, "weir_rollup_rows_total{tier=\"1m\"} ") > 0.0);
    // Every row also went to its tier's topic as single-object Avro, keyed by series.
    let hours = expected.keys().filter(|k| k.0 == 2).count();
    let records = read_topic(&p.tier_topics[2], 2, Duration::from_secs(30), |r| {
        r.len() >= hours
    });
    let fingerprint = weir_contract::avro::rollup_fingerprint().to_le_bytes();
    for r in &records {
        assert_eq!(&r.payload[..2], &[0xC3, 0x01]);
        assert_eq!(&r.payload[2..10], &fingerprint);
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        assert!(
            r.payload.windows(key.len()).any(|w| w == key.as_bytes()),
            "keyed by its series"
        );
    }
    assert!(rollup.terminate().success());

    // Replay: a fresh group reads metrics.raw from the beginning into the same tables.
    let before = without_sentinels(p.rows());
    let replay = p.rollup("replay");
    wait_until(
        "the replay to write its rows",
        Duration::from_secs(120),
        || {
            metric(&replay, "weir_rollup_rows_total{tier=\"1h\"} ")
                >= (expected.keys().filter(|k| k.0 == 2).count() as f64)
        },
    );
    p.assert_exact(&expected, Duration::from_secs(60));
    assert_eq!(
        without_sentinels(p.rows()),
        before,
        "the replay reproduced every row"
    );
    // None doubled: once ClickHouse merged, one row per series and window (a merge may
    // still be running when OPTIMIZE is asked, so ask until it has happened).
    let sentinels = p.rows().len() - before.len();
    wait_until(
        "ClickHouse to merge the replayed rows into one per series and window",
        Duration::from_secs(60),
        || {
            p.optimize();
            p.stored_rows() == before.len() + sentinels
        },
    );
    drop(replay);
}

#[test]
fn a_rollup_killed_three_times_ends_with_the_same_rows() {
    ensure_stack();
    let p = Pipeline::new();
    let data = p.data();
    let (expected, _) = p.expected(&data);
    // Four chunks of the data set; a kill while each of the first three is read.
    let longest = data.iter().map(|d| d.1.len()).max().unwrap_or(0);
    let chunk = longest.div_ceil(4);
    let mut rng = rand::rng();
    let mut rollup = p.rollup("rollups");
    for kill in 1..=3 {
        produce_part(&p.raw, &data, (kill - 1) * chunk..kill * chunk);
        // A random point: after this process read a random number of samples.
        let point = rng.random_range(500.0..5_000.0);
        wait_until("the rollup reading", Duration::from_secs(60), || {
            read(&rollup) >= point
        });
        eprintln!("killing the rollup after {point:.0} samples ({kill} of 3)");
        rollup.kill9();
        rollup = start_owning_all(
            || p.rollup("rollups"),
            p.group("rollups"),
            4,
            Duration::from_secs(120),
        );
    }
    produce_part(&p.raw, &data, 3 * chunk..longest);
    produce_sentinels(&p.raw, &data, &p.prefix);
    p.assert_exact(&expected, Duration::from_secs(120));
    drop(rollup);
}

#[test]
fn two_rollups_one_stopped_mid_run_end_with_the_same_rows() {
    ensure_stack();
    let p = Pipeline::new();
    let data = p.data();
    let (expected, _) = p.expected(&data);
    let stop = Arc::new(AtomicBool::new(false));
    let first = p.rollup("rollups");
    let second = p.rollup("rollups");
    // The first half; the second member leaves before the second half arrives.
    let longest = data.iter().map(|d| d.1.len()).max().unwrap_or(0);
    produce_part(&p.raw, &data, 0..longest / 2);
    wait_until("both members reading", Duration::from_secs(60), || {
        read(&first) > 0.0 && read(&second) > 0.0
    });
    assert!(
        !stop.load(Ordering::Relaxed),
        "stopped mid-run, while records still arrive"
    );
    assert!(second.terminate().success());
    produce_part(&p.raw, &data, longest / 2..longest);
    produce_sentinels(&p.raw, &data, &p.prefix);
    stop.store(true, Ordering::Relaxed);
    p.assert_exact(&expected, Duration::from_secs(120));
    drop(first);
}

#[test]
fn rows_older_than_a_tiers_retention_are_dropped_by_partition() {
    ensure_stack();
    let p = Pipeline::new();
    let rollup = p.rollup("rollups");
    // The rollup created the tables; put in a row 40 days old and one from now.
    let day = 86_400;
    let now = now_ms() / 1000;
    for (series, ws) in [("old", now - 40 * day), ("new", now)] {
        clickhouse(&format!(
            "INSERT INTO {}.rollup_1m (series, metric, window_start, window_end, count, version) VALUES ('{}_{series}', 'm', {ws}, {}, 1, 1)",
            p.database,
            p.prefix,
            ws + 60
        ));
    }
    let count = |series: &str| -> usize {
        clickhouse(&format!(
            "SELECT count() FROM {}.rollup_1m WHERE series = '{}_{series}'",
            p.database, p.prefix
        ))
        .trim()
        .parse()
        .unwrap()
    };
    // Retention is 30 days in the test topology, checked every 2 s.
    wait_until(
        "the 40-day-old partition dropped",
        Duration::from_secs(60),
        || count("old") == 0,
    );
    assert_eq!(count("new"), 1, "rows within the retention stay");
    drop(rollup);
}
