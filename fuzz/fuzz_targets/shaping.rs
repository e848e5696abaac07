//! libFuzzer entry point of the `shaping` target; the body is `targets/shaping.rs`.
#![no_main]

#[path = "../targets/shaping.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
