//! Repeated runs (`--repeat N`) as data, shared by `bench-balancer`,
//! `flood` and `reproduce`: the bound on N, the order the runs take (rounds,
//! the configurations alternating within each, so that a drift in the
//! host's load spreads over all of them), the runs of each configuration,
//! and their medians (the median is [`reports::stats::Spread`]'s: the mean
//! of the middle two for an even count).

use reports::stats::Spread;

/// The largest `--repeat`.
pub const MAX_REPEAT: u32 = 100;

/// `--repeat N` is 1 to [`MAX_REPEAT`]; the message names the flag.
pub fn validate(repeat: u32) -> Result<(), String> {
    if (1..=MAX_REPEAT).contains(&repeat) {
        Ok(())
    } else {
        Err(format!("--repeat {repeat}: expected 1..={MAX_REPEAT}"))
    }
}

/// The runs in order: `repeat` rounds (0-based), each running every one of
/// `configs` in turn.
pub fn schedule<K: Copy>(repeat: u32, configs: &[K]) -> Vec<(u32, K)> {
    (0..repeat)
        .flat_map(|round| configs.iter().map(move |&k| (round, k)))
        .collect()
}

/// The runs of each configuration, in `configs` order; a configuration
/// without runs (a run cut short) is left out.
pub fn by_config<'a, T, K: PartialEq + Copy>(
    runs: &'a [T],
    configs: &[K],
    config: impl Fn(&T) -> K,
) -> Vec<(K, Vec<&'a T>)> {
    configs
        .iter()
        .map(|&k| (k, runs.iter().filter(|r| config(r) == k).collect()))
        .filter(|(_, v): &(K, Vec<&T>)| !v.is_empty())
        .collect()
}

/// Median, min and max of `f` over the runs where it is defined and finite.
pub fn spread_of<T>(runs: &[&T], f: impl Fn(&T) -> Option<f64>) -> Option<Spread> {
    Spread::of(runs.iter().filter_map(|r| f(r)).filter(|x| x.is_finite()))
}

/// Median of `f` over the runs where it is defined and finite.
pub fn median_of<T>(runs: &[&T], f: impl Fn(&T) -> Option<f64>) -> Option<f64> {
    spread_of(runs, f).map(|s| s.median)
}

/// The median of counts, rounded to the nearest count.
pub fn median_count<T>(runs: &[&T], f: impl Fn(&T) -> u64) -> Option<u64> {
    median_of(runs, |r| Some(f(r) as f64)).map(|m| m.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_bounds_name_the_flag() {
        assert!(validate(1).is_ok() && validate(MAX_REPEAT).is_ok());
        assert_eq!(validate(0).unwrap_err(), "--repeat 0: expected 1..=100");
        assert!(validate(101).unwrap_err().starts_with("--repeat 101:"));
    }

    #[test]
    fn configs_alternate_within_rounds() {
        assert_eq!(
            schedule(2, &['a', 'b', 'c']),
            [(0, 'a'), (0, 'b'), (0, 'c'), (1, 'a'), (1, 'b'), (1, 'c')]
        );
        assert!(schedule(0, &['a']).is_empty());
    }

    #[test]
    fn runs_group_in_config_order_and_missing_configs_drop_out() {
        let runs = [(0, 'b'), (0, 'a'), (1, 'b'), (1, 'a')];
        let g = by_config(&runs, &['a', 'b', 'z'], |r| r.1);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].0, 'a');
        assert_eq!(g[0].1, [&(0, 'a'), &(1, 'a')]);
        assert_eq!(g[1].1, [&(0, 'b'), &(1, 'b')]);
    }

    #[test]
    fn medians_skip_undefined_and_non_finite_values() {
        let xs = [3.0, 1.0, f64::INFINITY, 2.0, f64::NAN, -1.0];
        let r: Vec<&f64> = xs.iter().collect();
        let s = spread_of(&r, |x| (*x >= 0.0).then_some(*x)).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let even: Vec<&f64> = [4.0, 1.0, 3.0, 2.0].iter().collect();
        assert_eq!(median_of(&even, |x| Some(*x)), Some(2.5));
        assert_eq!(median_of(&even, |_| None), None);
        let counts: Vec<&u64> = [7, 2, 4, 5].iter().collect();
        assert_eq!(median_count(&counts, |c| *c), Some(5)); // 4.5 rounds up
        assert_eq!(median_count::<u64>(&[], |c| *c), None);
    }
}
