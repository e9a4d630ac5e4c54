//! `harness reproduce` as data (pure, no I/O): the paper's Table I
//! configurations and the testbed each runs on, the default rate sweeps
//! derived from a profile's capacities, the sweep's validation, the
//! interleaved order of the points, what `--resume` still has to measure,
//! and the ETA. [`crate::reproduce`] does the I/O.

use std::collections::{BTreeMap, BTreeSet};

use reports::model::{ConfigKind, Point, SweepSpec, TABLE_I};

use crate::experiment::{fmt_num, Method};
use crate::profile::Profile;

/// Repetitions of a full run.
pub const FULL_REPEAT: u32 = 3;
/// Rates per configuration of a full run.
pub const FULL_RATES: usize = 5;
/// Rates per configuration of `--quick`.
pub const QUICK_RATES: usize = 4;
/// Measured seconds per point of a full run (two of httperf's 5 s reply-rate samples).
pub const FULL_DURATION_S: f64 = 10.0;
/// Measured seconds per point of `--quick` (one complete 5 s reply-rate sample).
pub const QUICK_DURATION_S: f64 = 6.0;
/// Warm-up seconds before each point of a full run.
pub const FULL_WARMUP_S: f64 = 2.0;
/// Warm-up seconds before each point of `--quick`.
pub const QUICK_WARMUP_S: f64 = 1.0;
/// loadgen/httperf `--timeout` of every point, seconds (as `harness run`'s default).
pub const TIMEOUT_S: f64 = 5.0;
/// Client hosts, as in the paper (three httperf machines).
pub const CLIENTS: u32 = 3;
/// The lowest default rate, as a fraction of the plain (bi-active off) knee.
pub const SWEEP_LOW: f64 = 0.5;
/// The highest default rate, as a multiple of the bi-active knee.
pub const SWEEP_HIGH: f64 = 1.5;
/// Default rates are rounded to multiples of this (req/s).
pub const RATE_STEP: f64 = 10.0;

/// The load generator of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Generator {
    /// This project's loadgen, one process per client host, results merged exactly.
    Loadgen,
    /// The paper's httperf 0.9.0, one process per client host, summaries parsed.
    Httperf,
}

impl Generator {
    /// `loadgen` / `httperf`, as stored in `results.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Generator::Loadgen => "loadgen",
            Generator::Httperf => "httperf",
        }
    }

    /// The inverse of [`Generator::as_str`].
    pub fn parse(s: &str) -> Option<Generator> {
        match s {
            "loadgen" => Some(Generator::Loadgen),
            "httperf" => Some(Generator::Httperf),
            _ => None,
        }
    }
}

/// One Table I configuration and what realizes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Its name, e.g. `1lb-bi-nat`.
    pub name: &'static str,
    /// Number of load balancers.
    pub lbs: u32,
    /// Whether each balancer's own server takes flows.
    pub bi_active: bool,
    /// Forwarding method.
    pub method: Method,
    /// Built-in topology it runs on.
    pub topology: &'static str,
}

impl Config {
    /// The configuration called `name` (one of [`TABLE_I`]).
    pub fn get(name: &str) -> Option<Config> {
        let name = *TABLE_I.iter().find(|n| **n == name)?;
        let k = ConfigKind::parse(name)?;
        let method = k.method;
        let topology = match (k.lbs, method) {
            (1, Method::Nat) => "1lb-1rs",
            (1, Method::Dr) => "1lb-1rs-dr",
            (2, Method::Nat) => "2lb-2rs",
            (2, Method::Dr) => "2lb-2rs-dr",
            _ => return None,
        };
        Some(Config {
            name,
            lbs: k.lbs,
            bi_active: k.bi_active,
            method,
            topology,
        })
    }
}

/// Why a sweep cannot run: one line naming the option, what is wrong and
/// what is expected.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SweepError(pub String);

fn bad<T>(m: String) -> Result<T, SweepError> {
    Err(SweepError(m))
}

