//! Checking AUTH credentials for one shard's sessions.
//!
//! What it does: verifies a user name and password against the users file (argon2, on
//! glommio's blocking thread pool so the shard keeps serving other connections while a hash is
//! computed, at most [`MAX_VERIFYING`] at once), throttles clients with repeated failures
//! (counting each attempt before its check), delays every failure answer, and
//! remembers recent successes (as a keyed SHA-256 of user and password, never the password) so
//! that clients logging in on every connection do not pay argon2 each time.
//!
//! What it does not do: no SASL parsing (the session does it), no replies.
//!
//! Invariants: an authorization identity other than the user itself always fails; the success
//! cache is bounded and emptied whenever the users file is replaced. The failure throttle is the
//! one value shared by all shards (behind a mutex): the kernel spreads one client's connections
//! over the shards, so per-shard counts would multiply the limit by the number of shards. It is
//! touched only by AUTH commands, never on the mail path.

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::{Credentials, FailureThrottle, ThrottleLimits, Users};
use crate::config::AuthSection;

use super::session::AuthOutcome;

/// Successful logins remembered per shard.
const CACHE_LIMIT: usize = 10_000;

/// Password checks (argon2, deliberately expensive) running at once per shard.
pub const MAX_VERIFYING: usize = 4;

/// One running password check, counted while it lives (also if its future is dropped).
struct Running<'a>(&'a std::cell::Cell<usize>);

impl<'a> Running<'a> {
    fn new(count: &'a std::cell::Cell<usize>) -> Self {
        count.set(count.get() + 1);
        Running(count)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// What checking a password found.
enum Verdict {
    Right,
    Wrong,
    /// Not checked: [`MAX_VERIFYING`] checks are running.
    Busy,
}

/// The shard's credential checker.
pub struct Login {
    users: RefCell<Option<Arc<Users>>>,
    throttle: Arc<Mutex<FailureThrottle>>,
    cache: RefCell<HashSet<[u8; 32]>>,
    secret: [u8; 32],
    failure_delay: std::cell::Cell<Duration>,
    /// Password checks running now.
    verifying: std::cell::Cell<usize>,
}

impl Login {
    /// The failure throttle all shards share.
    pub fn shared_throttle(config: &AuthSection) -> Arc<Mutex<FailureThrottle>> {
        Arc::new(Mutex::new(FailureThrottle::new(ThrottleLimits {
            max_failures: config.max_failures,
            window: config.failure_window.0,
            ..ThrottleLimits::default()
        })))
    }

    /// A checker for `users` (None: every AUTH fails) with the shared `throttle`.
    pub fn new(
        config: &AuthSection,
        users: Option<Arc<Users>>,
        throttle: Arc<Mutex<FailureThrottle>>,
    ) -> Login {
        let mut secret = [0u8; 32];
        // A failure leaves the key zero: the cache still works, only less opaque in a dump.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret);
        Login {
            users: RefCell::new(users),
            throttle,
            cache: RefCell::new(HashSet::new()),
            secret,
            failure_delay: std::cell::Cell::new(config.failure_delay.0),
            verifying: std::cell::Cell::new(0),
        }
    }

    /// Takes a reloaded `[auth]`: the failure delay, and the throttle's limits (the throttle
    /// is shared: every shard sets the same values; failures counted so far stay counted).
    pub fn reload(&self, config: &AuthSection) {
        self.failure_delay.set(config.failure_delay.0);
        let mut throttle = self.throttle();
        let limits = ThrottleLimits {
            max_failures: config.max_failures,
            window: config.failure_window.0,
            ..throttle.limits()
        };
        throttle.set_limits(limits);
    }

    /// Replaces the users (after a reload) and forgets every remembered success.
    pub fn replace_users(&self, users: Option<Arc<Users>>) {
        *self.users.borrow_mut() = users;
        self.cache.borrow_mut().clear();
    }

    /// Checks credentials presented from `peer`; failures return after the failure delay.
    ///
    /// The attempt counts as a failure from the start (so that parallel attempts cannot get
    /// round the limit) and a success takes that count back. While [`MAX_VERIFYING`] password
    /// checks are running on the shard, a further one is answered as throttled at once
    /// (`454 4.7.0`, try again later) rather than queued behind them.
    pub async fn check(&self, peer: IpAddr, creds: &Credentials) -> AuthOutcome {
        let started = Instant::now();
        if !self.throttle().begin(peer, started) {
            glommio::timer::sleep(self.failure_delay.get()).await;
            return AuthOutcome::Throttled;
        }
        let verdict = match creds.authzid.is_empty() || creds.authzid == creds.username {
            true => self.verify(&creds.username, &creds.password).await,
            false => Verdict::Wrong,
        };
        match verdict {
            Verdict::Right => {
                self.throttle().refund(peer, started);
                AuthOutcome::Success
            }
            Verdict::Busy => {
                self.throttle().refund(peer, started);
                AuthOutcome::Throttled
            }
            Verdict::Wrong => {
                glommio::timer::sleep(self.failure_delay.get()).await;
                AuthOutcome::Failure
            }
        }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, FailureThrottle> {
        // A panic while holding it cannot leave the counts inconsistent: use them anyway.
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn verify(&self, user: &str, password: &str) -> Verdict {
        let key = self.key(user, password);
        if self.cache.borrow().contains(&key) {
            return Verdict::Right;
        }
        let Some(users) = self.users.borrow().clone() else {
            return Verdict::Wrong;
        };
        if self.verifying.get() >= MAX_VERIFYING {
            return Verdict::Busy;
        }
        let running = Running::new(&self.verifying);
        let (u, p) = (user.to_owned(), password.to_owned());
        let ok = glommio::executor()
            .spawn_blocking(move || users.verify(&u, &p))
            .await;
        drop(running);
        if !ok {
            return Verdict::Wrong;
        }
        {
            let mut cache = self.cache.borrow_mut();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key);
        }
        Verdict::Right
    }

    fn key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.secret);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }
}
