//! Process supervision inside the testbed's nodes, shared by every runner
//! (`run`, `demo`, `bench-balancer`, `reproduce`): start a program in a node
//! with its output in a log file, wait until it is ready (or report its exit
//! and the tail of its log), wait for client processes with a time budget,
//! and stop everything (TERM to the process group, then KILL) when the
//! [`Procs`] set is dropped. Every wait polls the interrupt flag.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::run::RunError;
use crate::testbed::Testbed;
use crate::NodeProcess;

/// How long [`Procs::stop_all`] lets processes exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A started process with its log file.
pub struct Proc {
    /// What it is, for messages (`realserver rs1 (in rs1)`).
    pub what: String,
    /// The process (leader of its own process group).
    pub p: NodeProcess,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

/// Every process of a run; stopped (TERM, then KILL) when dropped.
#[derive(Default)]
pub struct Procs(pub Vec<Proc>);

impl Procs {
    /// Sends SIGTERM to every process group still running, waits up to
    /// [`STOP_GRACE`], then kills what is left, and forgets them all.
    pub fn stop_all(&mut self) {
        for pr in &mut self.0 {
            if let (Ok(None), Ok(pgid)) = (pr.p.try_wait(), libc::pid_t::try_from(pr.p.id())) {
                // SAFETY: killpg(2) on the process group the testbed created
                // for this child (process_group(0)); the leader is not reaped
                // yet, so the pgid cannot have been reused.
                unsafe {
                    libc::killpg(pgid, libc::SIGTERM);
                }
            }
        }
        let start = Instant::now();
        for pr in &mut self.0 {
            while start.elapsed() < STOP_GRACE {
                match pr.p.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    _ => break,
                }
            }
            let _ = pr.p.kill();
        }
        self.0.clear();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop_all();
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(6)..].join("\n    ");
    if tail.is_empty() {
        format!("(log {} is empty)", path.display())
    } else {
        format!("log {}:\n    {tail}", path.display())
    }
}

/// `exited with status 3` / `killed by signal 9`.
pub fn describe_exit(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => "exited".into(),
    }
}

/// [`RunError::Interrupted`] once the flag is set.
pub fn check_interrupt(flag: &AtomicBool) -> Result<(), RunError> {
    if flag.load(Ordering::SeqCst) {
        Err(RunError::Interrupted)
    } else {
        Ok(())
    }
}

/// Starts `argv` in `node` (namespace + cgroup) with stdout and stderr in `log`.
pub fn spawn_logged(
    tb: &Testbed,
    node: &str,
    what: String,
    argv: Vec<String>,
    log: PathBuf,
) -> Result<Proc, RunError> {
    let f = File::create(&log).map_err(io_err(format!("creating {}", log.display())))?;
    let f2 = f
        .try_clone()
        .map_err(io_err(format!("opening {}", log.display())))?;
    let p = tb.spawn(node, &argv, |c| {
        c.stdin(Stdio::null()).stdout(f).stderr(f2);
    })?;
    Ok(Proc { what, p, log })
}

/// Polls `ready` until it holds, the process exits, time runs out or an
/// interrupt arrives.
pub fn wait_ready(
    pr: &mut Proc,
    timeout: Duration,
    flag: &AtomicBool,
    mut ready: impl FnMut() -> bool,
) -> Result<(), RunError> {
    let start = Instant::now();
    loop {
        check_interrupt(flag)?;
        if let Ok(Some(st)) = pr.p.try_wait() {
            return Err(RunError::Process {
                what: format!("{} {}", pr.what, describe_exit(st)),
                detail: log_tail(&pr.log),
            });
        }
        if ready() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(RunError::Process {
                what: format!("{} not ready after {} s", pr.what, timeout.as_secs()),
                detail: log_tail(&pr.log),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for every client process to exit, polling for an interrupt, and fails
/// when one exits unsuccessfully or they outlive `budget_s` seconds (they are
/// killed when the caller drops them).
pub fn wait_clients(
    clients: &mut [Proc],
    budget_s: f64,
    flag: &AtomicBool,
) -> Result<(), RunError> {
    let t0 = Instant::now();
    let mut done = vec![None; clients.len()];
    while done.iter().any(Option::is_none) {
        check_interrupt(flag)?;
        for (i, pr) in clients.iter_mut().enumerate() {
            if done[i].is_none() {
                done[i] = pr.p.try_wait().ok().flatten();
            }
        }
        if t0.elapsed().as_secs_f64() > budget_s {
            return Err(RunError::Process {
                what: format!("clients still running after {budget_s:.0} s"),
                detail: "killed them".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (pr, st) in clients.iter().zip(&done) {
        if let Some(st) = st.filter(|s| !s.success()) {
            return Err(RunError::Process {
                what: format!("{} {}", pr.what, describe_exit(st)),
                detail: log_tail(&pr.log),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tails() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        assert!(log_tail(&p).contains("is empty"));
        std::fs::write(&p, (1..=10).map(|i| format!("l{i}\n")).collect::<String>()).unwrap();
        let t = log_tail(&p);
        assert!(
            t.contains("l10") && t.contains("l5") && !t.contains("l4"),
            "{t}"
        );
    }

    #[test]
    fn exits_are_described() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "killed by signal 9");
    }
}
