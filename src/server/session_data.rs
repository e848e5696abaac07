//! The end of a message's transfer: the checks made once the whole body is in, and the
//! memory valve while it arrives.
//!
//! What it does: at the end of DATA or of the last BDAT chunk, refuses the message (size, bare
//! line endings, a transfer shed for memory, too many `Received:` fields: RFC 5321 6.3) or
//! hands it to the spool; lets the connection shed a transfer when the shard's memory budget
//! is reached (the rest is read and dropped, and the message gets `452 4.3.1`).
//!
//! What it does not do: no decoding (the DATA decoder and the chunk checker), no I/O.
//!
//! Invariants: a refused message is never queued; a 5xx refusal counts toward
//! `smtp.max_errors`, a `452` does not; a shed transfer keeps at most one read's worth of
//! bytes.

use super::*;

impl Session {
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
        let tx = self.tx.take().expect("a message ends an open transaction");
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
        let mut record = tx.into_record(self.client, helo);
        record.tls = self
            .tls
            .as_ref()
            .map(|t| format!("{} {}", t.version, t.cipher));
        record.auth = self.user.clone();
        Some(Action::Queue(Box::new(record)))
    }
}
