//! What a run with faults shows (pure): per fault, when every surviving
//! balancer's membership changed (from their `/membership` change history)
//! and from when on every new connection succeeded (from the clients'
//! 100-ms timeline by connection start), plus the summary lines and the
//! timeline CSV.

use std::fmt::Write as _;

use balancer::membership::Change;
use loadgen::result::TimelineBin;
use reports::timeline::{Marker, MarkerKind};
use serde::{Deserialize, Serialize};

use crate::fault::FaultRecord;

/// What one fault led to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultOutcome {
    /// The fault.
    pub fault: FaultRecord,
    /// Ms from the fault until the last balancer that reacted changed its
    /// membership view (`None`: no balancer recorded a change after it).
    pub membership_changed_after_ms: Option<u64>,
    /// Which balancers changed, with their delay in ms.
    pub changed: Vec<(String, u64)>,
    /// Start of the first bin (ms from the load start) from which on no
    /// connection failed until the next fault (`None`: errors until then).
    pub clean_from_ms: Option<u64>,
    /// Connections that started before `clean_from_ms` (after the fault) and failed.
    pub errors_after_fault: u64,
}

/// Analyses each fault: `faults` in time order, their wall times
/// (`fault_unix_ms`, same order), the load start (`load_start_unix_ms`),
/// the merged timeline, and each balancer's (node, change history).
pub fn analyse(
    faults: &[FaultRecord],
    fault_unix_ms: &[u64],
    load_start_unix_ms: u64,
    timeline: &[TimelineBin],
    changes: &[(String, Vec<Change>)],
) -> Vec<FaultOutcome> {
    faults
        .iter()
        .zip(fault_unix_ms)
        .enumerate()
        .map(|(i, (f, &at))| {
            let next_at = fault_unix_ms.get(i + 1).copied().unwrap_or(u64::MAX);
            let changed: Vec<(String, u64)> = changes
                .iter()
                .filter(|(node, _)| *node != f.node)
                .filter_map(|(node, ch)| {
                    ch.iter()
                        .map(|c| c.at_unix_ms)
                        .find(|&t| t >= at && t < next_at)
                        .map(|t| (node.clone(), t - at))
                })
                .collect();
            let from_ms = at.saturating_sub(load_start_unix_ms);
            let until_ms = next_at.saturating_sub(load_start_unix_ms);
            let window: Vec<&TimelineBin> = timeline
                .iter()
                .filter(|b| b.t_ms + 100 > from_ms && b.t_ms < until_ms)
                .collect();
            let last_bad = window.iter().rposition(|b| b.errors > 0);
            let clean_from_ms = match last_bad {
                None => window.first().map(|b| b.t_ms),
                Some(k) => window.get(k + 1).map(|b| b.t_ms),
            };
            let errors_after_fault =
                last_bad.map_or(0, |k| window[..=k].iter().map(|b| b.errors).sum());
            FaultOutcome {
                fault: f.clone(),
                membership_changed_after_ms: changed.iter().map(|c| c.1).max(),
                changed,
                clean_from_ms,
                errors_after_fault,
            }
        })
        .collect()
}

/// A closed-loop run's long-lived connections (`harness run --concurrency`):
/// whether any of them was broken. Its timeline bins a connection at its
/// start, so the N connections opened at 0 ms carry every error they meet
/// later in the first bin; these totals are what says whether a fault broke
/// an established connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldConnections {
    /// Keep-alive connections asked for (`--concurrency`).
    pub concurrency: u64,
    /// Connections attempted in all (more than `concurrency`: some ended
    /// early and their slot opened another).
    pub attempted: u64,
    /// Connections that ended in an error.
    pub errors: u64,
    /// Of those, resets (ECONNRESET/EPIPE, EOF before a reply).
    pub resets: u64,
    /// Of those, client timeouts.
    pub timeouts: u64,
    /// Replies received over all connections.
    pub replies: u64,
    /// Start of the first and of the last 100-ms bin in which an error
    /// occurred (by event time), ms from the start of the load.
    pub errors_between_ms: Option<(u64, u64)>,
}

