//! The host's campaign state: the statistics table, the paused set and the thresholds, shared
//! by every shard.
//!
//! What it does: merges what a shard counted ([`Campaigns::merge`], once a second per shard),
//! judges each campaign and tenant with a threshold against its counts since it was last
//! resumed and pauses it when it crosses one, records complaints ([`Campaigns::complained`]),
//! answers reports and pauses or resumes by hand, and writes the metrics.
//!
//! What it does not do: no counting per message (each shard's `Tally`), no scheduling (each
//! shard's queue parks the jobs of what is paused), no event log (the caller logs what
//! changed).
//!
//! Invariants: the table's mutex is taken once a second per shard, by a complaint, and by
//! admin requests, never per message; a campaign or tenant is paused by a threshold at most
//! once until it is resumed, and its counts since resume start afresh when it is.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use super::counts::{self, Counts, Dim, KINDS};
use super::pauses::{Pause, PauseError, Pauses};
use super::table::Table;
use crate::shaping::Thresholds;

/// A shard's counts since its last merge, per kind and name.
pub type Delta = [HashMap<String, Counts>; KINDS];

/// See the module header.
#[derive(Debug)]
pub struct Campaigns {
    table: Mutex<Table>,
    pauses: Pauses,
    thresholds: RwLock<Arc<Thresholds>>,
}

/// Minutes since the Unix epoch.
pub fn minute(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

fn unix(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Campaigns {
    /// The host's state with `top` rows per kind, its pauses kept in `spool_dir`.
    pub fn open(
        top: usize,
        spool_dir: &Path,
        thresholds: Thresholds,
    ) -> Result<Campaigns, PauseError> {
        Ok(Campaigns {
            table: Mutex::new(Table::new(top)),
            pauses: Pauses::open(spool_dir)?,
            thresholds: RwLock::new(Arc::new(thresholds)),
        })
    }

    /// Takes new thresholds (a reloaded shaping file).
    pub fn set_thresholds(&self, thresholds: Thresholds) {
        *self.thresholds.write().expect("thresholds lock") = Arc::new(thresholds);
    }

    /// Takes a reloaded `campaigns.top`.
    pub fn set_top(&self, top: usize) {
        self.table.lock().expect("table lock").set_top(top);
    }

    /// The paused set.
    pub fn pauses(&self) -> &Pauses {
        &self.pauses
    }

    /// Adds a shard's counts (emptying `delta`); returns what a threshold paused just now.
    pub fn merge(&self, delta: &mut Delta, now: SystemTime) -> Vec<Pause> {
        let thresholds = self.thresholds.read().expect("thresholds lock").clone();
        let m = minute(now);
        let mut judge: Vec<(Dim, String)> = Vec::new();
        {
            let mut table = self.table.lock().expect("table lock");
            for dim in Dim::ALL {
                for (name, c) in delta[dim.index()].drain() {
                    let labelled = matches!(dim, Dim::Campaign | Dim::Tenant);
                    let tenant = dim == Dim::Tenant;
                    let keep = labelled && thresholds.names(tenant, &name);
                    let row = table.add(dim, &name, &c, m, keep);
                    if labelled && row == name && thresholds.of(tenant, &name).is_some() {
                        judge.push((dim, name));
                    }
                }
            }
        }
        self.judge(&thresholds, judge, now)
    }

    /// Pauses what crossed its threshold (and is not paused yet).
    fn judge(
        &self,
        thresholds: &Thresholds,
        names: Vec<(Dim, String)>,
        now: SystemTime,
    ) -> Vec<Pause> {
        let mut paused = Vec::new();
        for (dim, name) in names {
            let tenant = dim == Dim::Tenant;
            let Some(t) = thresholds.of(tenant, &name) else {
                continue;
            };
            let counts = {
                let table = self.table.lock().expect("table lock");
                match table.since_resume(dim, &name) {
                    Some(c) => *c,
                    None => continue,
                }
            };
            let Some(reason) = t.crossed(
                counts.finished(),
                counts.bounce_rate(),
                counts.complaint_rate(),
            ) else {
                continue;
            };
            if self.pauses.get(dim, &name).is_some() {
                continue;
            }
            let pause = Pause {
                kind: dim.as_str().to_owned(),
                name,
                reason,
                by: "threshold".to_owned(),
                since_unix: unix(now),
            };
            match self.pauses.pause(dim, pause.clone()) {
                Ok(true) => paused.push(pause),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "a campaign crossed its threshold but its pause could not be saved; it goes on")
                }
            }
        }
        paused
    }

    /// Records `n` complaints about mail of the rows in `labels` (its campaign, tenant,
    /// provider, source or From domain, as far as they are known); returns what a threshold
    /// paused because of them. For the complaint intake (feedback loop reports).
    pub fn complained(&self, labels: &[(Dim, &str)], n: u64, now: SystemTime) -> Vec<Pause> {
        let mut delta: Delta = Default::default();
        for &(dim, name) in labels {
            let mut c = Counts::default();
            c.0[counts::COMPLAINED] = n;
            delta[dim.index()].insert(name.to_owned(), c);
        }
        self.merge(&mut delta, now)
    }

    /// Records a bounce of `class` reported after delivery (a DSN that came back) about mail
    /// of the rows in `labels`; returns what a threshold paused because of it.
    pub fn bounced_later(
        &self,
        labels: &[(Dim, &str)],
        class: crate::shaping::BounceClass,
        now: SystemTime,
    ) -> Vec<Pause> {
        let mut delta: Delta = Default::default();
        for &(dim, name) in labels {
            let mut c = Counts::default();
            c.bounce(class, 1);
            delta[dim.index()].insert(name.to_owned(), c);
        }
        self.merge(&mut delta, now)
    }

    /// The rows of kind `dim` over the last `window` minutes (None: since start).
    pub fn report(&self, dim: Dim, window: Option<u64>, now: SystemTime) -> Vec<(String, Counts)> {
        self.table
            .lock()
            .expect("table lock")
            .report(dim, window, minute(now))
    }

    /// Pauses campaign or tenant `name` by hand; false if it already was paused.
    pub fn pause(
        &self,
        dim: Dim,
        name: &str,
        reason: &str,
        by: &str,
        now: SystemTime,
    ) -> Result<bool, PauseError> {
        self.pauses.pause(
            dim,
            Pause {
                kind: dim.as_str().to_owned(),
                name: name.to_owned(),
                reason: reason.to_owned(),
                by: by.to_owned(),
                since_unix: unix(now),
            },
        )
    }

    /// Resumes `name`: its counts since resume start afresh, so that its threshold judges
    /// what is sent from now on. None if it was not paused.
    pub fn resume(&self, dim: Dim, name: &str) -> Result<Option<Pause>, PauseError> {
        let was = self.pauses.resume(dim, name)?;
        if was.is_some() {
            self.table.lock().expect("table lock").resumed(dim, name);
        }
        Ok(was)
    }

    /// The threshold that applies to `name`, as text for the admin views.
    pub fn threshold_text(&self, dim: Dim, name: &str) -> Option<String> {
        let t = self.thresholds.read().expect("thresholds lock").clone();
        let t = t.of(dim == Dim::Tenant, name)?;
        let pct = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{}%", r * 100.0));
        Some(format!(
            "bounce_rate {} complaint_rate {} min_messages {}",
            pct(t.bounce_rate),
            pct(t.complaint_rate),
            t.min_messages
        ))
    }

    /// The counts of `name` since it was last resumed (or since start).
    pub fn since_resume(&self, dim: Dim, name: &str) -> Option<Counts> {
        self.table
            .lock()
            .expect("table lock")
            .since_resume(dim, name)
            .copied()
    }

    /// The Prometheus text: recipients per campaign, tenant, provider, source and From domain,
    /// and event (`campaigns.top` names plus `other`), and the paused campaigns and tenants.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let table = self.table.lock().expect("table lock");
        for dim in Dim::ALL {
            let d = dim.as_str();
            let _ = writeln!(
                out,
                "# HELP mta_{d}_messages_total Recipients by {d} and event (the top names plus \"other\").\n\
                 # TYPE mta_{d}_messages_total counter"
            );
            for (name, c) in table.totals(dim) {
                let name = escape(name);
                for (i, event) in counts::NAMES.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "mta_{d}_messages_total{{{d}=\"{name}\",event=\"{event}\"}} {}",
                        c.0[i]
                    );
                }
            }
        }
        drop(table);
        let _ = writeln!(
            out,
            "# HELP mta_campaign_paused Paused campaigns and tenants (1 each).\n# TYPE mta_campaign_paused gauge"
        );
        for p in self.pauses.list() {
            let _ = writeln!(
                out,
                "mta_campaign_paused{{kind=\"{}\",name=\"{}\"}} 1",
                p.kind,
                escape(&p.name)
            );
        }
        out
    }
}

