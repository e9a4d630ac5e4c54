//! Runs plan steps: commands as child processes, file operations natively.
//! `apply` stops at the first failure or on interrupt (the caller rolls
//! back); `apply_all` is best effort (teardown keeps going).

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cgroup;
use crate::plan::{Action, Step};

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// A step that did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{description}: `{command}` failed: {detail}")]
pub struct StepError {
    /// The step's description.
    pub description: String,
    /// The shell form of the step.
    pub command: String,
    /// Exit status and stderr, or the OS error.
    pub detail: String,
}

/// Why `apply` stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    /// Step `index` (1-based) of `total` failed.
    #[error("step {index}/{total} failed: {error}")]
    Failed {
        /// 1-based index of the failed step.
        index: usize,
        /// Number of steps.
        total: usize,
        /// What failed.
        error: StepError,
    },
    /// An interrupt (Ctrl-C, SIGTERM) arrived before or during step `index`.
    #[error("interrupted at step {index}/{total}")]
    Interrupted {
        /// 1-based index of the step not run.
        index: usize,
        /// Number of steps.
        total: usize,
    },
}

/// Something that can carry out a step (the system, or a fake in tests).
pub trait Runner {
    /// Performs one step.
    fn run(&mut self, step: &Step) -> Result<(), StepError>;
}

/// Environment variable naming a 1-based step at which `harness up` fails
/// on purpose (fault injection, to test and demonstrate the rollback).
pub const FAIL_AT_STEP_ENV: &str = "HARNESS_FAIL_AT_STEP";

/// Runs steps on this machine; with `verbose`, echoes each shell line to stderr.
#[derive(Debug, Default)]
pub struct SystemRunner {
    /// Echo every step to stderr before running it.
    pub verbose: bool,
    /// Fail (without running it) the step with this 1-based number.
    pub fail_at: Option<usize>,
    count: usize,
}

impl SystemRunner {
    /// A runner with the given verbosity and optional injected failure.
    pub fn new(verbose: bool, fail_at: Option<usize>) -> Self {
        SystemRunner {
            verbose,
            fail_at,
            count: 0,
        }
    }
}

impl Runner for SystemRunner {
    fn run(&mut self, step: &Step) -> Result<(), StepError> {
        self.count += 1;
        if self.verbose {
            let _ = writeln!(io::stderr(), "+ {}", step.action.shell());
        }
        let fail = |detail: String| StepError {
            description: step.description.clone(),
            command: step.action.shell(),
            detail,
        };
        if self.fail_at == Some(self.count) {
            return Err(fail(format!(
                "failure injected by {FAIL_AT_STEP_ENV}={}",
                self.count
            )));
        }
        if let Some(argv) = step.action.argv() {
            return run_command(&argv).map_err(fail);
        }
        match &step.action {
            Action::KillNetnsProcs { ns } => kill_netns_procs(ns).map_err(fail),
            Action::MakeCgroup { path } => match std::fs::create_dir(path) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(fail(e.to_string())),
                _ => Ok(()),
            },
            Action::WriteFile { path, contents } => {
                std::fs::write(path, contents).map_err(|e| fail(e.to_string()))
            }
            Action::KillCgroupProcs { path } => {
                kill_until_gone(&path.display().to_string(), || Ok(cgroup::pids(path)))
                    .map_err(fail)
            }
            Action::RemoveCgroup { path } => remove_cgroup(path).map_err(fail),
            _ => Err(fail(
                "internal: action has neither argv nor native handler".into(),
            )),
        }
    }
}

fn run_command(argv: &[String]) -> Result<(), String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let mut cmd = Command::new(prog);
    cmd.args(args).stdin(Stdio::null());
    die_with_parent(&mut cmd);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run `{prog}`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!("{} ({})", out.status, tail.join(" / ").trim()))
}

/// Makes the child receive SIGKILL if the harness dies (e.g. `kill -9`
/// during `up`), so no orphaned `ip` command creates anything after the next
/// `down` has looked. (The signal fires when the *thread* that spawned the
/// child exits; step commands are waited for by that thread, so it is safe.)
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
}

/// Applies steps in order; stops at the first failure, or before the next
/// step once `interrupted` is set.
pub fn apply(
    steps: &[Step],
    runner: &mut dyn Runner,
    interrupted: &AtomicBool,
) -> Result<(), ApplyError> {
    let total = steps.len();
    for (i, st) in steps.iter().enumerate() {
        if interrupted.load(Ordering::SeqCst) {
            return Err(ApplyError::Interrupted {
                index: i + 1,
                total,
            });
        }
        if let Err(error) = runner.run(st) {
            // A Ctrl-C also hits the running command: report the interrupt.
            if interrupted.load(Ordering::SeqCst) {
                return Err(ApplyError::Interrupted {
                    index: i + 1,
                    total,
                });
            }
            return Err(ApplyError::Failed {
                index: i + 1,
                total,
                error,
            });
        }
    }
    if interrupted.load(Ordering::SeqCst) {
        return Err(ApplyError::Interrupted {
            index: total + 1,
            total,
        });
    }
    Ok(())
}

/// Applies every step, collecting failures (teardown must not stop halfway).
pub fn apply_all(steps: &[Step], runner: &mut dyn Runner) -> Vec<StepError> {
    steps.iter().filter_map(|s| runner.run(s).err()).collect()
}

/// Pids whose network namespace is the named one (what `ip netns pids` does).
pub fn netns_pids(ns: &str) -> io::Result<Vec<u32>> {
    let target = std::fs::metadata(Path::new(NETNS_DIR).join(ns))?;
    let key = (target.dev(), target.ino());
    let me = std::process::id();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc")? {
        let Ok(e) = e else { continue };
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Exited or zombie tasks have no namespace link: skip them.
        if let Ok(m) = std::fs::metadata(e.path().join("ns/net")) {
            if (m.dev(), m.ino()) == key {
                pids.push(pid);
            }
        }
    }
    Ok(pids)
}

