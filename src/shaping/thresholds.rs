//! Thresholds per campaign and per tenant in the shaping file (`[campaign."<name>"]`,
//! `[tenant."<name>"]`, `"*"` for every one without its own section).
//!
//! What it does: parses and checks the sections (`bounce_rate = "5%"`, `complaint_rate =
//! "0.3%"`, `min_messages = 1000`) and says whether counts cross one ([`Threshold::crossed`]).
//!
//! What it does not do: no counting, no pausing (the campaigns module does both).
//!
//! Invariants: a rate is a percentage in (0, 100]; a section sets at least one rate; the rates
//! are judged only once `min_messages` recipients have ended at the next hop.

use std::collections::HashMap;

use serde::Deserialize;

use super::values::ShapingError;

/// The name of the section that applies to every campaign (or tenant) without its own.
pub const ANY: &str = "*";

/// A section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThreshold {
    bounce_rate: Option<String>,
    complaint_rate: Option<String>,
    min_messages: Option<u64>,
}

/// The limits of one campaign or tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// Bounced over delivered + bounced, as a fraction (0.05 for `"5%"`).
    pub bounce_rate: Option<f64>,
    /// Complaints over delivered, as a fraction.
    pub complaint_rate: Option<f64>,
    /// Recipients that must have ended at the next hop (delivered + bounced) before a rate is
    /// judged. Default 1000.
    pub min_messages: u64,
}

/// The default `min_messages`.
pub const MIN_MESSAGES: u64 = 1000;

impl Threshold {
    /// Why counts with `finished` recipients and these rates cross the threshold; None when
    /// they do not (or are too few to judge).
    pub fn crossed(
        &self,
        finished: u64,
        bounce_rate: Option<f64>,
        complaint_rate: Option<f64>,
    ) -> Option<String> {
        if finished < self.min_messages.max(1) {
            return None;
        }
        let over = |limit: Option<f64>, rate: Option<f64>| match (limit, rate) {
            (Some(l), Some(r)) if r > l => Some((l, r)),
            _ => None,
        };
        if let Some((l, r)) = over(self.bounce_rate, bounce_rate) {
            return Some(format!(
                "bounce rate {:.2}% over {:.2}% after {finished} messages",
                r * 100.0,
                l * 100.0
            ));
        }
        over(self.complaint_rate, complaint_rate).map(|(l, r)| {
            format!(
                "complaint rate {:.2}% over {:.2}% after {finished} messages",
                r * 100.0,
                l * 100.0
            )
        })
    }
}

/// Every campaign's and tenant's thresholds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Thresholds {
    /// By campaign name (`*`: any other).
    pub campaign: HashMap<String, Threshold>,
    /// By tenant name (`*`: any other).
    pub tenant: HashMap<String, Threshold>,
}

impl Thresholds {
    /// The threshold of campaign (`tenant == false`) or tenant `name`: its own, else `*`'s.
    pub fn of(&self, tenant: bool, name: &str) -> Option<&Threshold> {
        let map = match tenant {
            false => &self.campaign,
            true => &self.tenant,
        };
        map.get(name).or_else(|| map.get(ANY))
    }

    /// Whether campaign (or tenant) `name` has a section of its own.
    pub fn names(&self, tenant: bool, name: &str) -> bool {
        match tenant {
            false => self.campaign.contains_key(name),
            true => self.tenant.contains_key(name),
        }
    }
}

/// Builds the thresholds of one kind (`campaign` or `tenant`).
pub(super) fn build(
    kind: &str,
    raw: HashMap<String, RawThreshold>,
) -> Result<HashMap<String, Threshold>, ShapingError> {
    let mut out = HashMap::with_capacity(raw.len());
    for (name, r) in raw {
        let key = format!("{kind}.{name:?}");
        if name != ANY && !crate::campaigns::labels::valid(name.as_bytes()) {
            return Err(ShapingError::invalid(key, "not a campaign or tenant name"));
        }
        let rate = |field: &str, v: Option<String>| -> Result<Option<f64>, ShapingError> {
            v.map(|v| {
                percent(&v).ok_or_else(|| {
                    ShapingError::invalid(
                        format!("{key}.{field}"),
                        format!("{v:?} is not a percentage in (0, 100] (write e.g. \"5%\")"),
                    )
                })
            })
            .transpose()
        };
        let t = Threshold {
            bounce_rate: rate("bounce_rate", r.bounce_rate)?,
            complaint_rate: rate("complaint_rate", r.complaint_rate)?,
            min_messages: r.min_messages.unwrap_or(MIN_MESSAGES),
        };
        if t.bounce_rate.is_none() && t.complaint_rate.is_none() {
            return Err(ShapingError::invalid(
                key,
                "set bounce_rate or complaint_rate (or both)",
            ));
        }
        out.insert(name, t);
    }
    Ok(out)
}

/// `"5%"` as 0.05; None unless in (0, 100].
fn percent(s: &str) -> Option<f64> {
    let n: f64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
    (n > 0.0 && n <= 100.0).then_some(n / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_crossing() {
        assert_eq!(percent("5%"), Some(0.05));
        assert_eq!(percent(" 0.3 %"), Some(0.003));
        for bad in ["5", "0%", "101%", "-1%", "x%"] {
            assert_eq!(percent(bad), None, "{bad}");
        }
        let t = Threshold {
            bounce_rate: Some(0.05),
            complaint_rate: Some(0.003),
            min_messages: 100,
        };
        assert_eq!(t.crossed(99, Some(0.5), None), None);
        assert_eq!(t.crossed(100, Some(0.05), Some(0.003)), None);
        assert!(
            t.crossed(100, Some(0.06), None)
                .unwrap()
                .starts_with("bounce rate 6.00%")
        );
        assert!(
            t.crossed(100, None, Some(0.004))
                .unwrap()
                .starts_with("complaint rate")
        );
    }
}
