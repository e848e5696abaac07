//! A restart right after a crash: the kernel may still hold the old process's listening
//! socket for a moment (io_uring tears its rings down after the exit), and the new process
//! waits for the port instead of failing.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{Client, Mta, tempdir, write_config};

#[test]
fn a_start_waits_for_a_listening_port_still_held() {
    let dir = tempdir();
    // A free port, held by this test as if a dying process still had it.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let config = write_config(dir.path(), "", "");
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "address = \"127.0.0.1:0\"",
        &format!("address = \"127.0.0.1:{port}\""),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(holder);
    });
    let mut mta = Mta::start(dir.path(), &config);
    release.join().unwrap();
    assert_eq!(mta.addr.port(), port);
    assert!(
        mta.log_lines.iter().any(|l| l.contains("address in use")),
        "the wait is logged: {:?}",
        mta.log_lines
    );
    let mut c = Client::connect(mta.addr);
    assert_eq!(c.codes(1), vec![220]);
    assert!(mta.stop().success());
}