impl HeldConnections {
    /// The figures of a merged closed-loop result with `concurrency` connections.
    pub fn from_result(concurrency: u32, r: &loadgen::result::RunResult) -> HeldConnections {
        HeldConnections {
            concurrency: u64::from(concurrency),
            attempted: r.counts.conns_attempted,
            errors: r.errors_total(),
            resets: r.errors.conn_reset,
            timeouts: r.errors.client_timo,
            replies: r.replies(),
            errors_between_ms: {
                let mut bad = r.timeline.iter().filter(|b| b.errors_at > 0);
                bad.next().map(|first| {
                    let last = bad.next_back().unwrap_or(first);
                    (first.t_ms, last.t_ms)
                })
            },
        }
    }

    /// One summary line.
    pub fn line(&self) -> String {
        let verdict = if self.errors == 0 && self.attempted == self.concurrency {
            "every connection was held to the end: none was reset or failed".to_string()
        } else {
            let when = match self.errors_between_ms {
                Some((a, b)) if a == b => format!("; the errors occurred at {a}-{} ms", a + 100),
                Some((a, b)) => format!("; the errors occurred between {a} and {} ms", b + 100),
                None => String::new(),
            };
            format!(
                "{} connection(s) ended early{when}",
                self.attempted
                    .saturating_sub(self.concurrency)
                    .max(self.errors)
            )
        };
        format!(
            "Closed loop: {} keep-alive connections, {} opened in all, {} ended in an error \
             ({} reset, {} timed out), {} replies; {verdict}\n",
            self.concurrency, self.attempted, self.errors, self.resets, self.timeouts, self.replies
        )
    }
}

/// The summary printed after a run with faults. With `held` (closed loop)
/// the per-fault "every connection starting from" clause is left out: the
/// connections started at 0 ms, and `held` says what happened to them.
pub fn summary(outcomes: &[FaultOutcome], held: Option<&HeldConnections>) -> String {
    let mut o = String::from("Faults:\n");
    for x in outcomes {
        let f = &x.fault;
        let _ = write!(o, "  at {:>6} ms  {:<17} {:<10}", f.at_ms, f.action, f.node);
        match x.membership_changed_after_ms {
            Some(ms) => {
                let who: Vec<String> = x
                    .changed
                    .iter()
                    .map(|(n, d)| format!("{n} {d} ms"))
                    .collect();
                let _ = write!(o, " membership changed after {ms} ms ({})", who.join(", "));
            }
            None => o.push_str(" no membership change"),
        }
        if held.is_some() {
            o.push('\n');
            continue;
        }
        match x.clean_from_ms {
            Some(t) => {
                let _ = writeln!(
                    o,
                    "; every connection starting from {t} ms succeeded ({} failed before)",
                    x.errors_after_fault
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "; connections kept failing until the next fault or the end"
                );
            }
        }
    }
    if let Some(h) = held {
        o.push_str(&h.line());
    }
    o
}

/// The timeline figure's markers: each fault (`kill lb2`), when the other
/// balancers' membership had changed, and (open loop) from when on every
/// new connection succeeded.
pub fn markers(outcomes: &[FaultOutcome], closed_loop: bool) -> Vec<Marker> {
    let mut v = Vec::new();
    for x in outcomes {
        let f = &x.fault;
        v.push(Marker {
            at_ms: f.at_ms,
            kind: MarkerKind::Fault,
            label: format!("{} {}", f.action, f.node),
        });
        if let Some(d) = x.membership_changed_after_ms {
            v.push(Marker {
                at_ms: f.at_ms + d,
                kind: MarkerKind::Membership,
                label: format!("membership changed (+{d} ms)"),
            });
        }
        if let (Some(t), false) = (x.clean_from_ms, closed_loop) {
            v.push(Marker {
                at_ms: t,
                kind: MarkerKind::CleanFrom,
                label: format!("all new connections succeed from {t} ms"),
            });
        }
    }
    v
}

