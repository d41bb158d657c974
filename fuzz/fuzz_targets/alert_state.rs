//! Records of the alerter's compacted state topic (alerts and progress).
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_alerter::service::state::{decode_alert, decode_progress, encode_alert, encode_progress};

fuzz_target!(|data: &[u8]| {
    if let Ok((rule, alert)) = decode_alert(data) {
        let bytes = encode_alert(&rule, &alert);
        let (rule2, alert2) = decode_alert(&bytes).expect("re-encoded alert decodes");
        assert_eq!(rule2, rule);
        assert_eq!(encode_alert(&rule2, &alert2), bytes);
    }
    if let Ok(p) = decode_progress(data) {
        let bytes = encode_progress(&p);
        assert_eq!(encode_progress(&decode_progress(&bytes).expect("decodes")), bytes);
    }
});
