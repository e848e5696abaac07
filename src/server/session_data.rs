//! A message's transfer: DATA and BDAT, the start of the body (its `Received:` field), the
//! checks made once the whole body is in, and the memory valve while it arrives.
//!
//! What it does: starts the transfer (`354`, or the first chunk) once the transaction has a
//! recipient; at the end of DATA or of the last BDAT chunk, refuses the message (size, bare
//! line endings, a transfer shed for memory, too many `Received:` fields: RFC 5321 6.3) or
//! hands it to the spool; lets the connection shed a transfer when the shard's memory budget
//! is reached (the rest is read and dropped, and the message gets `452 4.3.1`).
//!
//! What it does not do: no decoding (the DATA decoder and the chunk checker), no I/O.
//!
//! Invariants: a refused message is never queued; a 5xx refusal counts toward
//! `smtp.max_errors`, a `452` does not; a shed transfer keeps at most one read's worth of
//! bytes; a queued body's buffer holds no more than its bytes.

use super::*;

impl Session {
    pub(super) fn data(&mut self, env: &mut dyn SessionEnv, out: &mut Vec<u8>) -> Option<Action> {
        let Some(tx) = &self.tx else {
            self.error(replies::bad_sequence("need MAIL command"), out);
            return None;
        };
        if tx.body_begun() {
            self.error(replies::bad_sequence("DATA after BDAT"), out);
            return None;
        }
        if tx.recipients.is_empty() {
            self.error(replies::no_valid_recipients(), out);
            return None;
        }
        self.begin_body(env);
        self.mode = Mode::Data(DataDecoder::new(
            self.cfg.max_message_size,
            self.cfg.bare_line_ending,
        ));
        out.extend_from_slice(replies::START_DATA);
        Some(Action::Flush)
    }

    /// BDAT (RFC 3030): the chunk is always read; whether it is accepted is decided here.
    pub(super) fn bdat(&mut self, size: u64, last: bool, env: &mut dyn SessionEnv) {
        let refusal = match &self.tx {
            None => Some(replies::bad_sequence("need MAIL command")),
            Some(tx) if tx.recipients.is_empty() => Some(replies::no_valid_recipients()),
            Some(tx) if tx.body_begun() && tx.chunks.is_none() => {
                Some(replies::bad_sequence("BDAT after DATA"))
            }
            Some(tx) if tx.message_octets().saturating_add(size) > self.cfg.max_message_size => {
                Some(replies::too_large(self.cfg.max_message_size))
            }
            Some(_) => None,
        };
        if refusal.is_none() && !self.tx.as_ref().is_some_and(Transaction::body_begun) {
            self.begin_body(env);
            let tx = self.tx.as_mut().expect("checked above");
            tx.chunks = Some(ChunkChecker::new(self.cfg.bare_line_ending));
            // The announced size is the client's word: room for the first piece only; the
            // buffer grows with the bytes that really arrive.
            tx.body.reserve(size.min(BDAT_FIRST_RESERVE) as usize);
        }
        self.mode = Mode::Chunk(Chunk {
            size,
            remaining: size,
            last,
            refusal,
        });
    }

    /// Assigns the queue id and writes our trace header at the start of the body.
    fn begin_body(&mut self, env: &mut dyn SessionEnv) {
        let id = env.next_queue_id();
        let now = env.now();
        let helo = self.helo.as_ref().expect("a transaction follows EHLO/HELO");
        let tx = self.tx.as_mut().expect("body of an open transaction");
        // RFC 3848 / RFC 6531: S for TLS, A for an authenticated client (after EHLO only).
        let extended = (helo.extended, tx.params.smtputf8);
        let protocol = match (extended, self.tls.is_some(), self.user.is_some()) {
            ((false, _), _, _) => "SMTP",
            ((true, false), false, false) => "ESMTP",
            ((true, false), true, false) => "ESMTPS",
            ((true, false), false, true) => "ESMTPA",
            ((true, false), true, true) => "ESMTPSA",
            ((true, true), false, false) => "UTF8SMTP",
            ((true, true), true, false) => "UTF8SMTPS",
            ((true, true), false, true) => "UTF8SMTPA",
            ((true, true), true, true) => "UTF8SMTPSA",
        };
        let single = match tx.recipients.as_slice() {
            [(path, _)] => Some(path.to_string()),
            _ => None,
        };
        let id_text = id.to_string();
        Trace {
            helo: &helo.name,
            client_ip: self.client.ip(),
            hostname: &self.cfg.hostname,
            protocol,
            tls: self.tls.as_ref(),
            user: self.user.as_deref(),
            id: &id_text,
            single_recipient: single.as_deref(),
            date: now,
        }
        .write_to(&mut tx.body);
        tx.header_len = tx.body.len();
        tx.id = Some(id);
        tx.arrival = now;
    }

