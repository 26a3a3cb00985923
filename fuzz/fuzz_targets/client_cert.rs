#![no_main]
// The body lives in the product crate, shared with its corpus test (tests/fuzz_corpus.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tether_tls::fuzzing::client_cert(data);
});
