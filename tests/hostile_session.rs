//! Hostile SMTP clients through real sockets: the error limit closes at once.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Mta, tempdir, write_config};

#[test]
fn the_error_limit_sends_421_and_closes_without_waiting() {
    let dir = tempdir();
    let config = write_config(dir.path(), "[smtp]\nmax_errors = 3\n", "");
    let mut mta = Mta::start(dir.path(), &config);
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    for i in 0..2 {
        c.send(b"NONSENSE\r\n");
        let r = c.reply().unwrap();
        assert!(r.starts_with("500"), "error {i}: {r}");
    }
    // The third error: its reply, then 421 and the close, with no further command sent.
    c.send(b"NONSENSE\r\n");
    let started = Instant::now();
    assert!(c.reply().unwrap().starts_with("500"));
    let r = c.reply().unwrap();
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(c.closed(), "closed after the 421");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(mta.stop().success());
}
