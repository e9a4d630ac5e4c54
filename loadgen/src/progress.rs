//! The live progress line on stderr (drawn only when stderr is a terminal): connections or
//! elapsed time, replies and their recent rate, errors. Reads the engine's [`Live`] counters from
//! a thread of its own, so the engine's hot path only bumps atomics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Workload};
use crate::engine::Live;

/// Draw a one-line progress display on stderr until `done`.
pub fn spawn(live: Arc<Live>, done: Arc<AtomicBool>, cfg: &Config) -> std::thread::JoinHandle<()> {
    let total = match cfg.stop {
        crate::config::Stop::Conns(n) => Some(n),
        crate::config::Stop::Duration(_) => None,
    };
    let duration = match cfg.stop {
        crate::config::Stop::Duration(d) => Some(d),
        crate::config::Stop::Conns(_) => None,
    };
    let open = matches!(cfg.workload, Workload::Open(_));
    std::thread::spawn(move || {
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new(duration.map_or(0, |d| d.as_millis() as u64)),
        };
        let style = if total.is_some() {
            "{elapsed_precise} [{bar:30}] {pos}/{len} conns  {msg}"
        } else {
            "{elapsed_precise} [{bar:30}] {percent:>3}%  {msg}"
        };
        if let Ok(s) = indicatif::ProgressStyle::with_template(style) {
            bar.set_style(s.progress_chars("=> "));
        }
        let start = std::time::Instant::now();
        let mut last_replies = 0u64;
        let mut last_t = start;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            let replies = live.replies.load(Ordering::Relaxed);
            let errors = live.errors.load(Ordering::Relaxed);
            let conns = live.conns.load(Ordering::Relaxed);
            let now = std::time::Instant::now();
            let dt = now.duration_since(last_t).as_secs_f64();
            let rate = if dt > 0.0 {
                (replies - last_replies) as f64 / dt
            } else {
                0.0
            };
            last_replies = replies;
            last_t = now;
            if total.is_some() {
                bar.set_position(conns);
            } else {
                bar.set_position(now.duration_since(start).as_millis() as u64);
            }
            bar.set_message(format!(
                "replies {replies} ({rate:.0}/s) errors {errors}{}",
                if open { "" } else { " closed-loop" }
            ));
        }
        bar.finish_and_clear();
    })
}
