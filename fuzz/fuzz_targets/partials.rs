//! Records of the alerter's repartition topic: decode, and what decodes round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_alerter::service::partials::StepRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = StepRecord::decode(data) {
        let again = StepRecord::decode(&r.encode()).expect("re-encoded record decodes");
        assert_eq!(again.encode(), r.encode());
    }
});
