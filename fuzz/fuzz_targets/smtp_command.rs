//! libFuzzer entry point of the `smtp_command` target; the body is `targets/smtp_command.rs`.
#![no_main]

#[path = "../targets/smtp_command.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
