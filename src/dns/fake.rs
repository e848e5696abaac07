//! Test utility: an in-process fake DNS server on 127.0.0.1 (UDP and TCP, same port).
//!
//! What it does: answers questions from a [`FakeZone`] built in code, like an authoritative
//! server that also chases CNAMEs inside its zone: records of the asked type, CNAME chains,
//! NXDOMAIN with an SOA (minimum 60 unless changed) for unknown names, NODATA (NOERROR, empty
//! answer, SOA) for known names without the asked type. Per-name faults: SERVFAIL, silence
//! (timeouts), TC over UDP, and decoy answers (wrong id, wrong question, wrong source port)
//! sent before the real one. It runs on its own std threads with std sockets, so it works
//! from any test and any executor, and stops when dropped.
//!
//! Answers about names under a zone marked [`FakeZone::signed`] carry the AD bit, as a
//! validating resolver's would (no signatures: the MTA trusts the bit, not RRSIGs). TXT and
//! TLSA records serve the MTA-STS and DANE tests.
//!
//! What it does not do: zone files, wildcards, delegation, DNSSEC records, anything beyond what
//! the MTA's resolver tests need. It is public (not `#[cfg(test)]`) only so integration tests
//! and the binary's tests can use it; production code must not.
//!
//! Invariants: binds only 127.0.0.1; every blocking call has a short timeout so `Drop`
//! returns within ~50 ms; [`FakeDns::queries`] counts the questions answered (silenced
//! names are not counted).

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TLSA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// Default TTL of records added before any [`FakeZone::ttl`] call.
pub const DEFAULT_TTL: u32 = 300;
/// Default SOA MINIMUM (negative TTL) of the fake zone.
pub const DEFAULT_NEGATIVE_TTL: u32 = 60;

/// The data and faults a [`FakeDns`] serves. Names are case-insensitive, trailing dot optional.
#[derive(Clone, Default)]
pub struct FakeZone {
    records: HashMap<String, Vec<(RData, u32)>>,
    servfail: HashSet<String>,
    timeout: HashSet<String>,
    truncate: HashSet<String>,
    decoys: HashSet<String>,
    signed: HashSet<String>,
    ttl: Option<u32>,
    negative_ttl: Option<u32>,
    no_chase: bool,
}

fn key(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    n.strip_suffix('.').unwrap_or(&n).to_string()
}

fn fqdn(name: &str) -> Name {
    if name.trim() == "." {
        return Name::root();
    }
    let mut n = Name::from_str_relaxed(key(name)).expect("valid fake zone name");
    n.set_fqdn(true);
    n
}

impl FakeZone {
    fn add(mut self, owner: &str, data: RData) -> Self {
        let ttl = self.ttl.unwrap_or(DEFAULT_TTL);
        self.records
            .entry(key(owner))
            .or_default()
            .push((data, ttl));
        self
    }

    /// Adds `domain MX pref host` (`host` "." makes a null MX).
    pub fn mx(self, domain: &str, pref: u16, host: &str) -> Self {
        self.add(domain, RData::MX(MX::new(pref, fqdn(host))))
    }

    /// Adds `host A ip`.
    pub fn a(self, host: &str, ip: Ipv4Addr) -> Self {
        self.add(host, RData::A(A(ip)))
    }

    /// Adds `host AAAA ip`.
    pub fn aaaa(self, host: &str, ip: Ipv6Addr) -> Self {
        self.add(host, RData::AAAA(AAAA(ip)))
    }

    /// Adds `alias CNAME target`.
    pub fn cname(self, alias: &str, target: &str) -> Self {
        self.add(alias, RData::CNAME(CNAME(fqdn(target))))
    }

    /// Adds `owner TXT text` (one string, split into 255-octet pieces as on the wire).
    pub fn txt(self, owner: &str, text: &str) -> Self {
        let pieces: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
        self.add(owner, RData::TXT(TXT::from_bytes(pieces)))
    }

    /// Adds `owner TLSA usage selector matching data` (RFC 6698 2.1).
    pub fn tlsa(self, owner: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) -> Self {
        let rdata = TLSA::new(
            CertUsage::from(usage),
            Selector::from(selector),
            Matching::from(matching),
            data.to_vec(),
        );
        self.add(owner, RData::TLSA(rdata))
    }

    /// Sets the AD bit on answers about `zone` and every name under it, as a validating
    /// resolver does for a signed zone.
    pub fn signed(mut self, zone: &str) -> Self {
        self.signed.insert(key(zone));
        self
    }

    fn is_signed(&self, name: &str) -> bool {
        self.signed
            .iter()
            .any(|z| name == z || name.ends_with(&format!(".{z}")))
    }