    /// Bytes of the message being received so far, 0 outside a transfer.
    pub fn receiving_bytes(&self) -> u64 {
        self.tx.as_ref().map_or(0, |tx| tx.body.len() as u64)
    }

    /// The shard is out of memory: stop storing the message being received (the rest of it is
    /// read and dropped) and refuse it with `452 4.3.1` at its end. No effect outside a
    /// transfer. True if it was storing until now.
    pub fn shed_body(&mut self) -> bool {
        match &mut self.tx {
            Some(tx) if tx.body_begun() && !tx.shed => {
                tx.shed = true;
                tx.body.truncate(tx.header_len);
                tx.body.shrink_to_fit();
                true
            }
            _ => false,
        }
    }

    pub(super) fn end_of_data(
        &mut self,
        env: &mut dyn SessionEnv,
        out: &mut Vec<u8>,
    ) -> Option<Action> {
        let Mode::Data(decoder) = std::mem::replace(&mut self.mode, Mode::Command) else {
            unreachable!("end_of_data outside DATA");
        };
        let refusal = if decoder.too_large() {
            Some(replies::too_large(self.cfg.max_message_size))
        } else if decoder.bare_line_ending_seen()
            && self.cfg.bare_line_ending == BareLineEnding::Reject
        {
            Some(replies::bare_line_ending_data())
        } else {
            None
        };
        self.finish_message(refusal, env, out)
    }

    pub(super) fn end_of_chunk(
        &mut self,
        env: &mut dyn SessionEnv,
        out: &mut Vec<u8>,
    ) -> Option<Action> {
        let Mode::Chunk(chunk) = std::mem::replace(&mut self.mode, Mode::Command) else {
            unreachable!("end_of_chunk outside BDAT");
        };
        if let Some(refusal) = chunk.refusal {
            self.refused.1 += 1;
            if let Some(tx) = &self.tx {
                env.rejected("data", &tx.reverse_path.to_string(), "", &refusal);
            }
            // RFC 3030 2: a failed chunk fails the transaction; chunks already pipelined
            // behind it are read and refused with 503.
            self.tx = None;
            self.error(refusal, out);
            return None;
        }
        if !chunk.last {
            replies::chunk_received(chunk.size).write_to(out);
            return None;
        }
        let tx = self.tx.as_mut().expect("accepted chunk has a transaction");
        let mut checker = tx.chunks.take().expect("BDAT transaction");
        checker.finish(&mut tx.body);
        let refusal = (checker.bare_line_ending_seen()
            && self.cfg.bare_line_ending == BareLineEnding::Reject)
            .then(replies::bare_line_ending_data);
        self.finish_message(refusal, env, out)
    }

    /// Ends the transaction: either refuses the message or hands it to the spool.
    fn finish_message(
        &mut self,
        refusal: Option<Reply>,
        env: &mut dyn SessionEnv,
        out: &mut Vec<u8>,
    ) -> Option<Action> {
        let mut tx = self.tx.take().expect("a message ends an open transaction");
        let refusal = refusal.or_else(|| tx.shed.then(replies::insufficient_storage));
        // RFC 5321 6.3: a message that has passed through too many hops is looping.
        let refusal = refusal.or_else(|| {
            let hops = crate::smtp::hops::received_count(&tx.body[tx.header_len..]);
            (hops > self.cfg.max_received_headers).then(replies::too_many_hops)
        });
        if let Some(reply) = refusal {
            self.refused.1 += 1;
            env.rejected("data", &tx.reverse_path.to_string(), "", &reply);
            // A 5xx counts toward `smtp.max_errors`; a 452 (out of memory) does not.
            match reply.code >= 500 {
                true => self.error(reply, out),
                false => self.reply(reply, out),
            }
            return None;
        }
        let helo = self.helo.as_ref().map_or("", |h| h.name.as_str());
        // The body grew by doubling while it arrived; a queued message keeps it for as long as
        // it waits, and the queue's memory budget counts its length, so it keeps no more.
        tx.body.shrink_to_fit();
        let mut record = tx.into_record(self.client, helo);
        record.tls = self
            .tls
            .as_ref()
            .map(|t| format!("{} {}", t.version, t.cipher));
        record.auth = self.user.clone();
        Some(Action::Queue(Box::new(record)))
    }
}
