//! Priority classes: which class a message is sent in, so that a password reset does not wait
//! behind a newsletter to the same destination.
//!
//! What it does: names the classes (`transactional`, `normal`, `bulk`, highest first), reads
//! the `[priority]` section, chooses a message's class at reception (first match: the class
//! header from a trusted or authenticated client, the message's source pool, its sender's
//! domain; none = the default) and turns the class stored with a message into the class of
//! one destination domain's recipients (per-destination default and remapping). The spool
//! keeps the choice as one byte ([`Class::code`]).
//!
//! What it does not do: no ordering (the scheduler serves the classes, `queue::destination`),
//! no I/O, no change to the message (the header is read, not removed).
//!
//! Invariants: code 0 means "no rule chose", so messages spooled before classes existed read
//! as the default class; after [`PrioritySection::check`], `share` is at least the number of
//! classes, so every lower class can be given a slot of its own in each round of picks.

use serde::{Deserialize, Serialize};

use crate::config::{PoolConfig, PoolSelection};
use crate::spool::MessageRecord;

/// A priority class, highest first.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Mail a person waits for (password resets, sign-up confirmations): served first.
    Transactional,
    /// Everything no rule places elsewhere.
    #[default]
    Normal,
    /// Campaigns and newsletters: served last, with a guaranteed share.
    Bulk,
}

impl Class {
    /// Every class, highest first (index = [`Class::index`]).
    pub const ALL: [Class; 3] = [Class::Transactional, Class::Normal, Class::Bulk];
    /// The number of classes.
    pub const COUNT: usize = Class::ALL.len();

    /// 0 for the highest class.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name operators use.
    pub fn name(self) -> &'static str {
        match self {
            Class::Transactional => "transactional",
            Class::Normal => "normal",
            Class::Bulk => "bulk",
        }
    }

    /// The class named `name` (ASCII case and surrounding space ignored).
    pub fn parse(name: &str) -> Option<Class> {
        let name = name.trim();
        Class::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// The spool's byte for a chosen class (`None` = no rule chose: 0).
    pub fn code(class: Option<Class>) -> u8 {
        class.map_or(0, |c| c as u8 + 1)
    }

    /// The class a spool byte stands for: `Ok(None)` for 0, `Err` for a byte no build writes.
    pub fn from_code(code: u8) -> Result<Option<Class>, u8> {
        match code {
            0 => Ok(None),
            c => Class::ALL
                .get(usize::from(c) - 1)
                .copied()
                .map(Some)
                .ok_or(c),
        }
    }
}

/// The largest spool byte [`Class::code`] writes.
pub const MAX_CODE: u8 = Class::COUNT as u8;

/// One sender-domain rule: mail from `domain` goes in `class`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderClass {
    /// The envelope sender's domain (exact, case-insensitive).
    pub domain: String,
    /// Its class.
    pub class: Class,
}

/// One campaign rule: mail labelled with `campaign` (`[campaigns]`) goes in `class`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignClass {
    /// The campaign name (exact).
    pub campaign: String,
    /// Its class.
    pub class: Class,
}

/// One pool rule: mail that asks for `pool` goes in `class`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolClass {
    /// A pool name (`[[pools]]`).
    pub pool: String,
    /// Its class.
    pub class: Class,
}

/// Per-destination-domain overrides: `[[priority.destinations]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationClass {
    /// The recipients' domain (exact, case-insensitive).
    pub domain: String,
    /// The class of this domain's mail that no rule chose a class for.
    #[serde(default)]
    pub default: Option<Class>,
    /// Mail of class `transactional` goes to this domain as this class.
    #[serde(default)]
    pub transactional: Option<Class>,
    /// Mail of class `normal` goes to this domain as this class.
    #[serde(default)]
    pub normal: Option<Class>,
    /// Mail of class `bulk` goes to this domain as this class.
    #[serde(default)]
    pub bulk: Option<Class>,
}

impl DestinationClass {
    fn remap(&self, class: Class) -> Class {
        match class {
            Class::Transactional => self.transactional,
            Class::Normal => self.normal,
            Class::Bulk => self.bulk,
        }
        .unwrap_or(class)
    }
}

/// `[priority]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrioritySection {
    /// The class of mail that no rule places.
    pub default: Class,
    /// A header naming the class (e.g. `X-Priority-Class`), honoured only from clients that
    /// authenticated or are in `relay.trusted_networks`; ignored from others.
    pub header: Option<String>,
    /// Of every `share` messages a destination sends, one slot is kept for each lower class
    /// that has mail waiting (the rest go to the highest class waiting).
    pub share: u32,
    /// Classes by campaign label (read at reception: `docs/CAMPAIGNS.md`).
    pub campaigns: Vec<CampaignClass>,
    /// Classes by source pool (the pool a message asks for at reception).
    pub pools: Vec<PoolClass>,
    /// Classes by sender domain.
    pub senders: Vec<SenderClass>,
    /// Per-destination-domain defaults and remappings.
    pub destinations: Vec<DestinationClass>,
}

