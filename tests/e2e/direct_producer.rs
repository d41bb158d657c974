//! A Python producer (confluent-kafka + fastavro) writing straight to a topic, as
//! docs/producing.md tells users to: weir's decoder reads its records back identically,
//! and the series land on the partitions weir's partitioner computes.
use std::process::Command;
use std::time::Duration;

use weir_contract::{Label, MetricType, Sample, Series};
use weir_e2e::*;

#[test]
fn python_producer_records_decode_identically() {
    ensure_stack();
    let topo = TestTopology::new(6, "");
    topo.apply();
    let out = Command::new(python())
        .arg(repo_root().join("docs/examples/produce.py"))
        .args([
            "--bootstrap",
            &bootstrap(),
            "--topic",
            &topo.topic,
            "--series",
            "25",
            "--samples",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "produce.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sent.len(), 25);

    let records = read_topic(&topo.topic, topo.partitions, Duration::from_secs(30), |r| {
        r.len() >= 25
    });
    assert_eq!(records.len(), 25);
    let decoder = weir_contract::avro::Decoder::new();
    for r in &records {
        let batch = decoder
            .decode(&r.payload)
            .expect("weir decodes the Python record");
        assert_eq!(batch.series.len(), 1);
        let got = &batch.series[0];
        let key = String::from_utf8(r.key.clone().expect("keyed")).unwrap();
        assert_eq!(got.key(), key, "the Python series key is weir's series key");
        assert_eq!(
            weir_contract::partition_for_key(key.as_bytes(), topo.partitions) as i32,
            r.partition,
            "confluent-kafka's murmur2_random chose weir's partition for {key}"
        );
        let sent = sent
            .iter()
            .find(|s| s["key"] == key.as_str())
            .expect("sent");
        assert_eq!(sent["partition"], r.partition);
        let s = &sent["series"];
        let want = Series {
            name: s["name"].as_str().unwrap().into(),
            labels: s["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| Label::new(l["name"].as_str().unwrap(), l["value"].as_str().unwrap()))
                .collect(),
            samples: s["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    Sample::new(
                        x["timestamp"].as_i64().unwrap(),
                        x["value"].as_f64().unwrap(),
                    )
                })
                .collect(),
            metric_type: MetricType::Gauge,
            unit: Some("celsius".into()),
            tenant: None,
        };
        assert_eq!(got, &want);
    }
}