/// A Prometheus label value: `\`, `"` and line feeds escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::counts::{BOUNCED, DELIVERED};
    use crate::shaping::Threshold;

    #[test]
    fn a_threshold_pauses_once_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Thresholds::default();
        t.campaign.insert(
            "spring".into(),
            Threshold {
                bounce_rate: Some(0.1),
                complaint_rate: Some(0.01),
                min_messages: 10,
            },
        );
        let c = Campaigns::open(50, dir.path(), t).unwrap();
        let now = SystemTime::now();
        let send = |delivered: u64, bounced: u64| {
            let mut delta: Delta = Default::default();
            let mut counts = Counts::default();
            counts.0[DELIVERED] = delivered;
            counts.0[BOUNCED] = bounced;
            delta[0].insert("spring".into(), counts);
            delta[0].insert("summer".into(), counts);
            c.merge(&mut delta, now)
        };
        // Too few to judge, then under the rate.
        assert!(send(5, 1).is_empty());
        assert!(send(20, 0).is_empty());
        let paused = send(0, 3);
        assert_eq!(paused.len(), 1);
        assert_eq!(paused[0].name, "spring");
        assert!(
            paused[0].reason.starts_with("bounce rate"),
            "{}",
            paused[0].reason
        );
        assert!(send(0, 3).is_empty(), "paused once");
        assert!(
            c.pauses().get(Dim::Campaign, "summer").is_none(),
            "no threshold"
        );
        // Resumed: judged afresh on what follows.
        assert!(c.resume(Dim::Campaign, "spring").unwrap().is_some());
        assert!(send(10, 0).is_empty());
        // A complaint rate of 1/10 crosses 1%.
        let paused = c.complained(&[(Dim::Campaign, "spring")], 1, now);
        assert_eq!(paused.len(), 1);
        assert!(
            paused[0].reason.starts_with("complaint rate"),
            "{}",
            paused[0].reason
        );
        let text = c.metrics();
        assert!(
            text.contains(
                "mta_campaign_messages_total{campaign=\"spring\",event=\"complained\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("mta_campaign_paused{kind=\"campaign\",name=\"spring\"} 1"),
            "{text}"
        );
        // The pause survives reopening.
        let again = Campaigns::open(50, dir.path(), Thresholds::default()).unwrap();
        assert!(again.pauses().get(Dim::Campaign, "spring").is_some());
    }
}
