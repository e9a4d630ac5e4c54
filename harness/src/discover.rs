//! Finds everything on this machine that carries our prefix (namespaces,
//! root-namespace links, cgroups), whatever topology made it: the input of
//! `plan_down`, so `down` also cleans leftovers of crashed or older runs.

use std::path::Path;

use crate::cgroup::CgroupFlavor;
use crate::exec::NETNS_DIR;
use crate::plan::Inventory;
use crate::PREFIX;

fn prefixed_entries(dir: &Path, dirs_only: bool) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(Result::ok)
        .filter(|e| !dirs_only || e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    v.sort();
    v
}

/// Lists our namespaces (`/run/netns/bal-*`), links named `bal-*` in the
/// root namespace (`/sys/class/net`), and `bal-*` cgroups under the CPU
/// hierarchy (when there is one).
pub fn discover(cgroups: Option<&CgroupFlavor>) -> Inventory {
    let mut namespaces = prefixed_entries(Path::new(NETNS_DIR), false);
    // Delete the switch last: hosts first reads better in logs.
    let sw = crate::plan::switch_ns();
    namespaces.sort_by_key(|n| (*n == sw, n.clone()));
    Inventory {
        namespaces,
        root_links: prefixed_entries(Path::new("/sys/class/net"), false),
        cgroups: cgroups
            .map(|c| {
                prefixed_entries(c.root(), true)
                    .into_iter()
                    .map(|n| c.root().join(n))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// One line per kind of leftover, for error messages and `status`.
pub fn describe(inv: &Inventory) -> String {
    let mut parts = Vec::new();
    if !inv.namespaces.is_empty() {
        parts.push(format!("namespaces {}", inv.namespaces.join(" ")));
    }
    if !inv.root_links.is_empty() {
        parts.push(format!("root-namespace links {}", inv.root_links.join(" ")));
    }
    if !inv.cgroups.is_empty() {
        let c: Vec<String> = inv
            .cgroups
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        parts.push(format!("cgroups {}", c.join(" ")));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join("; ")
    }
}
