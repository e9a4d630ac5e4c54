//! The testbed handle: `up` (plan, clean leftovers, apply, roll back on
//! error or interrupt), `down` (discover and remove everything prefixed),
//! and running commands inside a node (its namespace, and its cgroup when
//! the profile constrains it) — the building block of experiments.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cgroup::{procs_file, CgroupFlavor};
use crate::discover::{describe, discover};
use crate::exec::{apply, apply_all, ApplyError, SystemRunner};
use crate::plan::{netns_name, plan_down, plan_up, switch_ns, Inventory, PlanError};
use crate::profile::{Profile, ProfileError};
use crate::state::{self, Phase, State, StateError};
use crate::topology::{Topology, TopologyError};

/// How long `up`/`down` wait for another instance's lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Everything that can go wrong with the testbed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad topology.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// Bad profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// No plan possible.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// State file or lock.
    #[error(transparent)]
    State(#[from] StateError),
    /// Missing root / CAP_NET_ADMIN.
    #[error("creating network namespaces needs root (CAP_NET_ADMIN); run it as root, e.g. `sudo harness up`")]
    NotPrivileged,
    /// `up` failed or was interrupted; everything was rolled back.
    #[error("up {}: {cause}; rollback: {rollback}", if *.interrupted { "was interrupted" } else { "failed" })]
    UpAborted {
        /// Whether an interrupt (not a failure) stopped it.
        interrupted: bool,
        /// The failed step.
        cause: ApplyError,
        /// Result of the rollback.
        rollback: String,
    },
    /// Cleanup did not remove everything.
    #[error("cleanup left {left}{}", if .errors.is_empty() { String::new() } else { format!(" (errors: {})", .errors.join("; ")) })]
    Leftovers {
        /// What is still there.
        left: String,
        /// Step errors met on the way.
        errors: Vec<String>,
    },
    /// No state file.
    #[error("the testbed is not up (no {dir}/state.json); run `harness up` first")]
    NotUp {
        /// State directory.
        dir: String,
    },
    /// The state says `up` never finished.
    #[error("the testbed is half-built (a `harness up` by pid {pid} did not finish); run `harness up` again or `harness down`")]
    HalfBuilt {
        /// Pid of that `up`.
        pid: u32,
    },
    /// No such node.
    #[error("no node `{node}` in topology `{topology}`: expected one of {known}")]
    UnknownNode {
        /// Requested node.
        node: String,
        /// Current topology.
        topology: String,
        /// Valid names.
        known: String,
    },
    /// Empty command.
    #[error("no command given to run in node `{0}`")]
    NoCommand(String),
    /// The command could not be started.
    #[error("cannot run `{cmd}` in node `{node}`: {source}")]
    Spawn {
        /// Node.
        node: String,
        /// Command line.
        cmd: String,
        /// OS error.
        source: io::Error,
    },
}

/// Knobs of [`Testbed::up`].
#[derive(Debug, Clone, Copy, Default)]
pub struct UpOptions {
    /// Echo every command to stderr.
    pub verbose: bool,
    /// Fail on purpose at this 1-based step (fault injection; see
    /// [`crate::exec::FAIL_AT_STEP_ENV`]).
    pub fail_at_step: Option<usize>,
}

