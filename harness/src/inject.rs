//! Carries out a run's fault schedule (the I/O side of [`crate::fault`]):
//! polled while the clients run, it signals processes (SIGKILL, SIGTERM),
//! starts stopped ones again (waiting until they are ready), takes links
//! down and up, and blocks a balancer's heartbeats with nftables. Every
//! fault is recorded with its wall time.

use std::time::Instant;

use crate::experiment::{BalancerPlan, ServerPlan};
use crate::fault::{Action, Fault, FaultRecord, FaultTarget};
use crate::run::{start_balancers, start_servers, RunError, Site};
use crate::supervise::{Proc, Procs};

/// nftables table that blocks a balancer's heartbeats (UDP 7946, both ways).
const HB_TABLE: &str = "balhb";

/// The schedule and what it needs to act.
pub(crate) struct Injector<'a> {
    faults: Vec<Fault>,
    next: usize,
    t0: Instant,
    servers: &'a [ServerPlan],
    lbs: &'a [BalancerPlan],
    threads: u32,
    work_us: Option<u32>,
    starts: u32,
    /// Each fault carried out, with its wall time (unix ms).
    pub done: Vec<(FaultRecord, u64)>,
}

impl<'a> Injector<'a> {
    /// A schedule (sorted by time) measured from `t0`, the load's start.
    pub fn new(
        faults: Vec<Fault>,
        t0: Instant,
        servers: &'a [ServerPlan],
        lbs: &'a [BalancerPlan],
        threads: u32,
        work_us: Option<u32>,
    ) -> Self {
        Injector {
            faults,
            next: 0,
            t0,
            servers,
            lbs,
            threads,
            work_us,
            starts: 0,
            done: Vec::new(),
        }
    }

    /// Carries out every fault that is due.
    pub fn poll(&mut self, site: Site<'_>, procs: &mut Procs) -> Result<(), RunError> {
        while let Some(f) = self.faults.get(self.next).cloned() {
            if (self.t0.elapsed().as_millis() as u64) < f.at_ms {
                break;
            }
            self.next += 1;
            let at = crate::run::unix_ms();
            crate::run::progress(format!(
                "fault at {} ms: {} {}",
                f.at_ms,
                f.action.as_str(),
                f.target
            ));
            self.apply(site, procs, &f)?;
            self.done.push((f.record(), at));
        }
        Ok(())
    }

    fn apply(&mut self, site: Site<'_>, procs: &mut Procs, f: &Fault) -> Result<(), RunError> {
        match f.action {
            Action::Kill => signal(procs, &f.target, libc::SIGKILL),
            Action::Stop => signal(procs, &f.target, libc::SIGTERM),
            Action::Start => self.start(site, procs, &f.target),
            Action::Restart => {
                signal(procs, &f.target, libc::SIGTERM)?;
                if let Some(pr) = find(procs, &f.target) {
                    let _ = pr.p.wait();
                }
                self.start(site, procs, &f.target)
            }
            Action::LinkDown | Action::LinkUp => {
                let FaultTarget::Link { node, iface } = &f.target else {
                    return Ok(());
                };
                let state = if f.action == Action::LinkDown {
                    "down"
                } else {
                    "up"
                };
                run_in(site, node, &["ip", "link", "set", iface, state])
            }
            Action::BlockHeartbeat => run_in(
                site,
                &f.target.to_string(),
                &[
                    "nft",
                    &format!(
                        "add table inet {HB_TABLE}; \
                         add chain inet {HB_TABLE} in {{ type filter hook input priority 0; }}; \
                         add chain inet {HB_TABLE} out {{ type filter hook output priority 0; }}; \
                         add rule inet {HB_TABLE} in udp dport 7946 drop; \
                         add rule inet {HB_TABLE} out udp dport 7946 drop"
                    ),
                ],
            ),
            Action::UnblockHeartbeat => run_in(
                site,
                &f.target.to_string(),
                &["nft", &format!("delete table inet {HB_TABLE}")],
            ),
        }
    }

    /// Starts the process of `target` again (logs get a `startN-` prefix).
    fn start(
        &mut self,
        site: Site<'_>,
        procs: &mut Procs,
        target: &FaultTarget,
    ) -> Result<(), RunError> {
        self.starts += 1;
        let prefix = format!("{}start{}-", site.prefix, self.starts);
        let site = Site {
            prefix: &prefix,
            ..site
        };
        match target {
            FaultTarget::Balancer(n) => {
                let lbs: Vec<BalancerPlan> =
                    self.lbs.iter().filter(|b| &b.node == n).cloned().collect();
                start_balancers(site, &lbs, procs)
            }
            FaultTarget::Local(_) | FaultTarget::Server(_) => {
                let name = target.to_string();
                let s: Vec<ServerPlan> = self
                    .servers
                    .iter()
                    .filter(|s| s.name == name)
                    .cloned()
                    .collect();
                start_servers(site, &s, self.threads, self.work_us, procs)
            }
            FaultTarget::Link { .. } => Ok(()),
        }
    }
}

/// Whether `pr` is the process of `target`.
fn is(pr: &Proc, target: &FaultTarget) -> bool {
    match target {
        FaultTarget::Balancer(n) => pr.what == format!("balancer in {n}"),
        FaultTarget::Local(_) | FaultTarget::Server(_) => {
            pr.what.starts_with(&format!("realserver {target} "))
        }
        FaultTarget::Link { .. } => false,
    }
}

/// The running process of `target`, if any.
fn find<'p>(procs: &'p mut Procs, target: &FaultTarget) -> Option<&'p mut Proc> {
    for pr in procs.0.iter_mut() {
        if is(pr, target) && matches!(pr.p.try_wait(), Ok(None)) {
            return Some(pr);
        }
    }
    None
}

fn signal(procs: &mut Procs, target: &FaultTarget, sig: libc::c_int) -> Result<(), RunError> {
    let Some(pr) = find(procs, target) else {
        return Err(RunError::Process {
            what: format!("fault: {target} is not running"),
            detail: "nothing to signal".into(),
        });
    };
    if let Ok(pid) = libc::pid_t::try_from(pr.p.id()) {
        // SAFETY: kill(2) on a child we spawned and have not reaped (try_wait
        // just said it runs), so the pid is still ours.
        unsafe {
            libc::kill(pid, sig);
        }
    }
    Ok(())
}

fn run_in(site: Site<'_>, node: &str, argv: &[&str]) -> Result<(), RunError> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let st = site.tb.exec(node, &argv)?;
    if st.success() {
        Ok(())
    } else {
        Err(RunError::Process {
            what: format!("fault command in {node}: {}", argv.join(" ")),
            detail: format!("{st}"),
        })
    }
}
