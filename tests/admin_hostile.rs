//! The admin endpoint against hostile or careless requests: a number that would overflow a
//! deadline is refused with a 4xx and the process keeps serving on every shard.

mod common;

use std::time::Duration;

use common::{Client, Mta, http_status, tempdir, write_config};

#[test]
fn a_huge_suspend_duration_is_refused_and_every_shard_still_greets() {
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        "[delivery]\n[[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:9\"]\n",
    );
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin API");
    for duration in ["1000000000y", "18446744073709551615s", "31days"] {
        let status = http_status(
            admin,
            &format!(
                "POST /destinations/dest.test/suspend?duration={duration} HTTP/1.1\r\n\
                 Host: x\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        assert_eq!(status, 400, "duration={duration}");
    }
    // The longest allowed suspension works.
    let ok = http_status(
        admin,
        "POST /destinations/dest.test/suspend?duration=30days HTTP/1.1\r\nHost: x\r\n\
         Content-Length: 0\r\n\r\n",
    );
    assert_eq!(ok, 200);
    // Every shard still greets: with 2 shards the kernel spreads new connections over both.
    for _ in 0..20 {
        let mut c = Client::connect(mta.addr);
        assert_eq!(c.codes(1), vec![220]);
    }
    assert_eq!(
        http_status(admin, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
        200
    );
    assert!(
        mta.wait(Duration::from_millis(100)).is_none(),
        "still running"
    );
    assert!(mta.stop().success());
}
