//! Influx line protocol through the gateway's batch builder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_ingest::testing::run;
use weir_gateway::protocols::influx::{parse, Precision};

fuzz_target!(|data: &[u8]| {
    let _ = run(|b| parse(data, Precision::Nanos, 1_700_000_000_000, 1_000, b));
});
