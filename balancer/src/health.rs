//! Health of every target, sans-I/O: check results and `now` in, up/down
//! transitions out (keepalived's rise/fall).
//!
//! A target starts up. `fall` consecutive failed checks take an up target
//! down (it gets no new flows; its established flows continue, since the
//! engine follows its table); `rise` consecutive successes bring a down
//! target back. With the defaults (a check every 200 ms, fall 3) a target
//! that refuses connections is down within 600 ms, one that stops
//! answering within 600 ms plus the 200 ms check timeout. The checker
//! (the binary's `io::health`) only runs the checks and reports results.
//!
//! A balancer whose targets are all down withdraws from ownership
//! ([`Health::any_up`] feeds `membership::Node::set_withdrawn`).

#![forbid(unsafe_code)]

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One target's health as `/stats` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    /// Target name (`local`, `real0`, ...), as in the snapshot.
    pub name: String,
    /// Where it is checked (`addr:port`).
    pub addr: String,
    /// Whether it takes new flows.
    pub up: bool,
    /// Consecutive successes (while down) or failures (while up) so far.
    pub streak: u32,
    /// Checks run.
    pub checks: u64,
    /// Checks failed.
    pub failures: u64,
    /// Up/down transitions.
    pub transitions: u64,
    /// Milliseconds since the last transition (since start if none).
    pub since_ms: u64,
    /// Why the last failed check failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
struct Target {
    name: String,
    addr: String,
    up: bool,
    streak: u32,
    checks: u64,
    failures: u64,
    transitions: u64,
    since: Duration,
    last_error: Option<String>,
}

/// The health state machine of every target of one balancer. Owned by the
/// packet thread.
#[derive(Debug, Clone)]
pub struct Health {
    rise: u32,
    fall: u32,
    targets: Vec<Target>,
}

/// A change of a target's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Index of the target (as given to [`Health::new`]).
    pub index: usize,
    /// Its new state.
    pub up: bool,
}

impl Health {
    /// Targets as (name, addr:port), all up at `now`.
    pub fn new(targets: &[(String, String)], rise: u32, fall: u32, now: Duration) -> Self {
        Health {
            rise: rise.max(1),
            fall: fall.max(1),
            targets: targets
                .iter()
                .map(|(name, addr)| Target {
                    name: name.clone(),
                    addr: addr.clone(),
                    up: true,
                    streak: 0,
                    checks: 0,
                    failures: 0,
                    transitions: 0,
                    since: now,
                    last_error: None,
                })
                .collect(),
        }
    }

    /// Records one check result of target `index`; returns the transition
    /// it causes, if any. Unknown indices are ignored.
    pub fn record(
        &mut self,
        index: usize,
        now: Duration,
        result: Result<(), String>,
    ) -> Option<Transition> {
        let (rise, fall) = (self.rise, self.fall);
        let t = self.targets.get_mut(index)?;
        t.checks += 1;
        let ok = result.is_ok();
        if let Err(e) = result {
            t.failures += 1;
            t.last_error = Some(e);
        }
        // The streak counts results that argue for a change.
        if ok == t.up {
            t.streak = 0;
            return None;
        }
        t.streak += 1;
        if t.streak < if t.up { fall } else { rise } {
            return None;
        }
        t.up = ok;
        t.streak = 0;
        t.transitions += 1;
        t.since = now;
        Some(Transition { index, up: ok })
    }

    /// Whether target `index` is up.
    pub fn is_up(&self, index: usize) -> bool {
        self.targets.get(index).is_some_and(|t| t.up)
    }

    /// Whether any target is up (a balancer with none withdraws).
    pub fn any_up(&self) -> bool {
        self.targets.iter().any(|t| t.up)
    }

    /// Every target's state for `/stats`.
    pub fn doc(&self, now: Duration) -> Vec<TargetHealth> {
        self.targets
            .iter()
            .map(|t| TargetHealth {
                name: t.name.clone(),
                addr: t.addr.clone(),
                up: t.up,
                streak: t.streak,
                checks: t.checks,
                failures: t.failures,
                transitions: t.transitions,
                since_ms: now.saturating_sub(t.since).as_millis() as u64,
                last_error: t.last_error.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn two() -> Health {
        Health::new(
            &[
                ("local".into(), "10.0.0.1:80".into()),
                ("real0".into(), "10.1.0.2:80".into()),
            ],
            2,
            3,
            Duration::ZERO,
        )
    }

    fn fail() -> Result<(), String> {
        Err("connection refused".into())
    }

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_successes() {
        let mut h = two();
        // Checks every 200 ms: a dead target is down at the third failure.
        assert_eq!(h.record(1, 200 * MS, fail()), None);
        assert_eq!(h.record(1, 400 * MS, fail()), None);
        assert_eq!(
            h.record(1, 600 * MS, fail()),
            Some(Transition {
                index: 1,
                up: false
            })
        );
        assert!(!h.is_up(1) && h.is_up(0) && h.any_up());
        assert_eq!(h.record(1, 800 * MS, Ok(())), None);
        assert_eq!(
            h.record(1, 1000 * MS, Ok(())),
            Some(Transition { index: 1, up: true })
        );
        let d = h.doc(1500 * MS);
        assert_eq!((d[1].checks, d[1].failures, d[1].transitions), (5, 3, 2));
        assert_eq!(d[1].since_ms, 500);
        assert_eq!(d[1].last_error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let mut h = two();
        h.record(0, 100 * MS, fail());
        h.record(0, 200 * MS, fail());
        h.record(0, 300 * MS, Ok(()));
        h.record(0, 400 * MS, fail());
        h.record(0, 500 * MS, fail());
        assert!(h.is_up(0));
        assert_eq!(
            h.record(0, 600 * MS, fail()),
            Some(Transition {
                index: 0,
                up: false
            })
        );
    }

    #[test]
    fn all_down_means_withdraw() {
        let mut h = two();
        for i in 1..=3 {
            h.record(0, i * 100 * MS, fail());
            h.record(1, i * 100 * MS, fail());
        }
        assert!(!h.any_up());
        assert_eq!(h.record(7, MS, fail()), None, "unknown index ignored");
    }

    proptest! {
        /// Whatever the results: a transition happens exactly when the last
        /// `fall` (while up) or `rise` (while down) results all argue for it.
        #[test]
        fn transitions_follow_rise_and_fall(results in proptest::collection::vec(any::<bool>(), 0..60),
                                            rise in 1u32..4, fall in 1u32..4) {
            let mut h = Health::new(&[("t".into(), "a".into())], rise, fall, Duration::ZERO);
            let mut up = true;
            let mut run = 0u32;
            for (i, ok) in results.into_iter().enumerate() {
                let t = h.record(0, Duration::from_millis(i as u64), if ok { Ok(()) } else { fail() });
                if ok == up { run = 0; } else { run += 1; }
                let flip = run == if up { fall } else { rise };
                prop_assert_eq!(t.is_some(), flip);
                if flip { up = ok; run = 0; }
                prop_assert_eq!(h.is_up(0), up);
            }
        }
    }
}