    /// Answers SERVFAIL for every question about this name.
    pub fn servfail(mut self, name: &str) -> Self {
        self.servfail.insert(key(name));
        self
    }

    /// Never answers questions about this name (over UDP or TCP).
    pub fn timeout(mut self, name: &str) -> Self {
        self.timeout.insert(key(name));
        self
    }

    /// Answers with TC set and no records over UDP, in full over TCP.
    pub fn truncate_udp(mut self, name: &str) -> Self {
        self.truncate.insert(key(name));
        self
    }

    /// TTL for records added after this call.
    pub fn ttl(mut self, secs: u32) -> Self {
        self.ttl = Some(secs);
        self
    }

    /// SOA MINIMUM (and SOA TTL) used in negative answers (default 60).
    pub fn negative_ttl(mut self, secs: u32) -> Self {
        self.negative_ttl = Some(secs);
        self
    }

    /// Over UDP, before the real answer for this name, sends three poisoned decoys: one with
    /// a wrong id, one with another question, one from another source port.
    pub fn decoys(mut self, name: &str) -> Self {
        self.decoys.insert(key(name));
        self
    }

    /// Answers a CNAME without following it (as a server whose targets are out of zone), so
    /// the client must re-query the target.
    pub fn no_chase(mut self) -> Self {
        self.no_chase = true;
        self
    }

    /// The answer to `query`, or `None` to stay silent.
    fn respond(&self, query: &Message, over_tcp: bool) -> Option<Message> {
        let mut resp = Message::response(query.metadata.id, OpCode::Query);
        resp.metadata.recursion_desired = query.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        resp.metadata.authoritative = true;
        let payload = query.edns.as_ref().map(|e| e.max_payload().max(512));
        if payload.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            resp.set_edns(edns);
        }
        let [q] = query.queries.as_slice() else {
            resp.metadata.response_code = ResponseCode::FormErr;
            return Some(resp);
        };
        resp.add_query(q.clone());
        let qkey = key(&q.name().to_ascii());
        if self.timeout.contains(&qkey) {
            return None;
        }
        if self.servfail.contains(&qkey) {
            resp.metadata.response_code = ResponseCode::ServFail;
            return Some(resp);
        }
        resp.metadata.authentic_data = self.is_signed(&qkey);
        if !over_tcp && self.truncate.contains(&qkey) {
            resp.metadata.truncation = true;
            return Some(resp);
        }
        let mut current = qkey;
        let mut owner = q.name().clone();
        for _ in 0..16 {
            let Some(rrs) = self.records.get(&current) else {
                resp.metadata.response_code = ResponseCode::NXDomain;
                resp.add_authority(self.soa(&current));
                break;
            };
            let matching: Vec<_> = rrs
                .iter()
                .filter(|(d, _)| d.record_type() == q.query_type())
                .collect();
            if !matching.is_empty() {
                for (d, ttl) in matching {
                    resp.add_answer(Record::from_rdata(owner.clone(), *ttl, d.clone()));
                }
                break;
            }
            let cname = rrs.iter().find_map(|(d, ttl)| match d {
                RData::CNAME(c) => Some((c.0.clone(), *ttl)),
                _ => None,
            });
            let Some((target, ttl)) = cname else {
                resp.add_authority(self.soa(&current));
                break;
            };
            resp.add_answer(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::CNAME(CNAME(target.clone())),
            ));
            if self.no_chase {
                break;
            }
            current = key(&target.to_ascii());
            owner = target;
        }
        if !over_tcp {
            let limit = usize::from(payload.unwrap_or(512));
            if resp.to_vec().map(|v| v.len() > limit).unwrap_or(true) {
                resp.answers.clear();
                resp.authorities.clear();
                resp.metadata.truncation = true;
            }
        }
        Some(resp)
    }

    /// The SOA of the (pretend) zone holding `name`: its last two labels.
    fn soa(&self, name: &str) -> Record {
        let labels: Vec<&str> = name.split('.').collect();
        let apex = labels[labels.len().saturating_sub(2)..].join(".");
        let min = self.negative_ttl.unwrap_or(DEFAULT_NEGATIVE_TTL);
        Record::from_rdata(
            fqdn(&apex),
            min,
            RData::SOA(SOA::new(
                fqdn("ns.fake.test"),
                fqdn("hostmaster.fake.test"),
                1,
                3600,
                600,
                86400,
                min,
            )),
        )
    }
}