impl Default for PrioritySection {
    fn default() -> Self {
        PrioritySection {
            default: Class::Normal,
            header: None,
            share: 10,
            campaigns: Vec::new(),
            pools: Vec::new(),
            senders: Vec::new(),
            destinations: Vec::new(),
        }
    }
}

/// The largest `priority.share`.
pub const MAX_SHARE: u32 = 1000;

impl PrioritySection {
    /// Checks the section; `Err((key, problem))`.
    pub fn check(&self, pools: &[PoolConfig]) -> Result<(), (String, String)> {
        if !(Class::COUNT as u32..=MAX_SHARE).contains(&self.share) {
            return Err((
                "priority.share".into(),
                format!("between {} and {MAX_SHARE}", Class::COUNT),
            ));
        }
        if let Some(h) = &self.header
            && (h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
        {
            return Err(("priority.header".into(), "a header field name".into()));
        }
        for (i, p) in self.pools.iter().enumerate() {
            if !pools.iter().any(|o| o.name == p.pool) {
                return Err((
                    format!("priority.pools[{i}].pool"),
                    format!("no pool named {:?}", p.pool),
                ));
            }
        }
        for (i, d) in self.destinations.iter().enumerate() {
            if self.destinations[..i]
                .iter()
                .any(|o| o.domain.eq_ignore_ascii_case(&d.domain))
            {
                return Err((
                    format!("priority.destinations[{i}].domain"),
                    format!("{:?} is listed twice", d.domain),
                ));
            }
        }
        Ok(())
    }

    /// The class `domain`'s recipients of a message are sent in, given the class stored with
    /// the message (`None`: no rule chose one).
    pub fn for_destination(&self, domain: &str, stored: Option<Class>) -> Class {
        let over = self
            .destinations
            .iter()
            .find(|d| d.domain.eq_ignore_ascii_case(domain));
        let class = stored
            .or_else(|| over.and_then(|d| d.default))
            .unwrap_or(self.default);
        over.map_or(class, |d| d.remap(class))
    }
}

/// What a message's class is chosen from at reception.
#[derive(Clone, Debug)]
pub struct Chooser {
    section: PrioritySection,
    selection: PoolSelection,
    pools: Vec<String>,
}

impl Chooser {
    /// The rules of a configuration's `[priority]` and `[pool_selection]`.
    pub fn new(config: &crate::config::Config) -> Chooser {
        Chooser {
            section: config.priority.clone(),
            selection: config.pool_selection.clone(),
            pools: config.pools.iter().map(|p| p.name.clone()).collect(),
        }
    }

