//! Fuzz body: the configuration (TOML text into `Config::parse`, which validates).
//!
//! Checks: no panic on any text; a configuration that loads answers `effective_shards` and
//! `route_for`, and validates again.

use mta::config::Config;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text) else {
        return;
    };
    assert!(config.effective_shards() >= 1);
    for domain in [
        "example.com",
        "EXAMPLE.COM",
        "",
        "a.b.example.com",
        "[127.0.0.1]",
    ] {
        let _ = config.route_for(domain);
    }
    assert!(
        config.validate().is_ok(),
        "a loaded configuration validates again"
    );
}
