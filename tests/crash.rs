//! Crash tests: SIGKILL the MTA while many connections are sending, restart it, and check that
//! every message that got a `250` is in the spool byte for byte, with its envelope; and, with
//! the MTA delivering while it accepts, that every such message reaches the receiver.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Client, Mta, tempdir, write_config};
use mta::spool::{self, QueueId};

const CONNECTIONS: usize = 16;
const MAX_PER_CONNECTION: usize = 2000;

struct Sent {
    sender: String,
    recipients: Vec<String>,
    body: Vec<u8>,
}

/// Sends from [`CONNECTIONS`] connections until `kill_after` messages got their `250`, then
/// SIGKILLs the MTA (once `ready` holds too); returns what was acknowledged, by queue id. `run`
/// tells the messages of one call from those of another (senders, recipients and the `X-Seq`
/// header carry it).
fn load_and_kill(
    mta: &mut Mta,
    (kill_after, ready): (usize, &dyn Fn() -> bool),
    run: usize,
) -> HashMap<String, Sent> {
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
                    let sender = format!("s{run}.{t}.{i}@crash.test");
                    let recipients: Vec<String> =
                        (0..1 + i % 3).map(|r| format!("r{r}.{run}.{t}.{i}@dest.test")).collect();
                    let filler = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(1 + (i * 7 + t) % 60);
                    let body = format!(
                        "Subject: crash {t} {i}\r\nX-Seq: {run}/{t}/{i}\r\n\r\n{filler}\r\n..dot\r\nend {t} {i}\r\n"
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
    while (count.load(Ordering::SeqCst) < kill_after || !ready()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    mta.signal(libc::SIGKILL);
    let _ = mta.wait(Duration::from_secs(10));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= 100,
        "only {} messages acknowledged",
        acked.len()
    );
    acked
}

#[test]
fn acknowledged_mail_survives_sigkill() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    let mut mta = Mta::start(dir.path(), &config);
    let acked = load_and_kill(&mut mta, (1500, &|| true), 0);

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

/// SIGKILL while the MTA delivers what it accepts (its delivery states sharing the commits of
/// new mail, two commits in flight), with 1 MiB segments so that during the load segments roll,
/// the next one is made ahead and delivered ones retire (seen: the first one or two of each
/// shard gone at the kill): after a restart, every recipient of every message that got a `250`
/// reaches the receiver (at least once), with the message's bytes.
#[test]
fn acknowledged_mail_is_delivered_after_sigkill_while_delivering() {
    deliver_across_kills(&[2500]);
}

/// The same, killed three times, each restart recovering what the crash before left (a segment
/// made ahead and never used, torn tails, deliveries in flight) while taking new mail.
#[test]
fn acknowledged_mail_is_delivered_across_repeated_sigkills() {
    deliver_across_kills(&[800, 800, 800]);
}

/// Runs one load per entry of `kills` (killing the MTA after that many `250`s), restarting the
/// MTA after each, then checks that everything acknowledged reaches the receiver.
fn deliver_across_kills(kills: &[usize]) {
    let receiver = Scripted::start(false, 0);
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\n[[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{}\"]\n",
            receiver.port
        ),
    );
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[spool]\n",
        "[spool]\nsegment_size = \"1MiB\"\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    // By message, not by queue id: what was acknowledged in every run.
    let mut acked: Vec<Sent> = Vec::new();
    for (run, &kill_after) in kills.iter().enumerate() {
        let mut mta = Mta::start(dir.path(), &config);
        // Killed only once the receiver has something of this run: delivery was under way.
        let delivering = || {
            let tag = format!("X-Seq: {run}/");
            receiver
                .got
                .lock()
                .unwrap()
                .iter()
                .any(|m| m.body.contains(&tag))
        };
        acked.extend(load_and_kill(&mut mta, (kill_after, &delivering), run).into_values());
        assert!(delivering(), "nothing was delivered before kill {run}");
    }

    let mut again = Mta::start(dir.path(), &config);
    // Every acknowledged (message, recipient), by the message's X-Seq header.
    let want: HashSet<(String, String)> = acked
        .iter()
        .flat_map(|s| {
            let text = String::from_utf8_lossy(&s.body);
            let seq = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Seq: "))
                .expect("X-Seq")
                .to_owned();
            s.recipients.iter().map(move |r| (seq.clone(), r.clone()))
        })
        .collect();
    let bodies: HashMap<String, &Sent> = acked
        .iter()
        .map(|s| {
            let text = String::from_utf8_lossy(&s.body);
            let seq = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Seq: "))
                .unwrap();
            (seq.to_owned(), s)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let got = receiver.got.lock().unwrap().clone();
        let mut seen = HashSet::new();
        for m in &got {
            let Some(seq) = m.body.lines().find_map(|l| l.strip_prefix("X-Seq: ")) else {
                continue;
            };
            if let Some(sent) = bodies.get(seq) {
                assert!(
                    m.body.as_bytes().ends_with(&sent.body),
                    "message {seq} arrived with other bytes"
                );
                assert_eq!(m.from, sent.sender, "{seq}");
            }
            for r in &m.to {
                seen.insert((seq.to_owned(), r.clone()));
            }
        }
        let missing: Vec<_> = want.difference(&seen).cloned().collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(again.stop().success());
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged recipients never delivered, e.g. {:?}",
        missing.len(),
        want.len(),
        &missing[..missing.len().min(5)]
    );
}
