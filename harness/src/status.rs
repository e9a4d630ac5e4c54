//! `harness status`: what exists with our prefix (namespaces, their links,
//! addresses, routes, permanent neighbours; root-namespace links; cgroups
//! with their quotas) and what the state file says. Parsing of `ip -j`
//! output is pure; gathering runs `ip -n NS -j ...`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::cgroup::{self, CgroupFlavor};
use crate::discover::discover;
use crate::state::{self, Phase};

/// One link inside a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface name.
    pub name: String,
    /// Operational state (`UP`, `DOWN`, `UNKNOWN`).
    pub state: String,
    /// Root qdisc kind (`tbf` when shaped).
    pub qdisc: String,
    /// Bridge it is enslaved to, if any.
    pub master: Option<String>,
    /// `addr/len` with the alias label when it differs from the name.
    pub addrs: Vec<String>,
}

/// Parses `ip -j addr` output.
pub fn parse_links(json: &str) -> Vec<LinkInfo> {
    let Ok(Value::Array(links)) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let st = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    links
        .iter()
        .map(|l| {
            let name = st(l, "ifname");
            let addrs = l
                .get("addr_info")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|x| x.get("family").and_then(Value::as_str) == Some("inet"))
                        .map(|x| {
                            let label = st(x, "label");
                            let base = format!(
                                "{}/{}",
                                st(x, "local"),
                                x.get("prefixlen").and_then(Value::as_u64).unwrap_or(0)
                            );
                            if !label.is_empty() && label != name {
                                format!("{base} ({label})")
                            } else {
                                base
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            LinkInfo {
                state: st(l, "operstate"),
                qdisc: st(l, "qdisc"),
                master: l.get("master").and_then(Value::as_str).map(str::to_string),
                name,
                addrs,
            }
        })
        .collect()
}

/// Parses `ip -j route` / `ip -j neigh` output into short lines.
pub fn parse_routes(json: &str) -> Vec<String> {
    let Ok(Value::Array(rs)) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    rs.iter()
        .map(|r| {
            let g = |k: &str| r.get(k).and_then(Value::as_str);
            let mut s = g("dst").unwrap_or("?").to_string();
            if let Some(gw) = g("gateway") {
                let _ = write!(s, " via {gw}");
            }
            if let Some(ll) = g("lladdr") {
                let _ = write!(s, " lladdr {ll}");
            }
            if let Some(d) = g("dev") {
                let _ = write!(s, " dev {d}");
            }
            s
        })
        .collect()
}

fn ip_json(ns: &str, args: &[&str]) -> String {
    Command::new("ip")
        .args(["-n", ns, "-j"])
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The status report as text.
pub fn render(state_dir: &Path) -> String {
    let mut out = String::new();
    match state::load(state_dir) {
        Ok(None) => out.push_str("state: none (no testbed recorded)\n"),
        Ok(Some(st)) => {
            let phase = match st.phase {
                Phase::Up => "up".to_string(),
                Phase::Building => format!(
                    "half-built (harness up pid {} did not finish)",
                    st.harness_pid
                ),
            };
            let _ = writeln!(
                out,
                "state: {phase}; topology {}, profile {}, cgroups {}",
                st.topology.name,
                st.profile.name,
                st.cgroups.as_ref().map(|c| c.version()).unwrap_or("none")
            );
        }
        Err(e) => {
            let _ = writeln!(out, "state: {e}");
        }
    }
    let flavor = CgroupFlavor::detect().ok();
    let inv = discover(flavor.as_ref());
    let _ = writeln!(out, "namespaces: {}", inv.namespaces.len());
    for ns in &inv.namespaces {
        let _ = writeln!(out, "  {ns}");
        for l in parse_links(&ip_json(ns, &["addr"])) {
            let master = l.master.map(|m| format!(" master {m}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "    link {:<12} {:<7} qdisc {}{master} {}",
                l.name,
                l.state,
                l.qdisc,
                l.addrs.join(" ")
            );
        }
        for r in parse_routes(&ip_json(ns, &["route"])) {
            let _ = writeln!(out, "    route {r}");
        }
        for n in parse_routes(&ip_json(ns, &["neigh", "show", "nud", "permanent"])) {
            let _ = writeln!(out, "    neigh {n} (permanent)");
        }
    }
    let _ = writeln!(
        out,
        "root-namespace links with prefix: {}",
        if inv.root_links.is_empty() {
            "none".into()
        } else {
            inv.root_links.join(" ")
        }
    );
    let _ = writeln!(out, "cgroups: {}", inv.cgroups.len());
    for c in &inv.cgroups {
        let quota = match &flavor {
            Some(CgroupFlavor::V1 { .. }) => format!(
                "cpu.cfs_quota_us {} / cpu.cfs_period_us {}",
                read_trim(&c.join("cpu.cfs_quota_us")),
                read_trim(&c.join("cpu.cfs_period_us"))
            ),
            Some(CgroupFlavor::V2 { .. }) => format!("cpu.max {}", read_trim(&c.join("cpu.max"))),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} {quota}, {} processes",
            c.display(),
            cgroup::pids(c).len()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_json() {
        let j = r#"[{"ifindex":1,"ifname":"lo","operstate":"UNKNOWN","qdisc":"noqueue","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"label":"lo"},{"family":"inet","local":"198.18.1.100","prefixlen":32,"label":"lo:0"}]},
                   {"ifindex":2,"ifname":"back","operstate":"UP","qdisc":"tbf","master":"x","addr_info":[{"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        let l = parse_links(j);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].addrs, ["127.0.0.1/8", "198.18.1.100/32 (lo:0)"]);
        assert_eq!(l[1].qdisc, "tbf");
        assert_eq!(l[1].master.as_deref(), Some("x"));
        assert!(l[1].addrs.is_empty());
        assert!(parse_links("garbage").is_empty());
        let r = parse_routes(
            r#"[{"dst":"198.18.0.0/24","gateway":"198.18.1.1","dev":"front"},{"dst":"198.18.1.100","lladdr":"01:00:5e:12:01:64","dev":"eth1"}]"#,
        );
        assert_eq!(
            r,
            [
                "198.18.0.0/24 via 198.18.1.1 dev front",
                "198.18.1.100 lladdr 01:00:5e:12:01:64 dev eth1"
            ]
        );
    }
}
