//! The AUTH failure throttle against parallel attempts through real sockets: each attempt is
//! counted before its (slow) password check, so connections opened together cannot get more
//! tries than `auth.max_failures`, and a success does not wipe the others' failures.

mod common;

use base64::Engine;

use common::{Client, Mta, tempdir, users_file, write_config};

fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// A connection to the submission listener, EHLO done.
fn session(mta: &Mta) -> Client {
    let mut c = Client::connect(mta.addrs[1]);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    let r = c.reply().unwrap();
    assert!(r.contains("AUTH"), "{r}");
    c
}

#[test]
fn parallel_attempts_cannot_get_round_the_limit() {
    let dir = tempdir();
    let users = users_file(dir.path(), "alice", "right");
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[auth]\nusers_file = \"{}\"\nfailure_delay = \"200ms\"\nmax_failures = 3\n\
             [relay]\ntrusted_networks = []\n\
             [[listeners]]\naddress = \"127.0.0.1:0\"\nmode = \"submission\"\nauth_plaintext = true\n",
            users.display()
        ),
    );
    let mut mta = Mta::start(dir.path(), &config);
    // Ten wrong passwords sent at once, on ten connections.
    let mut clients: Vec<Client> = (0..10).map(|_| session(&mta)).collect();
    for c in &mut clients {
        c.send(format!("AUTH PLAIN {}\r\n", plain("alice", "wrong")).as_bytes());
    }
    let codes: Vec<u16> = clients.iter_mut().map(|c| c.codes(1)[0]).collect();
    let failed = codes.iter().filter(|&&c| c == 535).count();
    let throttled = codes.iter().filter(|&&c| c == 454).count();
    assert_eq!((failed, throttled), (3, 7), "{codes:?}");
    // Throttled now, even with the right password.
    let mut c = session(&mta);
    c.send(format!("AUTH PLAIN {}\r\n", plain("alice", "right")).as_bytes());
    assert_eq!(c.codes(1), vec![454]);
    assert!(mta.stop().success());
}
