//! The reporter thread: the host's counts per reporting period, saved to disk, handed to
//! shard 0 for sending when a period is due.
//!
//! What it does: merges the counts the shards send ([`StoreMsg::Tally`]) into the period the
//! message arrives in (periods are `report_interval` long, aligned on the Unix epoch: UTC days
//! by default); saves every period not yet reported to `<dir>/state.json` (temporary file,
//! then rename) every `save_interval` and when it stops; a period is due at its end plus a
//! random delay (up to an hour, at most a tenth of the period, after two flushes of the
//! shards, RFC 8460 4.1); a due period is written to `<dir>/pending/<start>.json`, dropped from
//! the state, and handed to shard 0 as a [`ReportJob`]; shard 0 removes the pending file once
//! the reports are queued or uploaded. Pending files found at start are handed over again, and
//! a kept period whose length is not the configured one (the period was changed) is due at
//! once.
//!
//! What it does not do: no counting (`recorder.rs`), no report format or sending.
//!
//! Invariants: runs on a thread of its own: the shards never wait for it (they send on an
//! unbounded channel at most one tally per flush each, each within the caps); a period is in
//! the state file or in a pending file (a crash between the two writes leaves both, and the
//! state's copy is dropped at start), never in neither once saved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::tally::{Caps, Tally};

/// What the shards tell the reporter.
pub enum StoreMsg {
    /// Counts of a shard since its last flush.
    Tally(Tally),
    /// Save and end.
    Stop,
}

/// A period to report.
#[derive(Debug)]
pub struct ReportJob {
    /// Its first second (Unix).
    pub start: u64,
    /// Its end (Unix, exclusive).
    pub end: u64,
    /// What was counted.
    pub tally: Tally,
    /// Its pending file, removed once the reports are sent.
    pub file: PathBuf,
}

/// One period's counts, as saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Period {
    start: u64,
    end: u64,
    tally: Tally,
}

/// The reporter's settings.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// `<spool.path>/tls-rpt`.
    pub dir: PathBuf,
    /// The caps of a period's counts.
    pub caps: Caps,
    /// The period length.
    pub interval: Duration,
    /// How often the shards flush.
    pub flush: Duration,
    /// How often the state is saved.
    pub save: Duration,
}

/// How often a shard hands its counts over for a period of `interval`: every 5 s, or a tenth
/// of a short period (at least 100 ms).
pub fn flush_interval(interval: Duration) -> Duration {
    (interval / 10).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    match n {
        0 => 0,
        n => u64::from_le_bytes(b) % n,
    }
}

struct Store {
    s: StoreSettings,
    periods: BTreeMap<u64, (Period, u64)>,
    dirty: bool,
    jobs: futures_channel::mpsc::UnboundedSender<ReportJob>,
}

/// Starts the reporter thread; it loads what `settings.dir` holds first. Jobs go to `jobs`.
pub fn start(
    settings: StoreSettings,
    jobs: futures_channel::mpsc::UnboundedSender<ReportJob>,
) -> std::io::Result<(mpsc::Sender<StoreMsg>, std::thread::JoinHandle<()>)> {
    std::fs::create_dir_all(settings.dir.join("pending"))?;
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("tls-rpt".into())
        .spawn(move || {
            let mut store = Store {
                s: settings,
                periods: BTreeMap::new(),
                dirty: false,
                jobs,
            };
            store.load();
            store.run(&rx);
        })?;
    Ok((tx, handle))
}

impl Store {
    fn state_path(&self) -> PathBuf {
        self.s.dir.join("state.json")
    }

    fn due_after(&self, end: u64, length: u64) -> u64 {
        if length != self.s.interval.as_secs() {
            return 0;
        }
        let spread = (length / 10).min(3600);
        end + 2 * self.s.flush.as_secs().max(1) + random_below(spread + 1)
    }

