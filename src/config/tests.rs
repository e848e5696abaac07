//! Tests of the configuration: defaults, units, errors naming keys, routes, and the
//! credential files `Config::load` reads.

use super::*;

#[test]
fn empty_file_is_the_defaults() {
    let c = Config::parse("").unwrap();
    assert_eq!(c.listeners[0].address.port(), 2525);
    assert_eq!(c.smtp.max_message_size, ByteSize::mib(25));
    assert_eq!(c.smtp.max_recipients, 1000);
    assert_eq!(c.spool.sync, SyncMode::Always);
}

#[test]
fn values_are_parsed_with_units() {
    let c =
        Config::parse("[smtp]\nmax_message_size = \"10MiB\"\n[smtp.timeouts]\ncommand = \"30s\"\n")
            .unwrap();
    assert_eq!(c.smtp.max_message_size.0, 10 << 20);
    assert_eq!(c.smtp.timeouts.command, HumanDuration::secs(30));
}

#[test]
fn errors_name_the_key() {
    let e = Config::parse("[smtp]\nmax_recipients = 0\n").unwrap_err();
    assert!(e.to_string().contains("smtp.max_recipients"), "{e}");
    let e = Config::parse("[smtp]\nmax_message_size = \"lots\"\n").unwrap_err();
    assert!(e.to_string().contains("max_message_size"), "{e}");
    let e = Config::parse("[smtp]\nmax_recipents = 3\n").unwrap_err();
    assert!(e.to_string().contains("max_recipents"), "{e}");
    let e = Config::parse("[relay]\nlocal_domains = [\"bad domain\"]\n").unwrap_err();
    assert!(e.to_string().contains("relay.local_domains"), "{e}");
}

#[test]
fn own_domains_need_a_route() {
    let e = Config::parse("[relay]\nlocal_domains = [\"a.test\"]\n").unwrap_err();
    assert!(e.to_string().contains("has no route"), "{e}");
    let c = Config::parse(
        "[relay]\nlocal_domains = [\"a.test\", \"*.b.test\"]\n\
         [[routes]]\ndomain = \"a.test\"\nhosts = [\"127.0.0.1:2526\"]\n\
         [[routes]]\ndomain = \"*.b.test\"\nhosts = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    assert_eq!(c.route_for("A.test").unwrap().domain, "a.test");
    assert_eq!(c.route_for("x.b.test").unwrap().domain, "*.b.test");
    assert!(c.route_for("b.test").is_none());
    assert!(
        Config::parse(
            "[delivery]\nrelay_host = \"127.0.0.1:25\"\n[relay]\nlocal_domains = [\"a.test\"]\n"
        )
        .is_ok()
    );
}

#[test]
fn load_reads_the_credential_files_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("relay.auth");
    std::fs::write(&creds, "relay:hunter2\n").unwrap();
    let path = dir.path().join("mta.toml");
    let text = format!(
        "[delivery]\nrelay_host = \"smarthost.example.net:587\"\nrelay_auth_file = \"{0}\"\n\
         [[routes]]\ndomain = \"a.test\"\nhosts = [\"127.0.0.1:2526\"]\nauth_file = \"{0}\"\n",
        creds.display()
    );
    std::fs::write(&path, &text).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.secrets.get(&creds).unwrap().username(), "relay");
    let printed = c.to_toml();
    assert!(printed.contains("relay_auth_file") && !printed.contains("hunter2"));
    assert!(!format!("{c:?}").contains("hunter2"));
    // Parsing text alone reads no file.
    assert!(Config::parse(&text).unwrap().secrets.get(&creds).is_none());

    std::fs::remove_file(&creds).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("`delivery.relay_auth_file`"), "{e}");

    let e = Config::parse("[delivery]\nrelay_auth_file = \"/x\"\n").unwrap_err();
    assert!(e.to_string().contains("delivery.relay_auth_file"), "{e}");
}

#[test]
fn effective_config_round_trips() {
    let c = Config::default();
    let again = Config::parse(&c.to_toml()).unwrap();
    assert_eq!(again.to_toml(), c.to_toml());
}
