//! Open-loop arrival schedules: when each connection (and its first call) is due.
//!
//! A schedule yields *absolute* offsets from the start of the run, never relative sleeps, so the
//! engine cannot drift: a late wake-up issues every arrival that is already due in one batch and
//! the following arrivals keep their planned instants. Fixed schedules compute `k * period`
//! directly; random schedules sum the sampled gaps in `f64` seconds.
//!
//! Random schedules are deterministic for a given seed (httperf: the sequence depends only on
//! `--period` and `--client`), so two runs with the same options offer the same load.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Exp};
use thiserror::Error;

/// Interarrival-time distribution (httperf `--period=[d|e|u]T1[,T2]`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Distribution {
    /// Deterministic: one arrival every `period_s` seconds (httperf `d`, or `--rate`).
    Fixed {
        /// Seconds between arrivals.
        period_s: f64,
    },
    /// Exponential gaps (a Poisson process) with mean `mean_s` seconds (httperf `e`).
    Poisson {
        /// Mean seconds between arrivals.
        mean_s: f64,
    },
    /// Gaps uniform in `[low_s, high_s)` seconds (httperf `u`).
    Uniform {
        /// Smallest gap in seconds.
        low_s: f64,
        /// Largest gap (exclusive) in seconds.
        high_s: f64,
    },
}

/// Why a `--period` argument is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeriodError {
    /// Syntax or value problem; the message says what was expected.
    #[error("invalid --period '{given}': {why} (expected [d|e|u]T1[,T2] in seconds, e.g. e0.01, d0.001, u1,2)")]
    Invalid {
        /// The argument as given.
        given: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl Distribution {
    /// Parse httperf's `--period` syntax. `Ok(None)` means period 0: sequential connections
    /// (httperf starts the next connection when the previous one completes).
    pub fn parse_period(s: &str) -> Result<Option<Distribution>, PeriodError> {
        let err = |why| PeriodError::Invalid {
            given: s.to_string(),
            why,
        };
        let s_trim = s.trim();
        let (kind, rest) = match s_trim.chars().next() {
            Some(c @ ('d' | 'e' | 'u')) => (c, &s_trim[1..]),
            Some(_) => ('d', s_trim),
            None => return Err(err("empty")),
        };
        let mut parts = rest.split(',');
        let t1: f64 = parts
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| err("T1 is not a number"))?;
        let t2: Option<f64> = match parts.next() {
            Some(p) => Some(p.trim().parse().map_err(|_| err("T2 is not a number"))?),
            None => None,
        };
        if parts.next().is_some() {
            return Err(err("too many values"));
        }
        if !t1.is_finite() || t1 < 0.0 {
            return Err(err("T1 must be a finite number >= 0"));
        }
        match kind {
            'd' | 'e' if t2.is_some() => Err(err("only 'u' takes two values")),
            'd' if t1 == 0.0 => Ok(None),
            'e' if t1 == 0.0 => Ok(None),
            'd' => Ok(Some(Distribution::Fixed { period_s: t1 })),
            'e' => Ok(Some(Distribution::Poisson { mean_s: t1 })),
            _ => {
                let t2 = t2.ok_or_else(|| err("'u' needs two values T1,T2"))?;
                if !t2.is_finite() || t2 < t1 {
                    return Err(err("T2 must be a finite number >= T1"));
                }
                if t2 == 0.0 {
                    return Ok(None);
                }
                Ok(Some(Distribution::Uniform {
                    low_s: t1,
                    high_s: t2,
                }))
            }
        }
    }

    /// Mean arrivals per second.
    pub fn rate(&self) -> f64 {
        let mean = match *self {
            Distribution::Fixed { period_s } => period_s,
            Distribution::Poisson { mean_s } => mean_s,
            Distribution::Uniform { low_s, high_s } => (low_s + high_s) / 2.0,
        };
        1.0 / mean
    }

    /// The httperf spelling, e.g. `e0.01`.
    pub fn httperf_spelling(&self) -> String {
        match *self {
            Distribution::Fixed { period_s } => format!("d{period_s}"),
            Distribution::Poisson { mean_s } => format!("e{mean_s}"),
            Distribution::Uniform { low_s, high_s } => format!("u{low_s},{high_s}"),
        }
    }
}

/// An endless sequence of arrival offsets from the start of the run.
#[derive(Debug, Clone)]
pub struct Schedule {
    dist: Distribution,
    rng: StdRng,
    /// Index of the next arrival.
    index: u64,
    /// Offset of the next arrival in seconds (random schedules).
    next_s: f64,
    exp: Option<Exp<f64>>,
}

impl Schedule {
    /// A schedule whose random gaps come from `seed` (use the same seed for the same load).
    /// The first arrival is at offset 0.
    pub fn new(dist: Distribution, seed: u64) -> Self {
        let exp = match dist {
            Distribution::Poisson { mean_s } if mean_s > 0.0 => Exp::new(1.0 / mean_s).ok(),
            _ => None,
        };
        Schedule {
            dist,
            rng: StdRng::seed_from_u64(seed),
            index: 0,
            next_s: 0.0,
            exp,
        }
    }

