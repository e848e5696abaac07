//! libFuzzer entry point of the `data_decoder` target; the body is `targets/data_decoder.rs`.
#![no_main]

#[path = "../targets/data_decoder.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
