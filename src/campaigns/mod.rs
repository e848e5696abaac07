//! Campaigns and tenants: the labels a message carries from reception to its last event.
//!
//! What it does: defines the `[campaigns]` configuration section (which header fields name a
//! message's campaign and tenant, whether they are removed before delivery, which clients may
//! set them, how many distinct names the statistics keep), and gathers the modules that read
//! the labels at reception ([`labels`]), count by them ([`counts`], [`tally`] per shard,
//! [`table`] and [`host`] for the host) and pause what crosses a threshold ([`pauses`]).
//!
//! What it does not do: no I/O, no protocol; the server applies the labels, delivery carries
//! them into events and suppression checks.
//!
//! Invariants: a label is 1 to [`labels::MAX_LABEL`] octets of `[A-Za-z0-9._:@+=/-]`; a
//! message carries at most one campaign and one tenant, fixed at reception.

pub mod counts;
pub mod host;
pub mod labels;
pub mod pauses;
pub mod saver;
pub mod table;
pub mod tally;

use serde::{Deserialize, Serialize};

pub use counts::{Counts, Dim};
pub use host::Campaigns;
pub use labels::Labeling;
pub use pauses::{Pause, PauseError};
pub use tally::Tally;

/// Which clients may name a campaign or tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LabelSource {
    /// Authenticated clients and `relay.trusted_networks`; other clients' fields are ignored
    /// (and removed with `strip`).
    #[default]
    Trusted,
    /// Every client.
    Any,
}

/// `[campaigns]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignsSection {
    /// The header field that names the campaign; `""` = campaigns are not read.
    pub campaign_header: String,
    /// The header field that names the tenant; `""` = tenants are not read.
    pub tenant_header: String,
    /// Remove both fields from the message at reception, before it is signed and spooled.
    pub strip: bool,
    /// Which clients may set them.
    pub from: LabelSource,
    /// Distinct names per kind (campaign, tenant, provider, source) that get their own row in
    /// the statistics and metrics; the rest are counted as `other`.
    pub top: usize,
}

impl Default for CampaignsSection {
    fn default() -> Self {
        CampaignsSection {
            campaign_header: "X-Campaign".into(),
            tenant_header: "X-Tenant".into(),
            strip: false,
            from: LabelSource::Trusted,
            top: 50,
        }
    }
}

/// The most rows per kind `campaigns.top` may ask for.
pub const MAX_TOP: usize = 1000;

impl CampaignsSection {
    /// Why the section is not acceptable, naming the key.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        for (key, name) in [
            ("campaigns.campaign_header", &self.campaign_header),
            ("campaigns.tenant_header", &self.tenant_header),
        ] {
            if !name.is_empty() && !labels::field_name(name) {
                return Some((key, format!("{name:?} is not a header field name")));
            }
        }
        if !self.campaign_header.is_empty()
            && self
                .campaign_header
                .eq_ignore_ascii_case(&self.tenant_header)
        {
            return Some(("campaigns.tenant_header", "is the campaign header".into()));
        }
        if !(1..=MAX_TOP).contains(&self.top) {
            return Some(("campaigns.top", format!("must be 1 to {MAX_TOP}")));
        }
        None
    }
}
