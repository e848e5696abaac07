//! DNS message exchange with recursive servers: UDP with EDNS0, TCP fallback on truncation.
//!
//! What it does: sends one question (RD set, EDNS0 payload 1232, RFC 6891 and the DNS Flag
//! Day 2020 value) with a fresh random 16-bit id from a fresh UDP socket (kernel-chosen
//! source port, RFC 5452), and accepts only a datagram that comes from the server's address,
//! carries the same id, has QR set and repeats the question (name case-insensitively, type,
//! class IN). Anything else is ignored and the wait continues until the per-try timeout.
//! A TC answer is retried over TCP to the same server (RFC 1035 4.2.2 length prefix, RFC 7766).
//! SERVFAIL, REFUSED and other error RCODEs, timeouts, network errors and malformed answers
//! move on to the next server; `attempts` passes are made over the server list.
//!
//! What it does not do: interpret the answer beyond its RCODE (the resolver does), keep
//! connections or sockets between queries, pipeline TCP queries, use DNS cookies, retry
//! without EDNS after FORMERR (every current recursive server speaks EDNS0).
//!
//! Invariants: every wait is inside `glommio::timer::timeout(timeout, ..)`; at most
//! `attempts x servers` tries (each possibly followed by one TCP exchange) per query.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::GlommioError;
use glommio::net::{TcpStream, UdpSocket};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};

/// EDNS0 UDP payload size advertised to servers (DNS Flag Day 2020).
pub(crate) const EDNS_PAYLOAD: u16 = 1232;
/// Receive buffer for UDP answers: larger than the advertised payload to detect oversize.
const UDP_BUFFER: usize = 4096;

/// Counters shared by the transport and the resolver of one shard.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) queries_sent: Cell<u64>,
    pub(crate) timeouts: Cell<u64>,
    pub(crate) tcp_fallbacks: Cell<u64>,
    pub(crate) shared_inflight: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// Why one try against one server failed.
#[derive(Debug)]
enum TryError {
    Timeout,
    Failed(String),
}

/// Verdict on a received message.
enum Check {
    /// The answer to our question.
    Answer(Message),
    /// Not ours (wrong id, not a response, other question): keep waiting.
    Ignore,
    /// Ours (id matches) but unusable.
    Malformed(String),
}

/// The servers and retry policy of one shard.
pub(crate) struct Transport {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    attempts: u32,
}

impl Transport {
    pub(crate) fn new(servers: Vec<SocketAddr>, timeout: Duration, attempts: u32) -> Self {
        Self {
            servers,
            timeout,
            attempts: attempts.max(1),
        }
    }

    /// Asks the servers for `name`/`rtype`. Returns the first answer with RCODE NOERROR or
    /// NXDOMAIN; otherwise the reason of the last failure.
    pub(crate) async fn query(
        &self,
        name: &Name,
        rtype: RecordType,
        counters: &Counters,
    ) -> Result<Message, String> {
        let mut last = String::from("no nameservers configured");
        for _ in 0..self.attempts {
            for &server in &self.servers {
                let (id, bytes) = match build_query(name, rtype) {
                    Ok(q) => q,
                    Err(e) => return Err(format!("cannot encode query: {e}")),
                };
                let mut result = self
                    .udp_try(server, &bytes, id, name, rtype, counters)
                    .await;
                if matches!(&result, Ok(m) if m.metadata.truncation) {
                    bump(&counters.tcp_fallbacks);
                    tracing::debug!(%server, %name, ?rtype, "truncated UDP answer, retrying over TCP");
                    result = self
                        .tcp_try(server, &bytes, id, name, rtype, counters)
                        .await;
                }
                match result {
                    Ok(m) => match m.metadata.response_code {
                        ResponseCode::NoError | ResponseCode::NXDomain => return Ok(m),
                        rc => {
                            tracing::debug!(%server, %name, ?rtype, %rc, "DNS server error");
                            last = format!("{server}: {rc}");
                        }
                    },
                    Err(TryError::Timeout) => {
                        bump(&counters.timeouts);
                        tracing::debug!(%server, %name, ?rtype, "DNS query timed out");
                        last = format!("{server}: timed out");
                    }
                    Err(TryError::Failed(e)) => {
                        tracing::debug!(%server, %name, ?rtype, error = %e, "DNS query failed");
                        last = format!("{server}: {e}");
                    }
                }
            }
        }
        Err(last)
    }

    async fn udp_try(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
        name: &Name,
        rtype: RecordType,
        counters: &Counters,
    ) -> Result<Message, TryError> {
        let local = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let exchange = async {
            let sock = UdpSocket::bind(local).map_err(fail)?;
            // Connecting makes the kernel filter other sources and report ICMP errors.
            sock.connect(server).await.map_err(fail)?;
            sock.send(query).await.map_err(fail)?;
            bump(&counters.queries_sent);
            let mut buf = vec![0u8; UDP_BUFFER];
            loop {
                let (n, from) = sock.recv_from(&mut buf).await.map_err(fail)?;
                if from != server {
                    tracing::debug!(%server, %from, "ignoring DNS answer from another address");
                    continue;
                }
                match check_response(&buf[..n], id, name, rtype) {
                    Check::Answer(m) => return Ok(m),
                    Check::Ignore => continue,
                    Check::Malformed(e) => return Err(TryError::Failed(e)),
                }
            }
        };
        with_timeout(self.timeout, exchange).await
    }

