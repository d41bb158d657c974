//! Allocator settings for the binaries, which use mimalloc.

/// `mi_option_purge_delay` in mimalloc 2's `mi_option_e` (the Rust bindings do not name
/// it; it follows `mi_option_eager_commit_delay`, 14).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for a second before returning it to the OS. With mimalloc's 10 ms
/// default the window engine, which frees and reallocates record buffers and window
/// state continuously, spent a quarter of its CPU faulting fresh zeroed pages back in
/// (`clear_page_erms`); a second of delay removed that and bounds the extra resident
/// memory to about a second's worth of churn.
pub fn tune() {
    // SAFETY: setting an option is allowed at any time; mimalloc reads it when it purges.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
}
