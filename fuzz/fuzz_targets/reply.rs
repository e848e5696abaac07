//! libFuzzer entry point of the `reply` target; the body is `targets/reply.rs`.
#![no_main]

#[path = "../targets/reply.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
