//! Which keys of the configuration differ between two configurations, and which of them a
//! running MTA cannot take without a restart.
//!
//! What it does: [`changed_keys`] compares two configurations key by key (through their TOML
//! form, so that every key is covered without a list to keep up to date) and names each leaf
//! that differs as a dotted key (`spool.path`, `listeners[0].address`); [`needs_restart`] says
//! whether a changed key is one that SIGHUP does not apply.
//!
//! What it does not do: no reloading (the shard's `reload` applies the rest), no logging.
//!
//! Invariants: [`RESTART_ONLY`] names exactly the keys that are read only at start; a key
//! named there is never applied by a reload, and every other key is.

use toml::Value;

use super::Config;

/// Keys (or whole sections) that take effect only at the next restart; `[]` stands for any
/// index. `listeners` alone means the number of listeners changed.
pub const RESTART_ONLY: &[&str] = &[
    "shards",
    "io_memory",
    "listeners",
    "listeners[].address",
    "listeners[].mode",
    "spool.path",
    "spool.sync",
    "spool.segment_size",
    "spool.preallocate",
    "delivery.memory_budget",
    "dns",
    "log.dir",
    "admin.listen",
    "dkim.enabled",
    "cluster",
    "suppression.enabled",
    "suppression.path",
    "suppression.hard_bounce_classes",
    "suppression.hard_bounce_expiry",
    "suppression.compact_size",
    "delivery.tls_policy.tls_rpt",
    "webhooks",
    "webhooks[]",
    "feedback",
];

/// The dotted keys whose values differ between `old` and `new`, in alphabetical order of
/// their sections and keys. A table array (`listeners`, `routes`, ...) of the same length is compared
/// entry by entry (`routes[1].hosts`); one whose length changed is named whole, and so is an
/// array of plain values (`relay.local_domains`).
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    match (Value::try_from(old), Value::try_from(new)) {
        (Ok(a), Ok(b)) => diff("", Some(&a), Some(&b), &mut out),
        // Cannot happen (the configuration always serializes); say everything may differ.
        _ => out.push(String::new()),
    }
    out
}

/// True when a change of `key` (as [`changed_keys`] names it) takes effect only at the next
/// restart.
pub fn needs_restart(key: &str) -> bool {
    let key = without_indices(key);
    RESTART_ONLY.iter().any(|p| {
        key == *p
            || key
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The changed keys between `old` and `new` that need a restart.
pub fn restart_keys(old: &Config, new: &Config) -> Vec<String> {
    changed_keys(old, new)
        .into_iter()
        .filter(|k| needs_restart(k))
        .collect()
}

fn diff(key: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<String>) {
    match (a, b) {
        (Some(Value::Table(x)), Some(Value::Table(y))) => {
            let mut names: Vec<&String> = x.keys().collect();
            names.extend(y.keys().filter(|k| !x.contains_key(*k)));
            for name in names {
                let sub = match key.is_empty() {
                    true => name.clone(),
                    false => format!("{key}.{name}"),
                };
                diff(&sub, x.get(name), y.get(name), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y)))
            if x.len() == y.len() && x.iter().chain(y).all(Value::is_table) =>
        {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{key}[{i}]"), Some(p), Some(q), out);
            }
        }
        (a, b) if a != b => out.push(key.to_owned()),
        _ => {}
    }
}

/// `listeners[0].address` as `listeners[].address`.
fn without_indices(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Config {
        Config::parse(&format!(
            "hostname = \"mx.test\"\n[[listeners]]\naddress = \"127.0.0.1:25\"\n{extra}"
        ))
        .expect("valid test configuration")
    }

    #[test]
    fn names_each_changed_leaf() {
        let a = parse(
            "[smtp]\nmax_connections_per_ip = 20\n[smtp.timeouts]\ncommand = \"5m\"\n\
             [[routes]]\ndomain = \"a.test\"\nhosts = [\"127.0.0.1:26\"]\n",
        );
        assert!(changed_keys(&a, &a.clone()).is_empty());
        let b = parse(
            "[smtp]\nmax_connections_per_ip = 1\n[smtp.timeouts]\ncommand = \"1s\"\n\
             [relay]\nlocal_domains = [\"a.test\"]\n\
             [[routes]]\ndomain = \"a.test\"\nhosts = [\"127.0.0.1:26\"]\nmax_connections = 3\n\
             [spool]\npath = \"/elsewhere\"\n[admin]\ntoken = \"t\"\n",
        );
        assert_eq!(
            changed_keys(&a, &b),
            [
                "admin.token",
                "relay.local_domains",
                "routes[0].max_connections",
                "smtp.max_connections_per_ip",
                "smtp.timeouts.command",
                "spool.path",
            ]
        );
        // Only the spool's path needs a restart.
        assert_eq!(restart_keys(&a, &b), ["spool.path"]);
    }

    #[test]
    fn listener_addresses_and_counts_need_a_restart_their_settings_do_not() {
        let a = parse("");
        let mut b = a.clone();
        b.listeners[0].auth_plaintext = true;
        b.listeners[0].proxy_protocol = true;
        assert_eq!(
            changed_keys(&a, &b),
            ["listeners[0].auth_plaintext", "listeners[0].proxy_protocol"]
        );
        assert!(restart_keys(&a, &b).is_empty());
        b.listeners[0].address = "127.0.0.1:26".parse().unwrap();
        assert_eq!(restart_keys(&a, &b), ["listeners[0].address"]);
        b.listeners.push(b.listeners[0].clone());
        assert_eq!(restart_keys(&a, &b), ["listeners"]);
    }

    #[test]
    fn restart_only_keys() {
        for key in [
            "shards",
            "io_memory",
            "listeners",
            "listeners[3].mode",
            "spool.sync",
            "dns.servers",
            "dns",
            "log.dir",
            "admin.listen",
            "delivery.memory_budget",
            "dkim.enabled",
            "delivery.tls_policy.tls_rpt.enabled",
            "delivery.tls_policy.tls_rpt.report_interval",
            "webhooks",
            "webhooks[0].url",
        ] {
            assert!(needs_restart(key), "{key}");
        }
        for key in [
            "hostname",
            "listeners[0].auth_plaintext",
            "listeners[0].proxy_from",
            "spool.min_free_space",
            "smtp.timeouts.greeting",
            "delivery.retry.first",
            "delivery.helo_name",
            "delivery.timeouts.connect",
            "dnssec",
            "log.rotate_size",
            "admin.allow",
            "admin.token",
            "dkim.keys",
            "tls.certificates",
            "auth.users_file",
        ] {
            assert!(!needs_restart(key), "{key}");
        }
    }

    #[test]
    fn a_key_set_or_unset_counts_as_changed() {
        let a = parse("");
        let b = parse("[delivery]\nhelo_name = \"out.mx.test\"\n");
        assert_eq!(changed_keys(&a, &b), ["delivery.helo_name"]);
        assert_eq!(changed_keys(&b, &a), ["delivery.helo_name"]);
    }
}
