//! The host's statistics table: per kind of row, up to `campaigns.top` named rows plus
//! `other`, each with its counters since start, per minute for the last hour and per hour for
//! the last day.
//!
//! What it does: adds a shard's counts to rows ([`Table::add`]), answers for a window
//! ([`Table::report`]: since start, or the last N minutes up to an hour at minute precision,
//! or the last N hours up to a day at hour precision), and keeps each campaign's and tenant's
//! counts since it was last resumed, for the thresholds.
//!
//! What it does not do: no locking (the owner holds it behind one mutex), no clock (the
//! caller passes the minute), no decisions about pausing.
//!
//! Invariants: at most `top` named rows per kind, plus the names the thresholds name (each
//! named in the shaping file, so bounded by it) and `other`; a name that gets no row is
//! counted in `other`; a named row with nothing for a day gives its place to the next new
//! name. Memory per row is fixed: 85 sets of counters.

use std::collections::HashMap;

use super::counts::{Counts, Dim, KINDS};

/// Minute buckets kept (the last hour).
const MINUTES: usize = 60;
/// Hour buckets kept (the last day).
const HOURS: usize = 24;
/// The longest window a report covers, in minutes.
pub const MAX_WINDOW_MINUTES: u64 = (HOURS * 60) as u64;
/// The name of the row that counts the names without a row of their own.
pub const OTHER: &str = "other";

/// One row: counts since start, per minute, per hour, and since the last resume.
#[derive(Clone, Debug)]
struct Row {
    total: Counts,
    since_resume: Counts,
    /// (minute, counts) in slot `minute % MINUTES`.
    minutes: Box<[(u64, Counts); MINUTES]>,
    /// (hour, counts) in slot `hour % HOURS`.
    hours: Box<[(u64, Counts); HOURS]>,
    last_minute: u64,
}

impl Row {
    fn new() -> Row {
        Row {
            total: Counts::default(),
            since_resume: Counts::default(),
            minutes: Box::new([(u64::MAX, Counts::default()); MINUTES]),
            hours: Box::new([(u64::MAX, Counts::default()); HOURS]),
            last_minute: 0,
        }
    }

    fn add(&mut self, c: &Counts, minute: u64) {
        self.total.add(c);
        self.since_resume.add(c);
        let slot = &mut self.minutes[(minute % MINUTES as u64) as usize];
        if slot.0 != minute {
            *slot = (minute, Counts::default());
        }
        slot.1.add(c);
        let hour = minute / 60;
        let slot = &mut self.hours[(hour % HOURS as u64) as usize];
        if slot.0 != hour {
            *slot = (hour, Counts::default());
        }
        slot.1.add(c);
        self.last_minute = minute;
    }

    /// The counts of the last `window` minutes (None: since start) at `minute`.
    fn window(&self, window: Option<u64>, minute: u64) -> Counts {
        let Some(w) = window else {
            return self.total;
        };
        let mut sum = Counts::default();
        if w <= MINUTES as u64 {
            let from = minute.saturating_sub(w.saturating_sub(1));
            for (m, c) in self.minutes.iter() {
                if *m != u64::MAX && *m >= from && *m <= minute {
                    sum.add(c);
                }
            }
        } else {
            let hour = minute / 60;
            let from = hour.saturating_sub(w.div_ceil(60).saturating_sub(1));
            for (h, c) in self.hours.iter() {
                if *h != u64::MAX && *h >= from && *h <= hour {
                    sum.add(c);
                }
            }
        }
        sum
    }
}

/// One kind's rows.
#[derive(Debug)]
struct Rows {
    named: HashMap<String, Row>,
    other: Row,
    /// The minute a full table last looked for an idle row to give away.
    looked: u64,
}

/// See the module header.
#[derive(Debug)]
pub struct Table {
    top: usize,
    rows: [Rows; KINDS],
}

impl Table {
    /// An empty table keeping `top` named rows per kind.
    pub fn new(top: usize) -> Table {
        let rows = || Rows {
            named: HashMap::new(),
            other: Row::new(),
            looked: u64::MAX,
        };
        Table {
            top,
            rows: std::array::from_fn(|_| rows()),
        }
    }

    /// Keeps `top` named rows per kind from now on (rows beyond it stay until idle for a day).
    pub fn set_top(&mut self, top: usize) {
        self.top = top;
    }

