//! JSON push through the gateway's batch builder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_ingest::testing::run;
use weir_gateway::protocols::json_push::parse;

fuzz_target!(|data: &[u8]| {
    let _ = run(|b| parse(data, 1_700_000_000_000, b));
});