/// A built testbed (from `up` or from the state file via `attach`).
#[derive(Debug, Clone)]
pub struct Testbed {
    state: State,
    state_dir: PathBuf,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Removes everything carrying our prefix; errors if anything survives.
/// Returns what was found before cleaning.
/// Makes up to three passes, in case something appears meanwhile (e.g. an
/// orphaned command of a killed `up` finishing late).
pub fn cleanup(cgroups: Option<&CgroupFlavor>, verbose: bool) -> Result<Inventory, Error> {
    let before = discover(cgroups);
    let mut current = before.clone();
    let mut errors = Vec::new();
    for pass in 0..3 {
        if current.is_empty() {
            return Ok(before);
        }
        if pass > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        errors = apply_all(&plan_down(&current), &mut SystemRunner::new(verbose, None));
        current = discover(cgroups);
    }
    if current.is_empty() {
        Ok(before)
    } else {
        Err(Error::Leftovers {
            left: describe(&current),
            errors: errors.iter().map(|e| e.to_string()).collect(),
        })
    }
}

/// `harness down`: stops every process in our namespaces, deletes them,
/// stray links and cgroups, and the state file. Works without a state file
/// (after a crash). Interrupts are ignored meanwhile. Returns what it removed.
pub fn down(state_dir: &Path, verbose: bool) -> Result<Inventory, Error> {
    if !crate::privilege::is_privileged() {
        return Err(Error::NotPrivileged);
    }
    let _lock = state::lock(state_dir, LOCK_WAIT)?;
    crate::signal::ignore_interrupts();
    let flavor = CgroupFlavor::detect().ok();
    let result = cleanup(flavor.as_ref(), verbose);
    let removed = state::remove(state_dir);
    crate::signal::default_interrupts();
    let inv = result?;
    removed?;
    Ok(inv)
}

impl Testbed {
    /// Builds the testbed. Idempotent by redo: anything carrying the prefix
    /// (a previous testbed, or leftovers of a crash) is torn down first, then
    /// the plan is applied from scratch. On a failed step, or when
    /// `interrupted` becomes true, everything is rolled back before returning.
    pub fn up(
        topology: Topology,
        profile: Profile,
        state_dir: &Path,
        interrupted: &AtomicBool,
        opts: UpOptions,
    ) -> Result<Testbed, Error> {
        let verbose = opts.verbose;
        topology.validate()?;
        profile.validate()?;
        if !crate::privilege::is_privileged() {
            return Err(Error::NotPrivileged);
        }
        let _lock = state::lock(state_dir, LOCK_WAIT)?;
        let flavor = CgroupFlavor::detect().ok();
        let steps = plan_up(&topology, &profile, flavor.as_ref())?;
        let cgroups = if steps
            .iter()
            .any(|s| matches!(s.action, crate::plan::Action::MakeCgroup { .. }))
        {
            flavor.clone()
        } else {
            None
        };
        cleanup(flavor.as_ref(), verbose)?;
        let mut st = State {
            phase: Phase::Building,
            topology,
            profile,
            cgroups,
            harness_pid: std::process::id(),
            started_unix: now_unix(),
        };
        state::save(state_dir, &st)?;
        let applied = apply(
            &steps,
            &mut SystemRunner::new(verbose, opts.fail_at_step),
            interrupted,
        );
        if let Err(cause) = applied {
            crate::signal::ignore_interrupts();
            let rollback = match cleanup(flavor.as_ref(), verbose) {
                Ok(_) => match state::remove(state_dir) {
                    Ok(()) => "nothing left behind".to_string(),
                    Err(e) => e.to_string(),
                },
                Err(e) => format!("INCOMPLETE, run `harness down`: {e}"),
            };
            let interrupted = matches!(cause, ApplyError::Interrupted { .. });
            return Err(Error::UpAborted {
                interrupted,
                cause,
                rollback,
            });
        }
        st.phase = Phase::Up;
        state::save(state_dir, &st)?;
        Ok(Testbed {
            state: st,
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// The testbed described by the state file (it must be fully up).
    pub fn attach(state_dir: &Path) -> Result<Testbed, Error> {
        let st = state::load(state_dir)?.ok_or_else(|| Error::NotUp {
            dir: state_dir.display().to_string(),
        })?;
        if st.phase != Phase::Up {
            return Err(Error::HalfBuilt {
                pid: st.harness_pid,
            });
        }
        Ok(Testbed {
            state: st,
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// What was built.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The topology realized.
    pub fn topology(&self) -> &Topology {
        &self.state.topology
    }

    /// Namespace of a node (`sw` names the switch namespace).
    pub fn netns(&self, node: &str) -> Result<String, Error> {
        if node == "sw" {
            return Ok(switch_ns());
        }
        match self.state.topology.node(node) {
            Some(_) => Ok(netns_name(node)),
            None => Err(Error::UnknownNode {
                node: node.into(),
                topology: self.state.topology.name.clone(),
                known: self
                    .state
                    .topology
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .chain(["sw"])
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Builds `ip netns exec bal-NODE CMD...`, placed into the node's cgroup
    /// (if any) before it executes, and hands it to `f`.
    fn with_command<T>(
        &self,
        node: &str,
        argv: &[String],
        f: impl FnOnce(&mut Command) -> io::Result<T>,
    ) -> Result<T, Error> {
        let ns = self.netns(node)?;
        if argv.is_empty() {
            return Err(Error::NoCommand(node.into()));
        }
        let spawn_err = |source| Error::Spawn {
            node: node.into(),
            cmd: argv.join(" "),
            source,
        };
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns]).args(argv);
        let procs: Option<File> = match self.state.node_cgroup(node) {
            Some(dir) => Some(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(procs_file(&dir))
                    .map_err(spawn_err)?,
            ),
            None => None,
        };
        if let Some(fd) = procs.as_ref().map(|f| f.as_raw_fd()) {
            // SAFETY: between fork and exec the closure only calls write(2),
            // which is async-signal-safe, on a descriptor that `procs` keeps
            // open until `f` has spawned the child. Writing "0" moves the
            // writing (child) process into the cgroup.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        }
        let r = f(&mut cmd).map_err(spawn_err);
        drop(procs);
        r
    }

    /// Runs a command in a node and waits; stdio is inherited.
    pub fn exec(&self, node: &str, argv: &[String]) -> Result<ExitStatus, Error> {
        self.with_command(node, argv, |c| c.status())
    }

    /// Runs a command in a node and captures its output.
    pub fn output(&self, node: &str, argv: &[String]) -> Result<Output, Error> {
        self.with_command(node, argv, |c| c.output())
    }

    /// Starts a command in a node, in its own process group; the returned
    /// handle kills the group when dropped (and `down` kills anything left
    /// in the namespaces anyway, e.g. after the harness was killed).
    pub fn spawn(
        &self,
        node: &str,
        argv: &[String],
        configure: impl FnOnce(&mut Command),
    ) -> Result<NodeProcess, Error> {
        let child = self.with_command(node, argv, |c| {
            c.process_group(0);
            configure(c);
            c.spawn()
        })?;
        Ok(NodeProcess {
            child,
            node: node.into(),
        })
    }

    /// Tears the testbed down (see [`down`]).
    pub fn down(self, verbose: bool) -> Result<Inventory, Error> {
        down(&self.state_dir, verbose)
    }
}

/// A process started by [`Testbed::spawn`]; killed (with its process
/// group) when dropped unless it already exited.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    node: String,
}

impl NodeProcess {
    /// Its pid (also its process group id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The node it runs in.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The child, e.g. to take its stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Exit status if it has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits for it to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }

    /// SIGKILLs its process group and reaps it.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if self.child.try_wait()?.is_none() {
            if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: killpg(2) on the group we created with
                // process_group(0); the leader is not reaped yet, so its
                // pid (the pgid) cannot have been reused.
                unsafe {
                    libc::killpg(pgid, libc::SIGKILL);
                }
            }
        }
        self.child.wait()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
