//! Remote write: a snappy block, then the WriteRequest protobuf, through the gateway's
//! real batch builder. No panic; allocation bounded (the runner's malloc limit); every
//! record the builder makes decodes again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_ingest::testing::run;
use weir_ingest::Reservation;
use weir_gateway::protocols::remote_write;

fuzz_target!(|data: &[u8]| {
    // Both the compressed form and the input as an already decompressed body.
    if let Ok(plain) = weir_gateway::body::snappy(data, 4 << 20, &mut Reservation::standalone(16 << 20)) {
        let _ = run(|b| remote_write::parse(&plain, b));
    }
    let _ = run(|b| remote_write::parse(data, b));
});
