//! The stable driver of the fuzz targets in `fuzz/targets/` (the same bodies that `cargo fuzz`
//! runs on nightly): for each target it replays the committed seed corpus
//! (`fuzz/corpus/<target>/`), then runs inputs mutated from it by a seeded PRNG for a bounded
//! time.
//!
//! `MTA_FUZZ_SECONDS` (default 1.5) is the time per target; `MTA_FUZZ_SEED` fixes the PRNG
//! seed (default: from the clock). A failing input is reported with the target, the seed, the
//! iteration and the input in hex, and written to the system temporary directory.

#[path = "../fuzz/targets/config.rs"]
mod config;
#[path = "../fuzz/targets/data_decoder.rs"]
mod data_decoder;
#[path = "../fuzz/targets/dns_answer.rs"]
mod dns_answer;
#[path = "../fuzz/targets/proxy.rs"]
mod proxy;
#[path = "../fuzz/targets/reply.rs"]
mod reply;
#[path = "../fuzz/targets/report.rs"]
mod report;
#[path = "../fuzz/targets/shaping.rs"]
mod shaping;
#[path = "../fuzz/targets/smtp_command.rs"]
mod smtp_command;
#[path = "../fuzz/targets/spool.rs"]
mod spool;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest mutated input.
const MAX_INPUT: usize = 8192;
/// Most mutated inputs per target, whatever the time allowed.
const MAX_RUNS: u64 = 50_000_000;

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn seconds() -> Duration {
    let s = std::env::var("MTA_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.5);
    Duration::from_secs_f64(s.min(86_400.0))
}

fn seed() -> u64 {
    match std::env::var("MTA_FUZZ_SEED") {
        Ok(s) => s.parse().expect("MTA_FUZZ_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

/// The committed seeds of `target`, in file-name order.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Octets that matter to the parsers under test.
const INTERESTING: &[u8] = b"\r\n.:-<>= \t\0\x7f\xff\x80\"[]{}#,@0123456789";
/// Fragments spliced in whole.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n.\r\n",
    b"250-",
    b"250 ",
    b"MAIL FROM:<a@b.test>",
    b"RCPT TO:<c@d.test>",
    b" SIZE=1000",
    b" NOTIFY=SUCCESS,FAILURE",
    b" ORCPT=rfc822;x+2By@z",
    b"PROXY TCP4 ",
    b"\r\n\r\n\0\r\nQUIT\n",
    b"[[shape]]\n",
    b"\n[delivery]\n",
    b" = \"",
    b"\xc0\x0c",
    b"\x00\x0f\x00\x01",
];

/// One to four mutations of `input`, sometimes spliced with `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i) + 1;
                v.drain(i..i + n.min(16));
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = (rng.below(len - i) + 1).min(64);
                let piece = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, piece);
            }
            5 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(len + 1);
                v.splice(at..at, t.iter().copied());
            }
            6 if !other.is_empty() => {
                let at = rng.below(len + 1);
                let from = rng.below(other.len());
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            7 if len > 0 => v.truncate(rng.below(len)),
            _ => {
                let at = rng.below(len + 1);
                v.insert(at, INTERESTING[rng.below(INTERESTING.len())]);
            }
        }
    }
    v.truncate(MAX_INPUT);
    v
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `body` on `input`; on a panic, reports how to reproduce it and fails the test.
fn check(target: &str, body: fn(&[u8]), input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| body(input))).is_err() {
        let file = std::env::temp_dir().join(format!(
            "mta-fuzz-{target}-{}.bin",
            hex(&input[..input.len().min(8)])
        ));
        let _ = std::fs::write(&file, input);
        panic!(
            "fuzz target {target} failed on {what}; input ({} octets) saved to {}: {}",
            input.len(),
            file.display(),
            hex(input)
        );
    }
}

/// Replays the corpus of `target`, then mutates it for the allowed time.
fn drive(target: &str, body: fn(&[u8])) {
    let seeds = corpus(target);
    assert!(!seeds.is_empty(), "no seeds for {target}");
    for (path, bytes) in &seeds {
        check(target, body, bytes, &format!("seed {}", path.display()));
    }
    let seed = seed();
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let limit = seconds();
    let mut runs = 0u64;
    let mut last = Vec::new();
    while started.elapsed() < limit && runs < MAX_RUNS {
        let (_, base) = &seeds[rng.below(seeds.len())];
        // Mostly from a seed; sometimes from the previous mutant, to go deeper.
        let base = if rng.below(4) == 0 && !last.is_empty() {
            &last
        } else {
            base
        };
        let (_, other) = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, base, other);
        check(
            target,
            body,
            &input,
            &format!("run {runs} of MTA_FUZZ_SEED={seed}"),
        );
        last = input;
        runs += 1;
    }
    eprintln!(
        "{target}: {} seeds, {runs} mutated inputs in {:.1?} (MTA_FUZZ_SEED={seed})",
        seeds.len(),
        started.elapsed()
    );
}

#[test]
fn fuzz_smtp_command() {
    drive("smtp_command", smtp_command::run);
}

#[test]
fn fuzz_data_decoder() {
    drive("data_decoder", data_decoder::run);
}

#[test]
fn fuzz_reply() {
    drive("reply", reply::run);
}

#[test]
fn fuzz_report() {
    drive("report", report::run);
}

#[test]
fn fuzz_proxy() {
    drive("proxy", proxy::run);
}

#[test]
fn fuzz_spool() {
    drive("spool", spool::run);
}

#[test]
fn fuzz_dns_answer() {
    drive("dns_answer", dns_answer::run);
}

#[test]
fn fuzz_shaping() {
    drive("shaping", shaping::run);
}

#[test]
fn fuzz_config() {
    drive("config", config::run);
}