/// An authoritative-ish DNS server on 127.0.0.1 (UDP and TCP on the same port) answering from a
/// zone built in code. Runs on its own std thread (plain std sockets, hickory-proto for the
/// messages) so it works from any test; stops when dropped.
pub struct FakeDns {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeDns {
    /// Binds UDP and TCP on one free port of 127.0.0.1 and starts serving `zone`.
    pub fn start(zone: FakeZone) -> io::Result<FakeDns> {
        let (udp, tcp) = bind_pair()?;
        let addr = udp.local_addr()?;
        udp.set_read_timeout(Some(Duration::from_millis(20)))?;
        tcp.set_nonblocking(true)?;
        let zone = Arc::new(zone);
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicU64::new(0));
        let decoy_sock = UdpSocket::bind("127.0.0.1:0")?;
        let udp_thread = {
            let (zone, stop, queries) = (zone.clone(), stop.clone(), queries.clone());
            std::thread::Builder::new()
                .name("fake-dns-udp".into())
                .spawn(move || serve_udp(&udp, &decoy_sock, &zone, &stop, &queries))?
        };
        let tcp_thread = {
            let (zone, stop, queries) = (zone.clone(), stop.clone(), queries.clone());
            std::thread::Builder::new()
                .name("fake-dns-tcp".into())
                .spawn(move || serve_tcp(&tcp, &zone, &stop, &queries))?
        };
        Ok(FakeDns {
            addr,
            stop,
            queries,
            threads: vec![udp_thread, tcp_thread],
        })
    }

    /// The server's address (127.0.0.1, UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of queries answered (over UDP and TCP) so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
fn bind_pair() -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        match TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port")))
}

fn serve_udp(
    sock: &UdpSocket,
    decoy_sock: &UdpSocket,
    zone: &FakeZone,
    stop: &AtomicBool,
    queries: &AtomicU64,
) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => continue, // read timeout: check `stop`
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let Some(resp) = zone.respond(&query, false) else {
            continue;
        };
        let qkey = query.queries.first().map(|q| key(&q.name().to_ascii()));
        if qkey.is_some_and(|k| zone.decoys.contains(&k)) {
            send_decoys(sock, decoy_sock, &resp, from);
        }
        if let Ok(bytes) = resp.to_vec() {
            queries.fetch_add(1, Ordering::SeqCst);
            let _ = sock.send_to(&bytes, from);
        }
    }
}

/// Sends poisoned answers that a careful client must ignore.
fn send_decoys(sock: &UdpSocket, decoy_sock: &UdpSocket, real: &Message, to: SocketAddr) {
    let mut poisoned = real.clone();
    poisoned.metadata.response_code = ResponseCode::NoError;
    poisoned.answers.clear();
    poisoned.authorities.clear();
    if let Some(q) = real.queries.first() {
        let data = match q.query_type() {
            RecordType::AAAA => {
                RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x66)))
            }
            RecordType::MX => RData::MX(MX::new(0, fqdn("poison.invalid"))),
            _ => RData::A(A(Ipv4Addr::new(192, 0, 2, 66))),
        };
        poisoned.add_answer(Record::from_rdata(q.name().clone(), 3600, data));
    }
    let mut wrong_id = poisoned.clone();
    wrong_id.metadata.id = wrong_id.metadata.id.wrapping_add(1);
    let mut wrong_question = poisoned.clone();
    if let Some(q) = wrong_question.queries.first_mut() {
        q.set_name(fqdn("decoy.invalid"));
    }
    for (s, m) in [
        (sock, &wrong_id),
        (sock, &wrong_question),
        (decoy_sock, &poisoned),
    ] {
        if let Ok(bytes) = m.to_vec() {
            let _ = s.send_to(&bytes, to);
        }
    }
}

fn serve_tcp(
    listener: &TcpListener,
    zone: &Arc<FakeZone>,
    stop: &Arc<AtomicBool>,
    queries: &Arc<AtomicU64>,
) {
    let mut conns = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (zone, stop, queries) = (zone.clone(), stop.clone(), queries.clone());
                conns.push(std::thread::spawn(move || {
                    let _ = serve_conn(stream, &zone, &stop, &queries);
                }));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn serve_conn(
    mut stream: TcpStream,
    zone: &FakeZone,
    stop: &AtomicBool,
    queries: &AtomicU64,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(20)))?;
    stream.set_nodelay(true)?;
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
        while pending.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            if pending.len() < 2 + len {
                break;
            }
            let msg: Vec<u8> = pending.drain(..2 + len).skip(2).collect();
            let Ok(query) = Message::from_vec(&msg) else {
                return Ok(());
            };
            if let Some(resp) = zone.respond(&query, true) {
                let bytes = resp.to_vec().map_err(io::Error::other)?;
                let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&bytes);
                queries.fetch_add(1, Ordering::SeqCst);
                stream.write_all(&out)?;
            }
        }
    }
    Ok(())
}
