//! Remote write 2.0 bodies (decompressed) through the gateway's batch builder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_ingest::testing::run;
use weir_gateway::protocols::remote_write::v2::parse;

fuzz_target!(|data: &[u8]| {
    let _ = run(|b| parse(data, b));
});
