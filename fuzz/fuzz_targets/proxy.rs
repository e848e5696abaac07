//! libFuzzer entry point of the `proxy` target; the body is `targets/proxy.rs`.
#![no_main]

#[path = "../targets/proxy.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