    async fn tcp_try(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
        name: &Name,
        rtype: RecordType,
        counters: &Counters,
    ) -> Result<Message, TryError> {
        let exchange = async {
            let mut stream = TcpStream::connect_timeout(server, self.timeout)
                .await
                .map_err(fail)?;
            stream.set_nodelay(true).map_err(fail)?;
            let len = u16::try_from(query.len())
                .map_err(|_| TryError::Failed("query too long".into()))?;
            let mut out = Vec::with_capacity(query.len() + 2);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(query);
            stream.write_all(&out).await.map_err(fail)?;
            bump(&counters.queries_sent);
            loop {
                let mut len = [0u8; 2];
                stream.read_exact(&mut len).await.map_err(fail)?;
                let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                stream.read_exact(&mut buf).await.map_err(fail)?;
                match check_response(&buf, id, name, rtype) {
                    Check::Answer(m) => return Ok(m),
                    Check::Ignore => continue,
                    Check::Malformed(e) => return Err(TryError::Failed(e)),
                }
            }
        };
        with_timeout(self.timeout, exchange).await
    }
}

fn fail(e: impl std::fmt::Display) -> TryError {
    TryError::Failed(e.to_string())
}

/// Runs `f` for at most `dur`.
async fn with_timeout<F>(dur: Duration, f: F) -> Result<Message, TryError>
where
    F: Future<Output = Result<Message, TryError>>,
{
    match glommio::timer::timeout(dur, async { Ok(f.await) }).await {
        Ok(r) => r,
        Err(GlommioError::TimedOut(_)) => Err(TryError::Timeout),
        Err(e) => Err(TryError::Failed(e.to_string())),
    }
}

/// Encodes a recursive query for `name`/`rtype` with EDNS0; returns its random id and bytes.
pub(crate) fn build_query(
    name: &Name,
    rtype: RecordType,
) -> Result<(u16, Vec<u8>), hickory_proto::ProtoError> {
    // `Message::query()` draws the id from hickory-proto's thread-local CSPRNG.
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    // RFC 6840 5.7: asks a validating resolver to say (AD) whether it validated the answer.
    msg.metadata.authentic_data = true;
    let mut q = Query::query(name.clone(), rtype);
    q.set_query_class(DNSClass::IN);
    msg.add_query(q);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    msg.set_edns(edns);
    let id = msg.metadata.id;
    Ok((id, msg.to_vec()?))
}

/// Decides whether `bytes` is the answer to our query `id` for `name`/`rtype`.
fn check_response(bytes: &[u8], id: u16, name: &Name, rtype: RecordType) -> Check {
    if bytes.len() < 12 || u16::from_be_bytes([bytes[0], bytes[1]]) != id {
        return Check::Ignore;
    }
    if bytes[2] & 0x80 == 0 {
        return Check::Ignore; // QR clear: a query, not an answer
    }
    let msg = match Message::from_vec(bytes) {
        Ok(m) => m,
        // A server may cut a truncated answer mid-record: TC alone is enough to go to TCP.
        Err(_) if bytes[2] & 0x02 != 0 => {
            let mut m = Message::response(id, OpCode::Query);
            m.metadata.truncation = true;
            return Check::Answer(m);
        }
        Err(e) => return Check::Malformed(format!("malformed answer: {e}")),
    };
    if msg.metadata.message_type != MessageType::Response {
        return Check::Ignore;
    }
    match msg.queries.as_slice() {
        [q] if q.query_type() == rtype
            && q.query_class() == DNSClass::IN
            && q.name().eq_ignore_root(name) =>
        {
            Check::Answer(msg)
        }
        // Some servers drop the question from error answers (FORMERR, SERVFAIL, ...).
        [] if msg.metadata.response_code != ResponseCode::NoError
            && msg.metadata.response_code != ResponseCode::NXDomain =>
        {
            Check::Answer(msg)
        }
        _ => Check::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};

    fn answer_for(id: u16, qname: &str, rtype: RecordType) -> Message {
        let mut m = Message::response(id, hickory_proto::op::OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(qname).unwrap(), rtype));
        m.add_answer(Record::from_rdata(
            Name::from_ascii(qname).unwrap(),
            60,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        m
    }

    #[test]
    fn query_encoding() {
        let name = Name::from_ascii("example.com.").unwrap();
        let (id, bytes) = build_query(&name, RecordType::MX).unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, id);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries[0].query_type(), RecordType::MX);
        assert_eq!(m.edns.as_ref().unwrap().max_payload(), EDNS_PAYLOAD);
    }

    #[test]
    fn response_checks() {
        let name = Name::from_ascii("Example.COM.").unwrap();
        let ok = answer_for(7, "example.com.", RecordType::A)
            .to_vec()
            .unwrap();
        assert!(matches!(
            check_response(&ok, 7, &name, RecordType::A),
            Check::Answer(_)
        ));
        assert!(matches!(
            check_response(&ok, 8, &name, RecordType::A),
            Check::Ignore
        ));
        assert!(matches!(
            check_response(&ok, 7, &name, RecordType::AAAA),
            Check::Ignore
        ));
        let other = answer_for(7, "evil.com.", RecordType::A).to_vec().unwrap();
        assert!(matches!(
            check_response(&other, 7, &name, RecordType::A),
            Check::Ignore
        ));
        let (qid, query) = build_query(&name, RecordType::A).unwrap();
        assert!(matches!(
            check_response(&query, qid, &name, RecordType::A),
            Check::Ignore
        ));
        let mut cut = ok.clone();
        cut.truncate(ok.len() - 3);
        assert!(matches!(
            check_response(&cut, 7, &name, RecordType::A),
            Check::Malformed(_)
        ));
        cut[2] |= 0x02; // TC: a cut answer means "retry over TCP"
        assert!(matches!(
            check_response(&cut, 7, &name, RecordType::A),
            Check::Answer(m) if m.metadata.truncation
        ));
        assert!(matches!(
            check_response(&ok[..5], 7, &name, RecordType::A),
            Check::Ignore
        ));
    }
}