/// `--configs`: known names, no duplicates, at least one.
pub fn parse_configs(list: &str) -> Result<Vec<String>, SweepError> {
    let mut out: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim) {
        if Config::get(name).is_none() {
            return bad(format!(
                "--configs: unknown configuration `{name}`; expected a comma-separated list of {}",
                TABLE_I.join(", ")
            ));
        }
        if out.iter().any(|n| n == name) {
            return bad(format!("--configs: `{name}` is listed twice"));
        }
        out.push(name.to_string());
    }
    Ok(out)
}

/// `--rates`: comma-separated positive numbers, strictly increasing.
pub fn parse_rates(list: &str) -> Result<Vec<f64>, SweepError> {
    let mut out: Vec<f64> = Vec::new();
    for (i, s) in list.split(',').map(str::trim).enumerate() {
        let r: f64 = s.parse().map_err(|_| {
            SweepError(format!(
                "--rates: `{s}` (item {}) is not a number; expected increasing positive rates in req/s, e.g. 200,400,600",
                i + 1
            ))
        })?;
        if !(r.is_finite() && r > 0.0) {
            return bad(format!(
                "--rates: `{s}` (item {}) is not a positive rate; expected increasing positive rates in req/s",
                i + 1
            ));
        }
        if let Some(prev) = out.last().filter(|p| **p >= r) {
            return bad(format!(
                "--rates: {} follows {} (item {}); expected strictly increasing rates",
                fmt_num(r),
                fmt_num(*prev),
                i + 1
            ));
        }
        out.push(r);
    }
    if out.len() < 2 {
        return bad("--rates: give at least 2 rates for a curve".into());
    }
    Ok(out)
}

/// Where the servers of `lbs` balancers saturate under `profile`, req/s:
/// (plain, bi-active). A server's capacity is its CPU share over the work
/// per request; plain: the `lbs` real servers; bi-active: round robin splits
/// evenly over the balancers' own servers and the real servers, so the
/// slower of the two limits each pair. (`paper`: 400 and 800 per LB; the
/// calibration in [`crate::profile`] measured ~380 and ~780-820.)
pub fn knees(profile: &Profile, lbs: u32) -> Result<(f64, f64), SweepError> {
    let (Some(work), Some(rs), Some(lb)) = (
        profile.server_work_us.filter(|w| *w > 0),
        profile.cpu.realserver,
        profile.cpu.balancer,
    ) else {
        return bad(format!(
            "profile `{}` has no server_work_us or no realserver/balancer CPU share, so the knees (and default rates) are unknown; give --rates",
            profile.name
        ));
    };
    let per = |cores: f64| cores * 1e6 / f64::from(work);
    let n = f64::from(lbs);
    Ok((n * per(rs), n * 2.0 * per(rs).min(per(lb))))
}

/// `n` rates from [`SWEEP_LOW`] × the plain knee to [`SWEEP_HIGH`] × the
/// bi-active knee, evenly spaced and rounded to [`RATE_STEP`], so both
/// knees of a figure sit inside the sweep.
pub fn default_rates(profile: &Profile, lbs: u32, n: usize) -> Result<Vec<f64>, SweepError> {
    let (off, on) = knees(profile, lbs)?;
    let (lo, hi) = (SWEEP_LOW * off, SWEEP_HIGH * on);
    let step = (hi - lo) / (n.max(2) - 1) as f64;
    Ok((0..n.max(2))
        .map(|i| ((lo + step * i as f64) / RATE_STEP).round() * RATE_STEP)
        .collect())
}

/// What the user asked for (`None`: the default of full or quick mode).
#[derive(Clone, Debug, Default)]
pub struct SweepArgs {
    /// `--configs`.
    pub configs: Option<String>,
    /// `--rates`.
    pub rates: Option<String>,
    /// `--repeat`.
    pub repeat: Option<u32>,
    /// `--duration`, seconds.
    pub duration_s: Option<f64>,
    /// `--quick`.
    pub quick: bool,
}

