//! The statistics table in a file: what is saved so that the figures survive a restart.
//!
//! What it does: [`Table::to_saved`] copies every row (counts since start, since the last
//! resume, the minute and hour buckets that hold anything) into a [`SavedTable`], and
//! [`Table::restore`] puts them back into an empty table at start.
//!
//! What it does not do: no file I/O (the host's `Campaigns` writes and reads the file), no
//! merging with counts already in the table.
//!
//! Invariants: a row whose counters do not have this version's length is left out (a file of
//! another version never shifts a counter into another's place); at most [`MAX_ROWS`] named
//! rows per kind are restored, so a damaged file cannot make the table grow without bound.

use serde::{Deserialize, Serialize};

use super::{HOURS, MINUTES, Row, Table};
use crate::campaigns::counts::{Counts, Dim, LEN};

/// The most named rows of one kind a file may give back.
pub const MAX_ROWS: usize = 100_000;

/// The table as saved.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedTable {
    /// The layout version of the file (1).
    pub v: u32,
    kinds: Vec<SavedKind>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedKind {
    kind: String,
    rows: Vec<SavedRow>,
    other: SavedRow,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedRow {
    name: String,
    total: Vec<u64>,
    since_resume: Vec<u64>,
    minutes: Vec<(u64, Vec<u64>)>,
    hours: Vec<(u64, Vec<u64>)>,
    last_minute: u64,
}

fn save_row(name: &str, r: &Row) -> SavedRow {
    let used = |slots: &[(u64, Counts)]| -> Vec<(u64, Vec<u64>)> {
        slots
            .iter()
            .filter(|(at, c)| *at != u64::MAX && !c.is_zero())
            .map(|(at, c)| (*at, c.0.to_vec()))
            .collect()
    };
    SavedRow {
        name: name.to_owned(),
        total: r.total.0.to_vec(),
        since_resume: r.since_resume.0.to_vec(),
        minutes: used(&r.minutes[..]),
        hours: used(&r.hours[..]),
        last_minute: r.last_minute,
    }
}

fn counts(v: &[u64]) -> Option<Counts> {
    let a: [u64; LEN] = v.try_into().ok()?;
    Some(Counts(a))
}

fn load_row(s: &SavedRow) -> Option<Row> {
    let mut row = Row::new();
    row.total = counts(&s.total)?;
    row.since_resume = counts(&s.since_resume)?;
    for (minute, c) in &s.minutes {
        row.minutes[(minute % MINUTES as u64) as usize] = (*minute, counts(c)?);
    }
    for (hour, c) in &s.hours {
        row.hours[(hour % HOURS as u64) as usize] = (*hour, counts(c)?);
    }
    row.last_minute = s.last_minute;
    Some(row)
}

impl Table {
    /// Every row, for the file.
    pub fn to_saved(&self) -> SavedTable {
        let kinds = Dim::ALL
            .iter()
            .map(|dim| {
                let rows = &self.rows[dim.index()];
                let mut named: Vec<SavedRow> =
                    rows.named.iter().map(|(n, r)| save_row(n, r)).collect();
                named.sort_by(|a, b| a.name.cmp(&b.name));
                SavedKind {
                    kind: dim.as_str().to_owned(),
                    rows: named,
                    other: save_row(super::OTHER, &rows.other),
                }
            })
            .collect();
        SavedTable { v: 1, kinds }
    }

    /// Puts the rows of `saved` back (into a table that has none yet); returns how many named
    /// rows came back.
    pub fn restore(&mut self, saved: &SavedTable) -> usize {
        if saved.v != 1 {
            return 0;
        }
        let mut restored = 0;
        for kind in &saved.kinds {
            let Some(dim) = Dim::parse(&kind.kind) else {
                continue;
            };
            let rows = &mut self.rows[dim.index()];
            if let Some(other) = load_row(&kind.other) {
                rows.other = other;
            }
            for s in kind.rows.iter().take(MAX_ROWS) {
                if let Some(row) = load_row(s) {
                    rows.named.insert(s.name.clone(), row);
                    restored += 1;
                }
            }
        }
        restored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::counts::{ACCEPTED, DELIVERED};

    #[test]
    fn a_saved_table_comes_back_whole() {
        let mut t = Table::new(10);
        let mut c = Counts::default();
        c.0[ACCEPTED] = 3;
        c.0[DELIVERED] = 2;
        t.add(Dim::Campaign, "spring", &c, 1_000, false);
        t.add(Dim::Campaign, "spring", &c, 1_061, false);
        t.add(Dim::Tenant, "acme", &c, 1_061, false);
        t.resumed(Dim::Tenant, "acme");
        let text = serde_json::to_string(&t.to_saved()).unwrap();
        let mut back = Table::new(10);
        let saved: SavedTable = serde_json::from_str(&text).unwrap();
        assert_eq!(back.restore(&saved), 2);
        assert_eq!(
            back.report(Dim::Campaign, None, 1_061),
            t.report(Dim::Campaign, None, 1_061)
        );
        assert_eq!(
            back.report(Dim::Campaign, Some(5), 1_061),
            t.report(Dim::Campaign, Some(5), 1_061)
        );
        assert_eq!(
            back.report(Dim::Campaign, Some(120), 1_061),
            t.report(Dim::Campaign, Some(120), 1_061)
        );
        assert!(back.since_resume(Dim::Tenant, "acme").unwrap().is_zero());
        // A row of another layout is left out.
        let bad = text.replacen("[3,2", "[3", 1);
        let saved: SavedTable = serde_json::from_str(&bad).unwrap();
        assert_eq!(Table::new(10).restore(&saved), 1);
    }
}
