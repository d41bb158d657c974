//! Series keys as the late topic and the rollup parse them back: what parses writes to
//! a key that parses to the same series.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_contract::series_key::{parse_key, write_key};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((name, labels)) = parse_key(s) {
        let mut key = String::new();
        write_key(&mut key, &name, &labels);
        assert_eq!(parse_key(&key), Some((name, labels)));
    }
});