/// The validated sweep: every default filled in.
pub fn sweep_spec(
    a: &SweepArgs,
    generator: Generator,
    profile: &Profile,
) -> Result<SweepSpec, SweepError> {
    let configs = match &a.configs {
        Some(l) => parse_configs(l)?,
        None => TABLE_I.iter().map(|s| s.to_string()).collect(),
    };
    let given = a.rates.as_deref().map(parse_rates).transpose()?;
    let n = if a.quick { QUICK_RATES } else { FULL_RATES };
    let mut rates = BTreeMap::new();
    for c in &configs {
        let cfg = Config::get(c).ok_or_else(|| SweepError(format!("unknown configuration {c}")))?;
        let r = match &given {
            Some(r) => r.clone(),
            None => default_rates(profile, cfg.lbs, n)?,
        };
        rates.insert(c.clone(), r);
    }
    let repeat = a.repeat.unwrap_or(if a.quick { 1 } else { FULL_REPEAT });
    crate::repeat::validate(repeat).or_else(bad)?;
    let duration_s = a.duration_s.unwrap_or(if a.quick {
        QUICK_DURATION_S
    } else {
        FULL_DURATION_S
    });
    if !(duration_s.is_finite() && (1.0..=600.0).contains(&duration_s)) {
        return bad(format!(
            "--duration {}s: expected 1 s to 10 min per point",
            fmt_num(duration_s)
        ));
    }
    Ok(SweepSpec {
        configs,
        rates,
        repeat,
        duration_s,
        warmup_s: if a.quick {
            QUICK_WARMUP_S
        } else {
            FULL_WARMUP_S
        },
        quick: a.quick,
        generator: generator.as_str().into(),
        clients: CLIENTS,
        profile: profile.name.clone(),
    })
}

/// One point of the plan: (configuration, offered rate, repetition).
#[derive(Clone, Debug, PartialEq)]
pub struct PointKey {
    /// Configuration name.
    pub config: String,
    /// Offered rate of all clients together, req/s.
    pub rate: f64,
    /// Index of `rate` in the configuration's sweep.
    pub rate_index: usize,
    /// Repetition, 0-based.
    pub rep: u32,
}

/// Every point in measuring order: for each repetition, for each rate
/// index, every configuration, the configurations' order rotated by one
/// at each step, so that no configuration always comes first (or right
/// after another) and slow drift on a shared machine spreads over all.
pub fn plan(spec: &SweepSpec) -> Vec<PointKey> {
    let n = spec.configs.len();
    let max_rates = spec.rates.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    let mut step = 0usize;
    for rep in 0..spec.repeat {
        for ri in 0..max_rates {
            for k in 0..n {
                let c = &spec.configs[(k + step) % n];
                if let Some(&rate) = spec.rates.get(c).and_then(|r| r.get(ri)) {
                    out.push(PointKey {
                        config: c.clone(),
                        rate,
                        rate_index: ri,
                        rep,
                    });
                }
            }
            step += 1;
        }
    }
    out
}

/// The points of `plan` not yet in `done` (what `--resume` measures), in
/// plan order.
pub fn missing(plan: &[PointKey], done: &[Point]) -> Vec<PointKey> {
    plan.iter()
        .filter(|k| !done.iter().any(|p| p.is(&k.config, k.rate, k.rep)))
        .cloned()
        .collect()
}

/// Checks that the points of a stored run belong to its spec (a file edited
/// by hand, or of another sweep, is refused rather than mixed in).
pub fn check_points(spec: &SweepSpec, done: &[Point]) -> Result<(), SweepError> {
    let keys = plan(spec);
    let mut seen = BTreeSet::new();
    for p in done {
        if !keys.iter().any(|k| p.is(&k.config, k.rate, k.rep)) {
            return bad(format!(
                "point ({}, {} req/s, rep {}) is not part of the run's own sweep",
                p.config,
                fmt_num(p.offered_rate),
                p.rep
            ));
        }
        if !seen.insert((p.config.clone(), p.offered_rate.to_bits(), p.rep)) {
            return bad(format!(
                "point ({}, {} req/s, rep {}) is there twice",
                p.config,
                fmt_num(p.offered_rate),
                p.rep
            ));
        }
    }
    Ok(())
}