/// The timeline as CSV (`t_ms,started,replied,errors,replies_at,errors_at`:
/// connections by start, then replies and errors by when they happened).
pub fn timeline_csv(timeline: &[TimelineBin]) -> String {
    let mut o = String::from("t_ms,started,replied,errors,replies_at,errors_at\n");
    for b in timeline {
        let _ = writeln!(
            o,
            "{},{},{},{},{},{}",
            b.t_ms, b.started, b.replied, b.errors, b.replies_at, b.errors_at
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use balancer::membership::Cause;

    fn bins(errors: &[u64]) -> Vec<TimelineBin> {
        errors
            .iter()
            .enumerate()
            .map(|(i, &e)| TimelineBin {
                t_ms: i as u64 * 100,
                started: 10,
                replied: 10 - e,
                errors: e,
                ..TimelineBin::default()
            })
            .collect()
    }

    fn change(at: u64) -> Change {
        Change {
            at_unix_ms: at,
            cause: Cause::PeerDead,
            node: 2,
            view: vec![1],
        }
    }

    #[test]
    fn kill_outcome() {
        // Load from 1_000_000; lb2 killed at +400 ms; lb1 changes 270 ms later;
        // errors in the bins of 300-600 ms, clean from 700 ms.
        let f = FaultRecord {
            at_ms: 400,
            action: "kill".into(),
            node: "lb2".into(),
        };
        let changes = vec![
            ("lb1".to_string(), vec![change(999_000), change(1_000_670)]),
            ("lb2".to_string(), vec![change(999_100)]),
        ];
        let tl = bins(&[0, 0, 0, 2, 3, 1, 1, 0, 0, 0]);
        let out = analyse(&[f], &[1_000_400], 1_000_000, &tl, &changes);
        assert_eq!(out[0].membership_changed_after_ms, Some(270));
        assert_eq!(out[0].changed, vec![("lb1".to_string(), 270)]);
        assert_eq!(out[0].clean_from_ms, Some(700));
        // The 2 errors of the 300-ms bin started before the fault.
        assert_eq!(out[0].errors_after_fault, 5);
        let s = summary(&out, None);
        assert!(s.contains("membership changed after 270 ms (lb1 270 ms); every connection starting from 700 ms succeeded (5 failed before)"), "{s}");
        let m = markers(&out, false);
        let labels: Vec<(u64, &str)> = m.iter().map(|m| (m.at_ms, m.label.as_str())).collect();
        assert_eq!(
            labels,
            vec![
                (400, "kill lb2"),
                (670, "membership changed (+270 ms)"),
                (700, "all new connections succeed from 700 ms")
            ]
        );
        assert_eq!(markers(&out, true).len(), 2);
        assert!(timeline_csv(&tl).starts_with(
            "t_ms,started,replied,errors,replies_at,errors_at\n0,10,10,0,0,0\n100,10,10,0,0,0\n"
        ));
    }

    #[test]
    fn closed_loop_summary() {
        let f = FaultRecord {
            at_ms: 3000,
            action: "start".into(),
            node: "lb2".into(),
        };
        let out = analyse(&[f], &[1_003_000], 1_000_000, &bins(&[0]), &[]);
        let mut h = HeldConnections {
            concurrency: 24,
            attempted: 24,
            errors: 0,
            resets: 0,
            timeouts: 0,
            replies: 90_000,
            errors_between_ms: None,
        };
        let s = summary(&out, Some(&h));
        assert!(!s.contains("every connection starting"), "{s}");
        assert!(s.contains("Closed loop: 24 keep-alive connections, 24 opened in all, 0 ended in an error (0 reset, 0 timed out), 90000 replies; every connection was held to the end"), "{s}");
        h.attempted = 26;
        h.errors = 2;
        h.resets = 2;
        h.errors_between_ms = Some((9000, 9100));
        assert!(
            h.line().contains(
                "2 connection(s) ended early; the errors occurred between 9000 and 9200 ms"
            ),
            "{}",
            h.line()
        );
    }

    #[test]
    fn errors_to_the_end() {
        let f = FaultRecord {
            at_ms: 0,
            action: "kill".into(),
            node: "rs1".into(),
        };
        let out = analyse(&[f], &[5_000], 5_000, &bins(&[1, 1]), &[]);
        assert_eq!(out[0].clean_from_ms, None);
        assert_eq!(out[0].membership_changed_after_ms, None);
        assert!(summary(&out, None).contains("kept failing"));
    }
}
