//! Commit metadata (the window engine's checkpoint), as any tool may have written it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_window::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let cp = Checkpoint::decode(s);
    assert_eq!(Checkpoint::decode(&cp.encode()), cp);
    let _ = cp.bounded(i64::MAX);
});
