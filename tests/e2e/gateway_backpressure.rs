//! Backpressure and broker trouble, driven deterministically with librdkafka's mock
//! cluster (slow or absent broker on demand): full budgets answer 429, an unreachable
//! broker 503, both with Retry-After, and nothing is acknowledged that Kafka did not.
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use weir_e2e::*;

fn push_body(metrics: usize, bytes_per_name: usize) -> serde_json::Value {
    let pad = "x".repeat(bytes_per_name);
    let now = now_ms();
    let ms: Vec<serde_json::Value> = (0..metrics)
        .map(|i| serde_json::json!({"name": format!("m_{i}_{pad}"), "value": i, "timestamp": now}))
        .collect();
    serde_json::json!({"labels": {"device": "d"}, "metrics": ms})
}

#[test]
fn a_full_in_flight_budget_answers_429_with_retry_after() {
    let mock = MockCluster::new(1).unwrap();
    let topo = TestTopology::with_kafka(
        &mock.bootstrap_servers(),
        "",
        2,
        "  delivery_timeout: 30s\n",
        "  limits: {max_body_bytes: 256KiB, max_decompressed_bytes: 256KiB, max_inflight_bytes: 512KiB}\n",
    );
    mock.create_topic(&topo.topic, 2, 1).unwrap();
    let gw = Gateway::start(&topo);
    // Acknowledgements now take 3 s, so the first request holds its budget that long.
    mock.broker_round_trip_time(1, Duration::from_secs(3))
        .unwrap();
    // ~180 KB, ~200 KB of records: one fits the budget (body and records), two do not.
    let body = push_body(1500, 100);
    let url = gw.url("/api/v1/push");
    let first = {
        let (url, body) = (url.clone(), body.clone());
        std::thread::spawn(move || {
            client()
                .post(url)
                .json(&body)
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // The first request holds its budget while Kafka takes its time to acknowledge.
    wait_until(
        "the first request in flight",
        Duration::from_secs(10),
        || metric(&gw, "weir_gateway_inflight_bytes ") > 0.0,
    );
    let r = client().post(&url).json(&body).send().unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.text().unwrap().contains("in-flight limit"));
    assert_eq!(
        first.join().unwrap(),
        200,
        "the first request completes once Kafka acknowledges"
    );
}

#[test]
fn a_full_producer_queue_answers_429() {
    let mock = MockCluster::new(1).unwrap();
    let topo = TestTopology::with_kafka(
        &mock.bootstrap_servers(),
        "  producer: {queue.buffering.max.messages: '2'}\n",
        8,
        "  delivery_timeout: 30s\n",
        "",
    );
    mock.create_topic(&topo.topic, 8, 1).unwrap();
    let gw = Gateway::start(&topo);
    mock.broker_round_trip_time(1, Duration::from_secs(2))
        .unwrap();
    // 200 series spread over all 8 partitions: 8 records, more than the queue holds.
    let r = client()
        .post(gw.url("/api/v1/push"))
        .json(&push_body(200, 1))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert!(r.text().unwrap().contains("producer queue is full"));
}

#[test]
fn a_broker_that_stops_acknowledging_answers_503_and_readiness_follows() {
    let mock = MockCluster::new(1).unwrap();
    let topo = TestTopology::with_kafka(
        &mock.bootstrap_servers(),
        "",
        1,
        "  delivery_timeout: 2s\n",
        "",
    );
    mock.create_topic(&topo.topic, 1, 1).unwrap();
    let gw = Gateway::start(&topo);
    let http = client();
    let ok = http
        .post(gw.url("/api/v1/push"))
        .json(&push_body(3, 1))
        .send()
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);

    mock.broker_down(1).unwrap();
    let r = http
        .post(gw.url("/api/v1/push"))
        .json(&push_body(3, 1))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().get("retry-after").is_some());
    assert!(r.text().unwrap().contains("did not acknowledge"));
    // The metadata watcher notices too: /readyz goes 503 within its period.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = http
            .get(gw.url("/readyz"))
            .send()
            .unwrap()
            .status()
            .as_u16();
        if s == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz stayed {s} with the broker down"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    mock.broker_up(1).unwrap();
    gw.wait_ready(Duration::from_secs(30));
    let again = http
        .post(gw.url("/api/v1/push"))
        .json(&push_body(3, 1))
        .send()
        .unwrap();
    assert_eq!(
        again.status().as_u16(),
        200,
        "serves again once the broker is back"
    );
}