    fn load(&mut self) {
        let pending = self.s.dir.join("pending");
        let mut reported = Vec::new();
        for entry in std::fs::read_dir(&pending).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                match read::<Period>(&path) {
                    Some(p) => {
                        reported.push(p.start);
                        self.hand_over(p, path);
                    }
                    None => {
                        tracing::warn!(file = %path.display(), "unreadable TLS report period; left as it is")
                    }
                }
            }
        }
        if let Some(list) = read::<Vec<Period>>(&self.state_path()) {
            for p in list.into_iter().filter(|p| !reported.contains(&p.start)) {
                let due = self.due_after(p.end, p.end.saturating_sub(p.start));
                self.periods.insert(p.start, (p, due));
            }
        }
    }

    fn run(&mut self, rx: &mpsc::Receiver<StoreMsg>) {
        let mut saved = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(200).min(self.s.flush)) {
                Ok(StoreMsg::Tally(t)) => self.add(t),
                Ok(StoreMsg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    while let Ok(StoreMsg::Tally(t)) = rx.try_recv() {
                        self.add(t);
                    }
                    self.save();
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            self.report_due();
            if self.dirty && saved.elapsed() >= self.s.save {
                self.save();
                saved = Instant::now();
            }
        }
    }

    fn add(&mut self, t: Tally) {
        let length = self.s.interval.as_secs().max(1);
        let start = now_unix() / length * length;
        let due = self.due_after(start + length, length);
        let (period, _) = self.periods.entry(start).or_insert_with(|| {
            (
                Period {
                    start,
                    end: start + length,
                    tally: Tally::default(),
                },
                due,
            )
        });
        period.tally.merge(self.s.caps, t);
        self.dirty = true;
    }

    fn report_due(&mut self) {
        let now = now_unix();
        let due: Vec<u64> = self
            .periods
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| *k)
            .collect();
        for start in due {
            let Some((period, _)) = self.periods.remove(&start) else {
                continue;
            };
            let path = self.s.dir.join("pending").join(format!("{start}.json"));
            if let Err(e) = write(&path, &period) {
                tracing::warn!(file = %path.display(), error = %e, "cannot keep a TLS report period; sending it from memory");
            }
            self.save();
            self.hand_over(period, path);
        }
    }

    fn hand_over(&self, p: Period, file: PathBuf) {
        let job = ReportJob {
            start: p.start,
            end: p.end,
            tally: p.tally,
            file,
        };
        if self.jobs.unbounded_send(job).is_err() {
            tracing::warn!(
                "TLS reports cannot be sent now (shard 0 stopped); kept for the next start"
            );
        }
    }

    fn save(&mut self) {
        let list: Vec<&Period> = self.periods.values().map(|(p, _)| p).collect();
        match write(&self.state_path(), &list) {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::warn!(dir = %self.s.dir.display(), error = %e, "cannot save the TLS report counts")
            }
        }
    }
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes `value` to `path` durably: a temporary file, synced, renamed over the old one.
fn write<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls_rpt::tally::{Outcome, PolicyDesc, PolicyKind};

    #[test]
    fn counts_survive_a_restart_and_become_due() {
        let dir = tempfile::tempdir().unwrap();
        let settings = |interval| StoreSettings {
            dir: dir.path().to_owned(),
            caps: Caps {
                domains: 10,
                details: 10,
            },
            interval,
            flush: Duration::from_millis(100),
            save: Duration::from_secs(3600),
        };
        let (jobs_tx, mut jobs_rx) = futures_channel::mpsc::unbounded();
        let (tx, handle) = start(settings(Duration::from_secs(86_400)), jobs_tx).unwrap();
        let mut t = Tally::default();
        let p = PolicyDesc {
            kind: PolicyKind::Sts,
            strings: vec![],
            mx: vec![],
        };
        t.count(
            settings(Duration::ZERO).caps,
            "a.test",
            &p,
            Outcome::Success,
        );
        tx.send(StoreMsg::Tally(t)).unwrap();
        tx.send(StoreMsg::Stop).unwrap();
        handle.join().unwrap();
        assert!(jobs_rx.try_recv().is_err(), "nothing due yet");
        // Started again with another period: the kept day is due at once.
        let (jobs_tx, mut jobs_rx) = futures_channel::mpsc::unbounded();
        let (tx, handle) = start(settings(Duration::from_secs(5)), jobs_tx).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let job = loop {
            if let Ok(job) = jobs_rx.try_recv() {
                break job;
            }
            assert!(Instant::now() < deadline, "no job");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(job.tally.domains["a.test"][0].success, 1);
        assert_eq!(job.end - job.start, 86_400);
        assert!(job.file.exists());
        tx.send(StoreMsg::Stop).unwrap();
        handle.join().unwrap();
        let state: Vec<Period> = read(&dir.path().join("state.json")).unwrap();
        assert!(state.is_empty());
    }
}