    /// The offset of the next arrival, advancing the schedule.
    pub fn next_offset(&mut self) -> Duration {
        let at = match self.dist {
            Distribution::Fixed { period_s } => self.index as f64 * period_s,
            Distribution::Poisson { .. } => {
                let at = self.next_s;
                let gap = self.exp.map(|e| e.sample(&mut self.rng)).unwrap_or(0.0);
                self.next_s += gap;
                at
            }
            Distribution::Uniform { low_s, high_s } => {
                let at = self.next_s;
                let gap = if high_s > low_s {
                    self.rng.gen_range(low_s..high_s)
                } else {
                    low_s
                };
                self.next_s += gap;
                at
            }
        };
        self.index += 1;
        Duration::from_secs_f64(at.max(0.0))
    }
}

impl Iterator for Schedule {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(self.next_offset())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_httperf_period_syntax() {
        assert_eq!(
            Distribution::parse_period("e0.01").unwrap(),
            Some(Distribution::Poisson { mean_s: 0.01 })
        );
        assert_eq!(
            Distribution::parse_period("d0.001").unwrap(),
            Some(Distribution::Fixed { period_s: 0.001 })
        );
        assert_eq!(
            Distribution::parse_period("0.2").unwrap(),
            Some(Distribution::Fixed { period_s: 0.2 })
        );
        assert_eq!(
            Distribution::parse_period("u1,2").unwrap(),
            Some(Distribution::Uniform {
                low_s: 1.0,
                high_s: 2.0
            })
        );
        assert_eq!(Distribution::parse_period("0").unwrap(), None);
        for bad in ["", "x1", "e", "d-1", "u2,1", "u1", "d1,2", "u1,2,3", "enan"] {
            assert!(Distribution::parse_period(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fixed_schedule_is_exact_and_does_not_drift() {
        let mut s = Schedule::new(Distribution::Fixed { period_s: 1e-4 }, 1);
        let offsets: Vec<Duration> = (&mut s).take(1_000_001).collect();
        assert_eq!(offsets[0], Duration::ZERO);
        assert_eq!(offsets[10], Duration::from_micros(1000));
        // One million periods of 100 µs is 100 s, to within a nanosecond.
        let last = offsets[1_000_000];
        assert!((last.as_secs_f64() - 100.0).abs() < 1e-9, "{last:?}");
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
    }

    fn measured_rate(dist: Distribution, n: usize, seed: u64) -> f64 {
        let mut s = Schedule::new(dist, seed);
        let last = s.by_ref().take(n + 1).last().unwrap();
        n as f64 / last.as_secs_f64()
    }

    #[test]
    fn poisson_rate_matches_mean() {
        let r = measured_rate(
            Distribution::Poisson {
                mean_s: 1.0 / 5000.0,
            },
            200_000,
            7,
        );
        assert!((r / 5000.0 - 1.0).abs() < 0.01, "{r}");
    }

    #[test]
    fn poisson_gaps_look_exponential() {
        // For an exponential distribution the standard deviation equals the mean.
        let mut s = Schedule::new(Distribution::Poisson { mean_s: 0.01 }, 3);
        let v: Vec<f64> = s.by_ref().take(100_001).map(|d| d.as_secs_f64()).collect();
        let gaps: Vec<f64> = v.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((var.sqrt() / mean - 1.0).abs() < 0.02, "{mean} {var}");
    }

    #[test]
    fn uniform_gaps_stay_in_range() {
        let dist = Distribution::Uniform {
            low_s: 0.001,
            high_s: 0.003,
        };
        let mut s = Schedule::new(dist, 11);
        let v: Vec<f64> = s.by_ref().take(10_001).map(|d| d.as_secs_f64()).collect();
        assert!(v
            .windows(2)
            .all(|w| w[1] - w[0] >= 0.001 - 1e-9 && w[1] - w[0] < 0.003 + 1e-9));
        let r = measured_rate(dist, 100_000, 11);
        assert!((r / dist.rate() - 1.0).abs() < 0.01, "{r}");
    }

    #[test]
    fn random_schedules_are_deterministic_per_seed() {
        let dist = Distribution::Poisson { mean_s: 0.001 };
        let a: Vec<Duration> = Schedule::new(dist, 42).take(1000).collect();
        let b: Vec<Duration> = Schedule::new(dist, 42).take(1000).collect();
        let c: Vec<Duration> = Schedule::new(dist, 43).take(1000).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn rate_of_each_distribution() {
        assert!((Distribution::Fixed { period_s: 0.2 }.rate() - 5.0).abs() < 1e-9);
        assert!((Distribution::Poisson { mean_s: 0.01 }.rate() - 100.0).abs() < 1e-9);
        assert_eq!(
            Distribution::Fixed { period_s: 0.2 }.httperf_spelling(),
            "d0.2"
        );
    }
}