/// Seconds left: the mean of the points measured in this invocation times
/// the points left, or `per_point_guess_s` before the first.
pub fn eta_s(elapsed_s: f64, done_now: usize, left: usize, per_point_guess_s: f64) -> f64 {
    let per = if done_now == 0 {
        per_point_guess_s
    } else {
        elapsed_s / done_now as f64
    };
    per * left as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper() -> Profile {
        Profile::builtin("paper").unwrap()
    }

    fn spec(configs: &[&str], rates: &[f64], repeat: u32) -> SweepSpec {
        let a = SweepArgs {
            configs: Some(configs.join(",")),
            rates: Some(
                rates
                    .iter()
                    .map(|r| fmt_num(*r))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            repeat: Some(repeat),
            ..SweepArgs::default()
        };
        sweep_spec(&a, Generator::Loadgen, &paper()).unwrap()
    }

    #[test]
    fn configs_map_to_table_i_and_topologies() {
        let c = Config::get("2lb-bi-dr").unwrap();
        assert_eq!(
            (c.lbs, c.bi_active, c.method, c.topology),
            (2, true, Method::Dr, "2lb-2rs-dr")
        );
        let c = Config::get("1lb-nat").unwrap();
        assert_eq!((c.bi_active, c.topology), (false, "1lb-1rs"));
        for n in TABLE_I {
            let c = Config::get(n).unwrap();
            assert!(
                crate::topology::Topology::builtin(c.topology).is_some(),
                "{n}"
            );
        }
        assert_eq!(Config::get("1lb-dr"), None);
    }

    #[test]
    fn default_rates_put_both_knees_inside_the_sweep() {
        let p = paper();
        assert_eq!(knees(&p, 1).unwrap(), (400.0, 800.0));
        let r1 = default_rates(&p, 1, FULL_RATES).unwrap();
        assert_eq!(r1, vec![200.0, 450.0, 700.0, 950.0, 1200.0]);
        let r2 = default_rates(&p, 2, QUICK_RATES).unwrap();
        assert_eq!(r2, vec![400.0, 1070.0, 1730.0, 2400.0]);
        for (r, lbs) in [(&r1, 1), (&r2, 2)] {
            let (off, on) = knees(&p, lbs).unwrap();
            // Below the first knee at the start, past the second at the end,
            // and each knee strictly between the ends.
            assert!(r[0] < off && on < r[r.len() - 1], "{r:?}");
            assert!(r.iter().any(|x| *x > off && *x < on), "{r:?}");
        }
        let e = default_rates(&Profile::builtin("unconstrained").unwrap(), 1, 4).unwrap_err();
        assert!(e.0.contains("give --rates"), "{e}");
    }

    #[test]
    fn validation_messages_name_the_option() {
        let p = paper();
        let err = |a: SweepArgs| sweep_spec(&a, Generator::Loadgen, &p).unwrap_err().0;
        let e = err(SweepArgs {
            configs: Some("1lb-bi-nat,3lb-nat".into()),
            ..SweepArgs::default()
        });
        assert!(
            e.contains("unknown configuration `3lb-nat`") && e.contains("2lb-nat"),
            "{e}"
        );
        let e = err(SweepArgs {
            configs: Some("1lb-nat,1lb-nat".into()),
            ..SweepArgs::default()
        });
        assert!(e.contains("listed twice"), "{e}");
        for (rates, needle) in [
            ("200,100", "100 follows 200 (item 2)"),
            ("200,200", "strictly increasing"),
            ("100,x", "`x` (item 2) is not a number"),
            ("-5,10", "not a positive rate"),
            ("0,10", "not a positive rate"),
            ("inf,10", "not a positive rate"),
            ("100", "at least 2 rates"),
            ("", "is not a number"),
        ] {
            let e = err(SweepArgs {
                rates: Some(rates.into()),
                ..SweepArgs::default()
            });
            assert!(e.contains(needle), "{rates}: {e}");
            assert!(!e.contains('\n'));
        }
        let e = err(SweepArgs {
            repeat: Some(0),
            ..SweepArgs::default()
        });
        assert!(e.contains("--repeat 0"), "{e}");
        let e = err(SweepArgs {
            duration_s: Some(0.5),
            ..SweepArgs::default()
        });
        assert!(e.contains("--duration 0.5s"), "{e}");
    }

    #[test]
    fn quick_and_full_defaults() {
        let p = paper();
        let q = sweep_spec(
            &SweepArgs {
                quick: true,
                ..SweepArgs::default()
            },
            Generator::Httperf,
            &p,
        )
        .unwrap();
        assert_eq!(q.configs.len(), 6);
        assert_eq!(q.repeat, 1);
        assert!(q.rates.values().all(|r| r.len() == QUICK_RATES));
        assert_eq!(q.generator, "httperf");
        assert_eq!(plan(&q).len(), 6 * QUICK_RATES);
        let f = sweep_spec(&SweepArgs::default(), Generator::Loadgen, &p).unwrap();
        assert_eq!(f.repeat, 3);
        assert_eq!(plan(&f).len(), 6 * FULL_RATES * 3);
        assert_eq!(f.duration_s, FULL_DURATION_S);
    }

    #[test]
    fn plan_interleaves_and_rotates() {
        let s = spec(&["1lb-bi-nat", "1lb-nat", "1lb-bi-dr"], &[100.0, 200.0], 2);
        let p = plan(&s);
        let names: Vec<String> = p
            .iter()
            .map(|k| format!("{}@{}r{}", k.config, k.rate, k.rep))
            .collect();
        assert_eq!(
            names,
            [
                "1lb-bi-nat@100r0",
                "1lb-nat@100r0",
                "1lb-bi-dr@100r0",
                "1lb-nat@200r0",
                "1lb-bi-dr@200r0",
                "1lb-bi-nat@200r0",
                "1lb-bi-dr@100r1",
                "1lb-bi-nat@100r1",
                "1lb-nat@100r1",
                "1lb-bi-nat@200r1",
                "1lb-nat@200r1",
                "1lb-bi-dr@200r1",
            ]
        );
        // Every (config, rate, rep) exactly once.
        for c in &s.configs {
            assert_eq!(p.iter().filter(|k| &k.config == c).count(), 4);
        }
        // Each configuration comes first in some step.
        let firsts: BTreeSet<&str> = p.chunks(3).map(|c| c[0].config.as_str()).collect();
        assert_eq!(firsts.len(), 3);
    }

    fn done(config: &str, rate: f64, rep: u32) -> Point {
        let c = Config::get(config).unwrap();
        Point {
            config: config.into(),
            lbs: c.lbs,
            bi_active: c.bi_active,
            method: c.method.as_str().into(),
            offered_rate: rate,
            rep,
            started_unix_ms: 0,
            duration_s: 1.0,
            measured: Default::default(),
            loadgen: None,
            httperf: None,
            served: vec![],
            balancers: vec![],
        }
    }

    #[test]
    fn resume_measures_the_set_difference() {
        let s = spec(&["1lb-bi-nat", "1lb-nat"], &[100.0, 200.0], 1);
        let p = plan(&s);
        let have = vec![done("1lb-nat", 100.0, 0), done("1lb-bi-nat", 200.0, 0)];
        check_points(&s, &have).unwrap();
        let m = missing(&p, &have);
        let names: Vec<String> = m
            .iter()
            .map(|k| format!("{}@{}", k.config, k.rate))
            .collect();
        assert_eq!(names, ["1lb-bi-nat@100", "1lb-nat@200"]);
        assert!(missing(&p, &[]).len() == 4);
        let all: Vec<Point> = p.iter().map(|k| done(&k.config, k.rate, k.rep)).collect();
        assert!(missing(&p, &all).is_empty());
        let e = check_points(&s, &[done("1lb-nat", 150.0, 0)]).unwrap_err();
        assert!(e.0.contains("150 req/s") && e.0.contains("not part"), "{e}");
        let e =
            check_points(&s, &[done("1lb-nat", 100.0, 0), done("1lb-nat", 100.0, 0)]).unwrap_err();
        assert!(e.0.contains("twice"), "{e}");
    }

    #[test]
    fn eta_uses_the_measured_pace() {
        assert_eq!(eta_s(0.0, 0, 10, 15.0), 150.0);
        assert_eq!(eta_s(60.0, 3, 5, 15.0), 100.0);
    }
}