    /// The class of `record` (body = our trace header + message, labels already read), first
    /// match: the header (only when `trusted`: the client authenticated or is in a trusted
    /// network), the campaign label, the pool the message asks for, the sender's domain.
    /// `None`: no rule chose one (the destination's or the global default applies when it is
    /// queued).
    pub fn choose(&self, record: &MessageRecord, trusted: bool) -> Option<Class> {
        let s = &self.section;
        if trusted
            && let Some(h) = &s.header
            && let Some(class) =
                crate::headers::value(&record.body, h).and_then(|v| Class::parse(&v))
        {
            return Some(class);
        }
        if let Some(c) = &record.campaign
            && let Some(r) = s.campaigns.iter().find(|r| r.campaign == *c)
        {
            return Some(r.class);
        }
        if !s.pools.is_empty() {
            let pool = self
                .selection
                .requested(
                    |name| self.pools.iter().any(|p| p == name),
                    &record.reverse_path,
                    &record.body,
                )
                .or_else(|| self.selection.default.clone());
            if let Some(pool) = pool
                && let Some(p) = s.pools.iter().find(|p| p.pool == pool)
            {
                return Some(p.class);
            }
        }
        let domain = record.reverse_path.rsplit_once('@').map(|(_, d)| d)?;
        s.senders
            .iter()
            .find(|r| r.domain.eq_ignore_ascii_case(domain))
            .map(|r| r.class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_zero_is_unset() {
        assert_eq!(Class::from_code(0), Ok(None));
        for c in Class::ALL {
            assert_eq!(Class::from_code(Class::code(Some(c))), Ok(Some(c)));
            assert_eq!(Class::parse(&c.name().to_uppercase()), Some(c));
        }
        assert_eq!(Class::from_code(MAX_CODE + 1), Err(MAX_CODE + 1));
        assert_eq!(Class::parse("urgent"), None);
    }

    #[test]
    fn destination_default_and_remap() {
        let s = PrioritySection {
            destinations: vec![DestinationClass {
                domain: "Gmail.com".into(),
                default: Some(Class::Bulk),
                bulk: Some(Class::Normal),
                ..DestinationClass::default()
            }],
            ..PrioritySection::default()
        };
        // No rule chose: the destination's default, then its remapping.
        assert_eq!(s.for_destination("gmail.com", None), Class::Normal);
        assert_eq!(
            s.for_destination("gmail.com", Some(Class::Transactional)),
            Class::Transactional
        );
        assert_eq!(
            s.for_destination("gmail.com", Some(Class::Bulk)),
            Class::Normal
        );
        assert_eq!(s.for_destination("other.test", None), Class::Normal);
        assert_eq!(
            s.for_destination("other.test", Some(Class::Bulk)),
            Class::Bulk
        );
    }

    fn record(from: &str, body: &str) -> MessageRecord {
        MessageRecord {
            id: 1,
            reverse_path: from.into(),
            mail_params: Vec::new(),
            recipients: Vec::new(),
            arrival_unix_ms: 0,
            client_addr: "127.0.0.1:1".into(),
            helo: String::new(),
            tls: None,
            auth: None,
            campaign: None,
            tenant: None,
            body: body.as_bytes().to_vec(),
            priority: 0,
        }
    }

    #[test]
    fn a_campaign_rule_comes_after_the_header_and_before_the_sender() {
        let mut config = crate::config::Config::default();
        config.priority.header = Some("X-Priority-Class".into());
        config.priority.campaigns = vec![CampaignClass {
            campaign: "password-reset".into(),
            class: Class::Transactional,
        }];
        config.priority.senders = vec![SenderClass {
            domain: "news.test".into(),
            class: Class::Bulk,
        }];
        let c = Chooser::new(&config);
        let mut m = record("a@news.test", "Subject: x\r\n\r\nhi\r\n");
        assert_eq!(c.choose(&m, false), Some(Class::Bulk));
        m.campaign = Some("password-reset".into());
        assert_eq!(c.choose(&m, false), Some(Class::Transactional));
        m.campaign = Some("spring-sale".into());
        assert_eq!(c.choose(&m, false), Some(Class::Bulk));
        let mut m = record("a@news.test", "X-Priority-Class: bulk\r\n\r\nhi\r\n");
        m.campaign = Some("password-reset".into());
        assert_eq!(c.choose(&m, true), Some(Class::Bulk), "the header first");
    }

    #[test]
    fn the_header_counts_only_from_trusted_clients_then_pool_then_sender() {
        let mut config = crate::config::Config::default();
        config.priority.header = Some("X-Priority-Class".into());
        config.priority.senders = vec![SenderClass {
            domain: "news.test".into(),
            class: Class::Bulk,
        }];
        config.priority.pools = vec![PoolClass {
            pool: "reset".into(),
            class: Class::Transactional,
        }];
        config.pool_selection.header = Some("X-Pool".into());
        config.pools = vec![PoolConfig {
            name: "reset".into(),
            sources: Vec::new(),
        }];
        let c = Chooser::new(&config);
        let m = record(
            "a@news.test",
            "X-Priority-Class: Transactional\r\n\r\nhi\r\n",
        );
        assert_eq!(c.choose(&m, true), Some(Class::Transactional));
        assert_eq!(c.choose(&m, false), Some(Class::Bulk), "header ignored");
        let m = record("a@news.test", "X-Priority-Class: urgent\r\n\r\nhi\r\n");
        assert_eq!(
            c.choose(&m, true),
            Some(Class::Bulk),
            "unknown class ignored"
        );
        let m = record("a@news.test", "X-Pool: reset\r\n\r\nhi\r\n");
        assert_eq!(c.choose(&m, false), Some(Class::Transactional));
        let m = record("a@other.test", "Subject: x\r\n\r\nhi\r\n");
        assert_eq!(c.choose(&m, true), None);
        assert_eq!(c.choose(&record("", "\r\nhi\r\n"), true), None);
    }

    #[test]
    fn check_rejects_a_small_share_and_unknown_pools() {
        let mut s = PrioritySection {
            share: 2,
            ..PrioritySection::default()
        };
        assert!(s.check(&[]).is_err());
        s.share = 3;
        assert!(s.check(&[]).is_ok());
        s.pools.push(PoolClass {
            pool: "nope".into(),
            class: Class::Bulk,
        });
        assert_eq!(s.check(&[]).unwrap_err().0, "priority.pools[0].pool");
    }
}