    /// Adds `c` to `name`'s row of kind `dim` at `minute`; `keep` names get a row whatever
    /// the table holds (the names thresholds are set for). Returns the name of the row that
    /// counted it (`name` or [`OTHER`]).
    pub fn add<'a>(
        &mut self,
        dim: Dim,
        name: &'a str,
        c: &Counts,
        minute: u64,
        keep: bool,
    ) -> &'a str {
        let top = self.top;
        let rows = &mut self.rows[dim.index()];
        if let Some(row) = rows.named.get_mut(name) {
            row.add(c, minute);
            return name;
        }
        if name != OTHER && (keep || rows.named.len() < top || rows.give_away(minute)) {
            let mut row = Row::new();
            row.add(c, minute);
            rows.named.insert(name.to_owned(), row);
            return name;
        }
        rows.other.add(c, minute);
        OTHER
    }

    /// The rows of kind `dim` with counts in the window (None: since start), `other` last
    /// when it has any, the others by name.
    pub fn report(&self, dim: Dim, window: Option<u64>, minute: u64) -> Vec<(String, Counts)> {
        let rows = &self.rows[dim.index()];
        let mut out: Vec<(String, Counts)> = rows
            .named
            .iter()
            .map(|(n, r)| (n.clone(), r.window(window, minute)))
            .filter(|(_, c)| !c.is_zero())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let other = rows.other.window(window, minute);
        if !other.is_zero() {
            out.push((OTHER.to_owned(), other));
        }
        out
    }

    /// The counts of `name` (kind `dim`) since it was last resumed (or since start).
    pub fn since_resume(&self, dim: Dim, name: &str) -> Option<&Counts> {
        self.rows[dim.index()]
            .named
            .get(name)
            .map(|r| &r.since_resume)
    }

    /// Starts `name`'s counts since resume afresh.
    pub fn resumed(&mut self, dim: Dim, name: &str) {
        if let Some(r) = self.rows[dim.index()].named.get_mut(name) {
            r.since_resume = Counts::default();
        }
    }

    /// Every named row's counts since start, per kind (for the metrics), `other` included.
    pub fn totals(&self, dim: Dim) -> Vec<(&str, &Counts)> {
        let rows = &self.rows[dim.index()];
        let mut out: Vec<(&str, &Counts)> = rows
            .named
            .iter()
            .map(|(n, r)| (n.as_str(), &r.total))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out.push((OTHER, &rows.other.total));
        out
    }
}

impl Rows {
    /// Frees the row idle longest if it has been idle for a day; looks at most once a minute
    /// (a full table with many new names would otherwise scan itself for each).
    fn give_away(&mut self, minute: u64) -> bool {
        if self.looked == minute {
            return false;
        }
        self.looked = minute;
        let idle = self
            .named
            .iter()
            .filter(|(_, r)| r.last_minute + MAX_WINDOW_MINUTES < minute)
            .min_by_key(|(_, r)| r.last_minute)
            .map(|(n, _)| n.clone());
        match idle {
            Some(n) => {
                // Its totals go to `other`, so that the kind's sum since start stays whole.
                if let Some(r) = self.named.remove(&n) {
                    self.other.total.add(&r.total);
                }
                true
            }
            None => false,
        }
    }
}

#[path = "table_saved.rs"]
mod saved;
pub use saved::SavedTable;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::counts::{ACCEPTED, DELIVERED};

    fn one(i: usize) -> Counts {
        let mut c = Counts::default();
        c.0[i] = 1;
        c
    }

    #[test]
    fn rows_are_bounded_and_windows_add_up() {
        let mut t = Table::new(2);
        let m = 10_000;
        assert_eq!(t.add(Dim::Campaign, "a", &one(ACCEPTED), m, false), "a");
        assert_eq!(t.add(Dim::Campaign, "b", &one(ACCEPTED), m, false), "b");
        assert_eq!(t.add(Dim::Campaign, "c", &one(ACCEPTED), m, false), OTHER);
        assert_eq!(
            t.add(Dim::Campaign, "kept", &one(ACCEPTED), m, true),
            "kept"
        );
        assert_eq!(
            t.add(Dim::Campaign, "a", &one(DELIVERED), m + 30, false),
            "a"
        );
        let names: Vec<String> = t
            .report(Dim::Campaign, None, m + 30)
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(names, ["a", "b", "kept", "other"]);
        // The last 10 minutes hold only the delivery; the last hour both.
        let a = |w| {
            t.report(Dim::Campaign, w, m + 30)
                .into_iter()
                .find(|r| r.0 == "a")
                .map(|r| r.1)
        };
        assert_eq!(
            a(Some(10)).map(|c| (c.0[ACCEPTED], c.0[DELIVERED])),
            Some((0, 1))
        );
        assert_eq!(
            a(Some(60)).map(|c| (c.0[ACCEPTED], c.0[DELIVERED])),
            Some((1, 1))
        );
        assert_eq!(
            a(Some(180)).map(|c| (c.0[ACCEPTED], c.0[DELIVERED])),
            Some((1, 1))
        );
        // A day later the windows are empty, the totals are not, and an idle row gives way.
        let later = m + MAX_WINDOW_MINUTES + 60;
        assert!(t.report(Dim::Campaign, Some(60), later).is_empty());
        assert_eq!(t.add(Dim::Campaign, "d", &one(ACCEPTED), later, false), "d");
        let total: u64 = t
            .totals(Dim::Campaign)
            .iter()
            .map(|(_, c)| c.0[ACCEPTED])
            .sum();
        assert_eq!(total, 5);
        // Since resume.
        assert_eq!(
            t.since_resume(Dim::Campaign, "d").map(|c| c.0[ACCEPTED]),
            Some(1)
        );
        t.resumed(Dim::Campaign, "d");
        assert_eq!(
            t.since_resume(Dim::Campaign, "d").map(|c| c.0[ACCEPTED]),
            Some(0)
        );
    }
}
