//! DKIM signing at acceptance, and the bulk-sender warnings that go with it.
//!
//! What it does: decides whether an accepted message is signed (`dkim.sign`: mail we
//! originate, i.e. from an authenticated client or a trusted network, or all mail), signs the
//! whole spool body (our `Received:` field plus the client's message; `Received` is not a
//! signed field, so hops may add more without breaking the signature) and puts the `DKIM-Signature` field(s) at the very start of the body, before the record is
//! spooled. Every delivery attempt, also after a restart, thus sends the same signature.
//! It also logs senders of bulk mail without RFC 8058 one-click unsubscription and From
//! domains without a key, at most once a minute per From domain.
//!
//! What it does not do: no key loading (the shard loads the keys at start and on a reload,
//! and hands them over with [`Signing::replace`]), no verification, no DNS; it never refuses or loses a message: a signing error is logged and
//! counted and the message is spooled unsigned.
//!
//! Invariants: lives on one shard (`Cell`, `RefCell`); only the `Arc<Signer>` and the moved
//! body cross to the blocking thread when `dkim.offload` is set; the warning map is bounded.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dkim::{DkimError, DkimSection, SignScope, Signer};
use crate::metrics::ShardMetrics;
use crate::spool::MessageRecord;

/// At most one warning of each kind per From domain in this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// The warning map is cleared when it holds more domains than this.
const WARN_MAP_LIMIT: usize = 10_000;

/// The shard's DKIM signing stage. Its keys and settings are replaced whole by a reload; a
/// message being signed keeps the keys it started with.
pub struct Signing {
    signer: RefCell<Arc<Signer>>,
    scope: Cell<SignScope>,
    offload: Cell<bool>,
    bulk_recipients: Cell<usize>,
    /// Last warning per (kind, From domain).
    warned: RefCell<HashMap<(Warning, String), Instant>>,
    /// The shard's metrics (the signing counters).
    metrics: Rc<ShardMetrics>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Warning {
    NoKey,
    Bulk,
}

impl Signing {
    /// The signing stage for `section`, with keys loaded at start.
    pub fn new(signer: Arc<Signer>, section: &DkimSection, metrics: Rc<ShardMetrics>) -> Self {
        Signing {
            signer: RefCell::new(signer),
            scope: Cell::new(section.sign),
            offload: Cell::new(section.offload),
            bulk_recipients: Cell::new(section.bulk_warning_recipients),
            warned: RefCell::new(HashMap::new()),
            metrics,
        }
    }

    /// Takes reloaded keys and `[dkim]` settings (the counters and warning times stay).
    pub fn replace(&self, signer: Arc<Signer>, section: &DkimSection) {
        *self.signer.borrow_mut() = signer;
        self.scope.set(section.sign);
        self.offload.set(section.offload);
        self.bulk_recipients.set(section.bulk_warning_recipients);
    }

    /// Whether a message is in scope; `originated` = from an authenticated client or a
    /// trusted network.
    pub fn applies(&self, originated: bool) -> bool {
        originated || self.scope.get() == SignScope::All
    }

    /// Signs `record` in place when it is in scope. Never fails: on error the body is left
    /// as it was.
    pub async fn sign(&self, record: &mut MessageRecord, originated: bool) {
        if !self.applies(originated) {
            return;
        }
        let body = std::mem::take(&mut record.body);
        let signer = self.signer.borrow().clone();
        let (body, result) = if self.offload.get() {
            glommio::executor()
                .spawn_blocking(move || sign_body(&signer, body))
                .await
        } else {
            sign_body(&signer, body)
        };
        record.body = body;
        let domain = || crate::dkim::from_domain(&record.body).unwrap_or_default();
        match result {
            Ok(true) => {
                self.metrics.dkim_signed.inc();
                let bulk = self.bulk_recipients.get();
                // Campaign mail is bulk mail, whatever its number of recipients.
                let many = bulk > 0 && record.recipients.len() > bulk;
                if (many || record.campaign.is_some())
                    && !crate::dkim::has_one_click_unsubscribe(&record.body)
                {
                    self.metrics.bulk_without_unsubscribe.inc();
                    let domain = domain();
                    if self.may_warn(Warning::Bulk, &domain) {
                        tracing::warn!(
                            from_domain = %domain,
                            recipients = record.recipients.len(),
                            "bulk message without List-Unsubscribe and List-Unsubscribe-Post: \
                             List-Unsubscribe=One-Click (RFC 8058); large receivers may refuse it"
                        );
                    }
                }
            }
            Ok(false) => {
                self.metrics.dkim_no_key.inc();
                let domain = domain();
                if self.may_warn(Warning::NoKey, &domain) {
                    tracing::warn!(from_domain = %domain, "no DKIM key for the From domain; sent unsigned");
                }
            }
            Err(e) => {
                self.metrics.dkim_failed.inc();
                tracing::error!(queue_id = record.id, error = %e, "DKIM signing failed; spooling unsigned");
            }
        }
    }

    /// Whether a warning of `kind` for `domain` is due (and records it).
    fn may_warn(&self, kind: Warning, domain: &str) -> bool {
        let now = Instant::now();
        let mut warned = self.warned.borrow_mut();
        if let Some(last) = warned.get(&(kind, domain.to_owned()))
            && now.duration_since(*last) < WARN_INTERVAL
        {
            return false;
        }
        if warned.len() >= WARN_MAP_LIMIT {
            warned.retain(|_, last| now.duration_since(*last) < WARN_INTERVAL);
            if warned.len() >= WARN_MAP_LIMIT {
                warned.clear();
            }
        }
        warned.insert((kind, domain.to_owned()), now);
        true
    }
}

/// Signs `body` and returns it with the signature fields in front; `Ok(false)` = no key
/// applies (body unchanged).
fn sign_body(signer: &Signer, body: Vec<u8>) -> (Vec<u8>, Result<bool, DkimError>) {
    match signer.sign(&body) {
        Ok(Some(mut signed)) => {
            signed.reserve_exact(body.len());
            signed.extend_from_slice(&body);
            (signed, Ok(true))
        }
        Ok(None) => (body, Ok(false)),
        Err(e) => (body, Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_a_minute_per_domain() {
        let signing = Signing::new(
            Arc::new(Signer::from_config(&DkimSection::default()).expect("no keys")),
            &DkimSection::default(),
            Rc::default(),
        );
        assert!(signing.may_warn(Warning::Bulk, "a.example"));
        assert!(!signing.may_warn(Warning::Bulk, "a.example"));
        assert!(signing.may_warn(Warning::NoKey, "a.example"));
        assert!(signing.may_warn(Warning::Bulk, "b.example"));
    }

    #[test]
    fn scope() {
        let signer = Arc::new(Signer::from_config(&DkimSection::default()).expect("no keys"));
        let submitted = Signing::new(signer.clone(), &DkimSection::default(), Rc::default());
        assert!(submitted.applies(true));
        assert!(!submitted.applies(false));
        let all = DkimSection {
            sign: SignScope::All,
            ..DkimSection::default()
        };
        assert!(Signing::new(signer, &all, Rc::default()).applies(false));
    }
}
