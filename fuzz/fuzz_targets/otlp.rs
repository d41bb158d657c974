//! OTLP/HTTP bodies (the first byte picks OTLP JSON or protobuf) through the translation
//! into the gateway's batch builder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_ingest::testing::run;
use weir_gateway::protocols::otlp::{parse, Translation};

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let t = Translation {
        promote: vec!["k8s.namespace.name".into()],
        ..Default::default()
    };
    let _ = run(|b| parse(body, first & 1 == 1, &t, b));
});
