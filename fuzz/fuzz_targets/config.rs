//! libFuzzer entry point of the `config` target; the body is `targets/config.rs`.
#![no_main]

#[path = "../targets/config.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