fn signal_all(pids: &[u32], sig: libc::c_int) {
    for &p in pids {
        let Ok(p) = libc::pid_t::try_from(p) else {
            continue;
        };
        // SAFETY: kill(2) has no memory-safety preconditions; a vanished pid
        // just yields ESRCH, which we ignore.
        unsafe {
            libc::kill(p, sig);
        }
    }
}

fn wait_gone(list: &dyn Fn() -> io::Result<Vec<u32>>, timeout: Duration) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let left = list().unwrap_or_default();
        if left.is_empty() || start.elapsed() >= timeout {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM the processes `list` returns, SIGKILL what is left after 0.5 s,
/// and wait (up to 3 s) until none remains. `what` names the group in errors.
pub fn kill_until_gone(what: &str, list: impl Fn() -> io::Result<Vec<u32>>) -> Result<(), String> {
    let me = std::process::id();
    let list = move || list().map(|v| v.into_iter().filter(|p| *p != me).collect::<Vec<_>>());
    let pids = match list() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("listing processes of {what}: {e}")),
    };
    if pids.is_empty() {
        return Ok(());
    }
    signal_all(&pids, libc::SIGTERM);
    let left = wait_gone(&list, Duration::from_millis(500));
    if left.is_empty() {
        return Ok(());
    }
    signal_all(&left, libc::SIGKILL);
    let left = wait_gone(&list, Duration::from_secs(3));
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("processes {left:?} in {what} survived SIGKILL"))
    }
}

/// Stops every process inside a namespace (see [`kill_until_gone`]).
pub fn kill_netns_procs(ns: &str) -> Result<(), String> {
    kill_until_gone(ns, || netns_pids(ns))
}

fn remove_cgroup(path: &PathBuf) -> Result<(), String> {
    let start = Instant::now();
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Tasks that are still exiting keep the cgroup busy for a moment.
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && start.elapsed() < Duration::from_secs(3) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("{e} (pids still inside: {:?})", cgroup::pids(path))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        fail_at: Option<usize>,
        ran: Vec<String>,
        interrupt_after: Option<(usize, &'static AtomicBool)>,
    }

    impl Runner for Fake {
        fn run(&mut self, step: &Step) -> Result<(), StepError> {
            self.ran.push(step.description.clone());
            if let Some((n, flag)) = self.interrupt_after {
                if self.ran.len() == n {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            if Some(self.ran.len()) == self.fail_at {
                return Err(StepError {
                    description: step.description.clone(),
                    command: step.action.shell(),
                    detail: "boom".into(),
                });
            }
            Ok(())
        }
    }

    fn steps(n: usize) -> Vec<Step> {
        (0..n)
            .map(|i| Step {
                description: format!("s{i}"),
                action: Action::AddNetns {
                    ns: format!("bal-n{i}"),
                },
            })
            .collect()
    }

    #[test]
    fn apply_stops_at_first_failure() {
        let mut f = Fake {
            fail_at: Some(3),
            ran: vec![],
            interrupt_after: None,
        };
        let e = apply(&steps(5), &mut f, &AtomicBool::new(false)).unwrap_err();
        assert_eq!(f.ran, ["s0", "s1", "s2"]);
        let msg = e.to_string();
        assert!(
            msg.contains("step 3/5 failed")
                && msg.contains("ip netns add bal-n2")
                && msg.contains("boom"),
            "{msg}"
        );
    }

    #[test]
    fn apply_stops_on_interrupt() {
        static FLAG: AtomicBool = AtomicBool::new(false);
        let mut f = Fake {
            fail_at: None,
            ran: vec![],
            interrupt_after: Some((2, &FLAG)),
        };
        let e = apply(&steps(5), &mut f, &FLAG).unwrap_err();
        assert_eq!(f.ran.len(), 2);
        assert!(matches!(e, ApplyError::Interrupted { index: 3, total: 5 }));
    }

    #[test]
    fn apply_all_keeps_going() {
        let mut f = Fake {
            fail_at: Some(2),
            ran: vec![],
            interrupt_after: None,
        };
        let errs = apply_all(&steps(4), &mut f);
        assert_eq!(f.ran.len(), 4);
        assert_eq!(errs.len(), 1);
    }

    #[test]
    fn command_failure_reports_status_and_stderr() {
        let e =
            run_command(&["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()]).unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");
        let e = run_command(&["/nonexistent/prog".into()]).unwrap_err();
        assert!(e.contains("cannot run `/nonexistent/prog`"), "{e}");
    }

    #[test]
    fn native_file_steps() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("bal-x");
        let mut r = SystemRunner::default();
        let mk = Step {
            description: "mk".into(),
            action: Action::MakeCgroup { path: cg.clone() },
        };
        r.run(&mk).unwrap();
        r.run(&mk).unwrap(); // idempotent
        r.run(&Step {
            description: "w".into(),
            action: Action::WriteFile {
                path: cg.join("f"),
                contents: "42".into(),
            },
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(cg.join("f")).unwrap(), "42");
        std::fs::remove_file(cg.join("f")).unwrap();
        let rm = Step {
            description: "rm".into(),
            action: Action::RemoveCgroup { path: cg.clone() },
        };
        r.run(&rm).unwrap();
        r.run(&rm).unwrap(); // already gone is fine
        assert!(!cg.exists());
        assert!(kill_netns_procs("bal-does-not-exist-here").is_ok());
    }
}
