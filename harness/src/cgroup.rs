//! Which cgroup hierarchy holds the CPU controller (v1 `cpu.cfs_quota_us` or
//! v2 `cpu.max`), where node cgroups live, and how a process joins one.
//! Detection parses `/proc/self/mounts` (pure function + thin I/O wrapper).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::PREFIX;

/// The CPU-controller hierarchy of this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version", rename_all = "lowercase")]
pub enum CgroupFlavor {
    /// cgroup v1: the `cpu` controller's own mount (CFS quota files).
    V1 {
        /// Mount point of the hierarchy carrying `cpu` (e.g. `/sys/fs/cgroup/cpu`).
        root: PathBuf,
    },
    /// cgroup v2: the unified hierarchy with `cpu` available (`cpu.max`).
    V2 {
        /// Mount point of the unified hierarchy (e.g. `/sys/fs/cgroup`).
        root: PathBuf,
    },
}

/// No usable CPU controller.
#[derive(Debug, thiserror::Error)]
#[error("no cgroup CPU controller found in /proc/self/mounts (need a cgroup v1 mount with `cpu`, or cgroup2 listing `cpu` in cgroup.controllers); use `--profile unconstrained`")]
pub struct NoCpuController;

impl CgroupFlavor {
    /// Finds the CPU controller from the text of `/proc/self/mounts`;
    /// `v2_controllers` reads `<root>/cgroup.controllers` of a cgroup2 mount.
    pub fn from_mounts(
        mounts: &str,
        v2_controllers: impl Fn(&Path) -> Option<String>,
    ) -> Option<CgroupFlavor> {
        let mut v2 = None;
        for line in mounts.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [_, mnt, fstype, opts, ..] = f.as_slice() else {
                continue;
            };
            let mnt = PathBuf::from(mnt.replace("\\040", " "));
            match *fstype {
                "cgroup" if opts.split(',').any(|o| o == "cpu") => {
                    return Some(CgroupFlavor::V1 { root: mnt });
                }
                "cgroup2" if v2.is_none() => {
                    let has_cpu = v2_controllers(&mnt)
                        .is_some_and(|c| c.split_whitespace().any(|w| w == "cpu"));
                    if has_cpu {
                        v2 = Some(CgroupFlavor::V2 { root: mnt });
                    }
                }
                _ => {}
            }
        }
        v2
    }

    /// Detects this machine's CPU controller.
    pub fn detect() -> Result<CgroupFlavor, NoCpuController> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|_| NoCpuController)?;
        CgroupFlavor::from_mounts(&mounts, |root| {
            std::fs::read_to_string(root.join("cgroup.controllers")).ok()
        })
        .ok_or(NoCpuController)
    }

    /// Mount point of the hierarchy.
    pub fn root(&self) -> &Path {
        match self {
            CgroupFlavor::V1 { root } | CgroupFlavor::V2 { root } => root,
        }
    }

    /// The cgroup of a node: `<root>/bal-<node>`.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.root().join(format!("{PREFIX}{node}"))
    }

    /// Files to write (in order) to give a cgroup `quota_us` per `period_us`.
    pub fn quota_writes(
        &self,
        dir: &Path,
        quota_us: u64,
        period_us: u32,
    ) -> Vec<(PathBuf, String)> {
        match self {
            CgroupFlavor::V1 { .. } => vec![
                (dir.join("cpu.cfs_period_us"), period_us.to_string()),
                (dir.join("cpu.cfs_quota_us"), quota_us.to_string()),
            ],
            CgroupFlavor::V2 { .. } => {
                vec![(dir.join("cpu.max"), format!("{quota_us} {period_us}"))]
            }
        }
    }

    /// Writes needed once before node cgroups can use the CPU controller
    /// (v2: enable `cpu` for children of the root; v1: none).
    pub fn enable_writes(&self) -> Vec<(PathBuf, String)> {
        match self {
            CgroupFlavor::V1 { .. } => vec![],
            CgroupFlavor::V2 { root } => vec![(root.join("cgroup.subtree_control"), "+cpu".into())],
        }
    }

    /// Human name (`v1` / `v2`).
    pub fn version(&self) -> &'static str {
        match self {
            CgroupFlavor::V1 { .. } => "v1",
            CgroupFlavor::V2 { .. } => "v2",
        }
    }
}

/// The process list of a cgroup directory (same name in v1 and v2).
pub fn procs_file(dir: &Path) -> PathBuf {
    dir.join("cgroup.procs")
}

/// Moves process `pid` into the cgroup `dir`.
pub fn join(dir: &Path, pid: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(procs_file(dir))?;
    f.write_all(pid.to_string().as_bytes())
}

/// Reads the pids currently in a cgroup (empty when it does not exist).
pub fn pids(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(procs_file(dir))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";

    #[test]
    fn v1_cpu_wins_in_hybrid_setups() {
        let f = CgroupFlavor::from_mounts(HYBRID, |_| Some(String::new())).unwrap();
        assert_eq!(
            f,
            CgroupFlavor::V1 {
                root: "/sys/fs/cgroup/cpu".into()
            }
        );
        assert_eq!(
            f.node_dir("lb1"),
            PathBuf::from("/sys/fs/cgroup/cpu/bal-lb1")
        );
        let w = f.quota_writes(&f.node_dir("lb1"), 28000, 100000);
        assert_eq!(
            w[1],
            (
                "/sys/fs/cgroup/cpu/bal-lb1/cpu.cfs_quota_us".into(),
                "28000".into()
            )
        );
        assert!(f.enable_writes().is_empty());
    }

    #[test]
    fn combined_cpu_cpuacct_mount() {
        let m = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n";
        let f = CgroupFlavor::from_mounts(m, |_| None).unwrap();
        assert_eq!(f.root(), Path::new("/sys/fs/cgroup/cpu,cpuacct"));
    }

    #[test]
    fn v2_needs_cpu_in_controllers() {
        let m = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        assert_eq!(
            CgroupFlavor::from_mounts(m, |_| Some("memory pids".into())),
            None
        );
        let f = CgroupFlavor::from_mounts(m, |_| Some("cpuset cpu io memory".into())).unwrap();
        assert_eq!(f.version(), "v2");
        let w = f.quota_writes(&f.node_dir("rs1"), 20000, 100000);
        assert_eq!(
            w,
            vec![(
                "/sys/fs/cgroup/bal-rs1/cpu.max".into(),
                "20000 100000".into()
            )]
        );
        assert_eq!(f.enable_writes()[0].1, "+cpu");
    }

    #[test]
    fn cpuset_is_not_cpu() {
        let m = "cgroup /sys/fs/cgroup/cpuset cgroup rw,cpuset 0 0\ngarbage\n";
        assert_eq!(CgroupFlavor::from_mounts(m, |_| None), None);
    }
}
