//! Fuzz body: DNS answers into the resolver, through its real transport.
//!
//! A UDP server on 127.0.0.1 (a task on the same executor) answers every query the resolver
//! sends with the next datagram of the input (`[len][octets]` repeated, cycling). The first
//! byte picks, per datagram, whether the query's header and question are kept (so the answer
//! passes the id and question checks and the records reach the resolver) or only the id is
//! patched in. Then `mail_route` and `host_addrs` run with a 30 ms per-try timeout. Checks:
//! no panic, every lookup ends within a 10 s watchdog, at most `MAX_MX_TARGETS` hosts.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::UdpSocket;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use mta::dns::{DnsConfig, MAX_MX_TARGETS, MailRoute, Resolver};

thread_local! {
    static EXECUTOR: LocalExecutor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("executor");
}

/// End of the question section of a query (header + one question), if well formed.
fn question_end(query: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        if len == 0 {
            return Some(i + 1 + 4).filter(|&e| e <= query.len());
        }
        if len & 0xc0 != 0 {
            return None;
        }
        i += 1 + len;
    }
}

/// The answer to `query` made from `chunk`.
fn answer(query: &[u8], chunk: &[u8], keep_question: bool) -> Vec<u8> {
    if query.len() < 12 {
        return chunk.to_vec();
    }
    if keep_question && let Some(end) = question_end(query) {
        // Header: id and QDCOUNT from the query, flags and the other counts from the input.
        let mut out = query[..end].to_vec();
        let mut head = [0x81u8, 0x80, 0, 1, 0, 0, 0, 0];
        for (h, c) in head.iter_mut().zip(chunk) {
            *h = *c;
        }
        head[0] |= 0x80; // QR
        out[2..4].copy_from_slice(&head[..2]);
        out[6..12].copy_from_slice(&[0, head[3], 0, head[5], 0, head[7]]);
        out.extend_from_slice(chunk.get(8..).unwrap_or_default());
        return out;
    }
    let mut out = chunk.to_vec();
    out.resize(out.len().max(2), 0);
    out[..2].copy_from_slice(&query[..2]);
    out
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut datagrams: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut r = rest;
    while let [len, tail @ ..] = r {
        let n = usize::from(*len).min(tail.len());
        let keep = flags >> (datagrams.len() % 8) & 1 == 1;
        datagrams.push((keep, tail[..n].to_vec()));
        r = &tail[n..];
        if datagrams.len() == 16 {
            break;
        }
    }
    if datagrams.is_empty() {
        datagrams.push((true, Vec::new()));
    }
    EXECUTOR.with(|ex| ex.run(resolve(datagrams)));
}

async fn resolve(datagrams: Vec<(bool, Vec<u8>)>) {
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("addr");
    let stop = Rc::new(Cell::new(false));
    let stopped = stop.clone();
    let task = glommio::spawn_local(async move {
        let mut buf = vec![0u8; 2048];
        // Bounded by the resolver's queries; ends on the wake-up datagram sent after the
        // lookups (LeakSanitizer reports a task dropped inside `recv_from`
        // as a leak).
        for i in 0..1000 {
            let Ok((n, from)) = server.recv_from(&mut buf).await else {
                return;
            };
            if stopped.get() {
                return;
            }
            let (keep, chunk) = &datagrams[i % datagrams.len()];
            let _ = server.send_to(&answer(&buf[..n], chunk, *keep), from).await;
        }
    });
    let cfg = DnsConfig {
        servers: vec![addr],
        timeout: Duration::from_millis(30),
        attempts: 1,
        ..DnsConfig::default()
    };
    let resolver = Resolver::with_seed(cfg, 7).expect("resolver");
    let lookups = async {
        if let Ok(MailRoute::Hosts(hosts)) = resolver.mail_route("dest.test").await {
            assert!(hosts.len() <= MAX_MX_TARGETS, "{} MX targets", hosts.len());
        }
        let _ = resolver.host_addrs("host.dest.test").await;
        Ok(())
    };
    glommio::timer::timeout(Duration::from_secs(10), lookups)
        .await
        .expect("lookups ended within the watchdog");
    stop.set(true);
    let poke = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    // Resent until the server task ends (a datagram can be lost on a loaded loopback), for
    // at most 2 s.
    let wake = async {
        for _ in 0..100 {
            let _ = poke.send_to(b"stop", addr);
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    };
    futures_lite::future::or(task, wake).await;
}
