//! The state file (`/run/bal-harness/state.json`): what is up (topology,
//! profile, cgroup hierarchy), written atomically so `status` and `exec`
//! never read half a file; and the lock that serialises `up` and `down`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cgroup::CgroupFlavor;
use crate::profile::Profile;
use crate::topology::Topology;

/// Default directory of the state file and lock (tmpfs: gone after reboot,
/// like the namespaces it describes).
pub const STATE_DIR: &str = "/run/bal-harness";
/// State file name inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// Lock file name inside the state directory.
pub const LOCK_FILE: &str = "lock";

/// How far `up` got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `up` is running (or died: the next `up`/`down` cleans it).
    Building,
    /// Every step succeeded.
    Up,
}

/// What the harness built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// How far `up` got.
    pub phase: Phase,
    /// The topology realized.
    pub topology: Topology,
    /// The profile realized.
    pub profile: Profile,
    /// The CPU hierarchy used for node cgroups, if any.
    pub cgroups: Option<CgroupFlavor>,
    /// Pid of the `harness up` that wrote it.
    pub harness_pid: u32,
    /// When `up` started (seconds since the Unix epoch).
    pub started_unix: u64,
}

impl State {
    /// The cgroup a node's processes go into, when the profile constrains it.
    pub fn node_cgroup(&self, node: &str) -> Option<PathBuf> {
        let n = self.topology.node(node)?;
        self.profile.quota_us(n.role)?;
        self.cgroups.as_ref().map(|c| c.node_dir(node))
    }
}

/// Problems with the state file or lock.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O on a path failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// The file is not a state file.
    #[error("state file {path} is malformed ({msg}); run `harness down` to clean up")]
    Malformed {
        /// The path.
        path: PathBuf,
        /// Parser message.
        msg: String,
    },
    /// Another `up`/`down` kept the lock too long.
    #[error(
        "another `harness up`/`down` holds {path} (waited {secs} s); try again when it finishes"
    )]
    Locked {
        /// Lock path.
        path: PathBuf,
        /// Seconds waited.
        secs: u64,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the state atomically (temp file, fsync, rename, fsync dir).
pub fn save(dir: &Path, st: &State) -> Result<(), StateError> {
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!(".{STATE_FILE}.{}.tmp", std::process::id()));
    let body = serde_json::to_vec_pretty(st).map_err(|e| StateError::Malformed {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    let mut f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    f.write_all(&body).map_err(io_err("writing", &tmp))?;
    f.sync_all().map_err(io_err("syncing", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io_err("renaming into", &path))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads the state, `None` when there is none.
pub fn load(dir: &Path) -> Result<Option<State>, StateError> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", &path)(e)),
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StateError::Malformed {
                path,
                msg: e.to_string(),
            }),
    }
}

/// Deletes the state file (absent is fine).
pub fn remove(dir: &Path) -> Result<(), StateError> {
    let path = dir.join(STATE_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &path)(e)),
        _ => Ok(()),
    }
}

/// An exclusive `flock` on the lock file, released on drop (and by the
/// kernel if the harness is killed).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the lock, waiting up to `wait` for another holder.
pub fn lock(dir: &Path, wait: Duration) -> Result<Lock, StateError> {
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("opening", &path))?;
    let start = Instant::now();
    loop {
        // SAFETY: flock(2) on a descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Lock { _file: file });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_err("locking", &path)(e));
        }
        if start.elapsed() >= wait {
            return Err(StateError::Locked {
                path,
                secs: wait.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            phase: Phase::Up,
            topology: Topology::builtin("1lb-1rs").unwrap(),
            profile: Profile::builtin("paper").unwrap(),
            cgroups: Some(CgroupFlavor::V1 {
                root: "/sys/fs/cgroup/cpu".into(),
            }),
            harness_pid: 1,
            started_unix: 2,
        }
    }

    #[test]
    fn save_load_remove() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()).unwrap(), None);
        save(d.path(), &sample()).unwrap();
        assert_eq!(load(d.path()).unwrap(), Some(sample()));
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [STATE_FILE]); // no temp file left
        remove(d.path()).unwrap();
        remove(d.path()).unwrap();
        assert_eq!(load(d.path()).unwrap(), None);
    }

    #[test]
    fn malformed_state_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(STATE_FILE), "{").unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("state.json") && e.contains("harness down"),
            "{e}"
        );
    }

    #[test]
    fn node_cgroups_follow_the_profile() {
        let s = sample();
        assert_eq!(
            s.node_cgroup("lb1"),
            Some("/sys/fs/cgroup/cpu/bal-lb1".into())
        );
        assert_eq!(s.node_cgroup("client1"), None);
        assert_eq!(s.node_cgroup("nope"), None);
    }

    #[test]
    fn lock_excludes_a_second_holder() {
        let d = tempfile::tempdir().unwrap();
        let l = lock(d.path(), Duration::from_millis(10)).unwrap();
        let e = lock(d.path(), Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, StateError::Locked { .. }));
        drop(l);
        lock(d.path(), Duration::from_millis(10)).unwrap();
    }
}
