//! Crash test: SIGKILL the MTA while many connections are sending, restart it, and check that
//! every message that got a `250` is in the spool byte for byte, with its envelope.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, Mta, tempdir, write_config};
use mta::spool::{self, QueueId};

const CONNECTIONS: usize = 16;
const MAX_PER_CONNECTION: usize = 2000;

struct Sent {
    sender: String,
    recipients: Vec<String>,
    body: Vec<u8>,
}

#[test]
fn acknowledged_mail_survives_sigkill() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    let mut mta = Mta::start(dir.path(), &config);
    let acked: Arc<Mutex<HashMap<String, Sent>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|t| {
            let (acked, stop, count, addr) = (acked.clone(), stop.clone(), count.clone(), mta.addr);
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                if c.reply().is_none() {
                    return;
                }
                c.send(b"EHLO crash.test\r\n");
                if c.reply().is_none() {
                    return;
                }
                let deadline = Instant::now() + Duration::from_secs(60);
                for i in 0..MAX_PER_CONNECTION {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        return;
                    }
                    let sender = format!("s{t}.{i}@crash.test");
                    let recipients: Vec<String> =
                        (0..1 + i % 3).map(|r| format!("r{r}.{t}.{i}@dest.test")).collect();
                    let filler = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(1 + (i * 7 + t) % 60);
                    let body = format!(
                        "Subject: crash {t} {i}\r\nX-Seq: {t}/{i}\r\n\r\n{filler}\r\n..dot\r\nend {t} {i}\r\n"
                    );
                    let mut cmd = format!("MAIL FROM:<{sender}>\r\n");
                    for r in &recipients {
                        cmd.push_str(&format!("RCPT TO:<{r}>\r\n"));
                    }
                    cmd.push_str("DATA\r\n");
                    c.send(cmd.as_bytes());
                    for _ in 0..recipients.len() + 2 {
                        match c.reply() {
                            Some(r) if r.starts_with('2') || r.starts_with('3') => {}
                            _ => return,
                        }
                    }
                    c.send(format!("{body}.\r\n").as_bytes());
                    let Some(reply) = c.reply() else { return };
                    let Some(id) = reply.strip_prefix("250 2.0.0 Ok: queued as ") else {
                        return;
                    };
                    let stored = body.replace("\r\n..dot", "\r\n.dot").into_bytes();
                    acked.lock().unwrap().insert(
                        id.trim().to_owned(),
                        Sent {
                            sender,
                            recipients,
                            body: stored,
                        },
                    );
                    count.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // Kill in the middle of the load.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::SeqCst) < 1500 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    mta.signal(libc::SIGKILL);
    let _ = mta.wait(Duration::from_secs(10));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() >= 100,
        "only {} messages acknowledged",
        acked.len()
    );

    // Restart: recovery truncates torn tails and the server serves again.
    let mut again = Mta::start(dir.path(), &config);
    let mut c = Client::connect(again.addr);
    assert_eq!(c.codes(1), [220]);
    drop(c);
    assert!(again.stop().success());

    let queue = spool::read_offline(&dir.path().join("spool")).expect("read spool");
    let by_id: HashMap<String, &spool::MessageRecord> = queue
        .messages
        .iter()
        .map(|m| (QueueId(m.message.id).to_string(), &m.message))
        .collect();
    for (id, sent) in acked.iter() {
        let m = by_id
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged message {id} lost"));
        assert_eq!(m.reverse_path, sent.sender, "{id}");
        let rcpts: Vec<_> = m.recipients.iter().map(|r| r.address.clone()).collect();
        assert_eq!(rcpts, sent.recipients, "{id}");
        assert!(m.body.ends_with(&sent.body), "{id} body differs");
        assert!(m.body.starts_with(b"Received: "), "{id}");
    }
}
