//! One `loadgen sink` session: the SMTP dialogue, faults included, with the MTA's own parsers.
//!
//! What it does: greets (or refuses with 421), answers commands, decodes DATA and BDAT, injects
//! the configured faults and delays, upgrades on STARTTLS, and counts what it accepted.
//!
//! What it does not do: no listening, no storage.
//!
//! Invariants: every accepted message is counted once; input buffered before STARTTLS is
//! dropped.

use super::*;
use mta::read_buffer::ReadBuffer;

/// Writes and flushes (TLS holds its records until flushed).
pub(super) async fn send(stream: &mut Stream, data: &[u8]) -> std::io::Result<()> {
    stream.write_all(data).await?;
    stream.flush().await
}

pub(super) async fn session(sh: &Shard, tcp: TcpStream) -> anyhow::Result<()> {
    tcp.set_nodelay(true).map_err(crate::gerr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(crate::gerr)?;
    let mut stream = Stream::Plain(tcp);
    let mut out = Vec::with_capacity(512);
    if (sh.opts.max_connections > 0 && sh.active.get() > sh.opts.max_connections)
        || sh.chance(sh.opts.greeting_421)
    {
        send(&mut stream, b"421 4.7.0 sink.test too busy\r\n").await?;
        return Ok(());
    }
    send(&mut stream, b"220 sink.test ESMTP loadgen sink\r\n").await?;
    let mut buf = ReadBuffer::new(64 * 1024);
    let mut lines = LineReader::new(4096);
    let mut rcpts: Vec<String> = Vec::new();
    let mut in_tx = false;
    let mut body = Vec::new();
    let mut data: Option<DataDecoder> = None;
    let mut chunk: Option<(u64, bool)> = None;
    loop {
        loop {
            let input = buf.data();
            if let Some((remaining, last)) = chunk {
                let take = remaining.min(input.len() as u64) as usize;
                body.extend_from_slice(&input[..take]);
                buf.consume(take);
                if remaining > take as u64 {
                    chunk = Some((remaining - take as u64, last));
                    break;
                }
                chunk = None;
                if last {
                    finish(sh, &rcpts, &body, &mut out).await;
                    rcpts.clear();
                    body.clear();
                    in_tx = false;
                } else {
                    out.extend_from_slice(b"250 2.0.0 chunk ok\r\n");
                }
                continue;
            }
            if let Some(d) = &mut data {
                match d.decode(input, &mut body) {
                    DataEvent::NeedMore => {
                        buf.clear();
                        break;
                    }
                    DataEvent::End { consumed } => {
                        buf.consume(consumed);
                        data = None;
                        finish(sh, &rcpts, &body, &mut out).await;
                        rcpts.clear();
                        body.clear();
                        in_tx = false;
                        continue;
                    }
                }
            }
            let (n, line) = lines.next(input);
            let parsed = line.map(|line| match line {
                Line::Command(cmd) => Some(parse_command(cmd, true)),
                _ => None,
            });
            buf.consume(n);
            let Some(parsed) = parsed else { break };
            let Some(parsed) = parsed else {
                out.extend_from_slice(b"500 5.5.2 bad line\r\n");
                continue;
            };
            match parsed {
                Ok(Command::Ehlo(_)) => {
                    out.extend_from_slice(b"250-sink.test\r\n");
                    if sh.opts.pipelining {
                        out.extend_from_slice(b"250-PIPELINING\r\n");
                    }
                    if sh.opts.chunking {
                        out.extend_from_slice(b"250-CHUNKING\r\n");
                    }
                    if sh.opts.size {
                        out.extend_from_slice(b"250-SIZE 104857600\r\n");
                    }
                    if sh.opts.tls.is_some() && !stream.is_tls() {
                        out.extend_from_slice(b"250-STARTTLS\r\n");
                    }
                    out.extend_from_slice(
                        b"250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n",
                    );
                }
                Ok(Command::Helo(_)) => out.extend_from_slice(b"250 sink.test\r\n"),
                Ok(Command::Mail(..)) => {
                    in_tx = true;
                    rcpts.clear();
                    out.extend_from_slice(b"250 2.1.0 ok\r\n");
                }
                Ok(Command::Rcpt(path, _)) if in_tx => {
                    let domain = match &path {
                        ForwardPath::Postmaster => "postmaster".to_owned(),
                        ForwardPath::Mailbox(m) => m.domain.to_string(),
                    };
                    sh.pause().await;
                    match sh.fault(Stage::Rcpt, &domain) {
                        Some(code) => out.extend_from_slice(
                            format!("{code} {}.0.0 injected failure\r\n", code / 100).as_bytes(),
                        ),
                        None => {
                            rcpts.push(domain);
                            out.extend_from_slice(b"250 2.1.5 ok\r\n");
                        }
                    }
                }
                Ok(Command::Data) if in_tx && !rcpts.is_empty() => {
                    out.extend_from_slice(b"354 go ahead\r\n");
                    data = Some(DataDecoder::new(200 << 20, BareLineEnding::Normalize));
                    send(&mut stream, &out).await?;
                    out.clear();
                    if sh.chance(sh.opts.drop_mid_data) {
                        return Ok(());
                    }
                }
                Ok(Command::Bdat { size, last }) if in_tx && !rcpts.is_empty() => {
                    chunk = Some((size, last));
                }
                Ok(Command::Bdat { size, .. }) => {
                    // Refused chunk: its bytes are still read and dropped.
                    let mut left = size;
                    let take = left.min(buf.len() as u64);
                    buf.consume(take as usize);
                    left -= take;
                    while left > 0 {
                        // Everything read so far was consumed: the whole buffer is free.
                        let n = stream.read(buf.spare()).await?;
                        anyhow::ensure!(n > 0, "eof in chunk");
                        buf.filled(n);
                        let take = left.min(n as u64);
                        buf.consume(take as usize);
                        left -= take;
                    }
                    out.extend_from_slice(b"554 5.5.1 no valid recipients\r\n");
                    in_tx = false;
                }
                Ok(Command::Rset) => {
                    in_tx = false;
                    rcpts.clear();
                    out.extend_from_slice(b"250 2.0.0 ok\r\n");
                }
                Ok(Command::Quit) => {
                    out.extend_from_slice(b"221 2.0.0 bye\r\n");
                    send(&mut stream, &out).await?;
                    return Ok(());
                }
                Ok(Command::StartTls) if stream.is_tls() => {
                    out.extend_from_slice(b"503 5.5.1 TLS already active\r\n")
                }
                Ok(Command::StartTls) if sh.opts.tls.is_some() => {
                    out.extend_from_slice(b"220 2.0.0 ready\r\n");
                    send(&mut stream, &out).await?;
                    out.clear();
                    let config = sh.opts.tls.clone().expect("checked");
                    stream = stream.accept_tls(config).await?;
                    sh.stats.borrow_mut().tls_sessions += 1;
                    // RFC 3207: forget everything from before the handshake.
                    buf.clear();
                    lines = LineReader::new(4096);
                    in_tx = false;
                    rcpts.clear();
                    body.clear();
                    break;
                }
                Ok(Command::Noop) => out.extend_from_slice(b"250 2.0.0 ok\r\n"),
                Ok(Command::Data | Command::Rcpt(..)) => {
                    out.extend_from_slice(b"503 5.5.1 bad sequence\r\n")
                }
                Ok(_) => out.extend_from_slice(b"502 5.5.1 not implemented\r\n"),
                Err(e) => e.reply(false).write_to(&mut out),
            }
        }
        if !out.is_empty() {
            send(&mut stream, &out).await?;
            out.clear();
        }
        buf.compact();
        let n = stream.read(buf.spare()).await?;
        if n == 0 {
            return Ok(());
        }
        buf.filled(n);
    }
}

/// End of a message: count it (or inject a fault) and write the reply.
pub(super) async fn finish(sh: &Shard, rcpts: &[String], body: &[u8], out: &mut Vec<u8>) {
    sh.pause().await;
    let domain = rcpts.first().map_or("", String::as_str);
    if let Some(code) = sh.fault(Stage::Data, domain) {
        out.extend_from_slice(format!("{code} {}.0.0 injected failure\r\n", code / 100).as_bytes());
        return;
    }
    let now = Instant::now();
    {
        let mut st = sh.stats.borrow_mut();
        st.messages += 1;
        st.recipients += rcpts.len() as u64;
        st.bytes += body.len() as u64;
        st.first.get_or_insert(now);
        st.last = Some(now);
        let mut seen: Vec<&str> = Vec::with_capacity(rcpts.len());
        for d in rcpts {
            let e = st.domains.entry(d.clone()).or_default();
            e.recipients += 1;
            if !seen.contains(&d.as_str()) {
                seen.push(d);
                e.messages += 1;
                e.bytes += body.len() as u64;
            }
        }
        if let Some(c) = message::check(body) {
            st.checked += 1;
            if !c.intact {
                st.corrupt += 1;
            }
            if !st.ids.insert(c.id) {
                st.duplicates += 1;
            }
            let lat = message::now_nanos().saturating_sub(c.sent_nanos) / 1000;
            let _ = st.latency.record(lat.max(1) as u64);
        }
    }
    sh.control
        .recipients
        .fetch_add(rcpts.len() as u64, Ordering::SeqCst);
    sh.control.messages.fetch_add(1, Ordering::SeqCst);
    out.extend_from_slice(b"250 2.0.0 ok: counted\r\n");
}
