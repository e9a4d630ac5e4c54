//! Fault injection as data (pure): `--fault at=T,ACTION=NODE` and `--down
//! NODE` parsed and checked against the topology and the run length before
//! anything starts, and recorded in the run's result as
//! `{"at_ms", "action", "node"}`.
//!
//! ACTION is `kill` (SIGKILL), `stop` (SIGTERM), `start` (a process that is
//! not running), `restart` (stop, then start), `link-down` / `link-up`
//! (NODE is `node:iface`), `block-heartbeat` / `unblock-heartbeat` (NODE is
//! a balancer). A process NODE is `lbN` (its balancer), `lbN-local` (its
//! local web server) or `rsN` (a real server). T is `4s`, `4.5s`, `4000ms`
//! or plain seconds, from the start of the load.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::topology::{Role, Topology};

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// SIGKILL the process.
    Kill,
    /// SIGTERM the process (a balancer announces its leave and drains).
    Stop,
    /// Start a process that is not running.
    Start,
    /// Stop (SIGTERM, then wait), then start.
    Restart,
    /// Take an interface down.
    LinkDown,
    /// Bring an interface up.
    LinkUp,
    /// Drop a balancer's heartbeats (in and out) with nftables.
    BlockHeartbeat,
    /// Undo `block-heartbeat`.
    UnblockHeartbeat,
}

impl Action {
    const ALL: [(&'static str, Action); 8] = [
        ("kill", Action::Kill),
        ("stop", Action::Stop),
        ("start", Action::Start),
        ("restart", Action::Restart),
        ("link-down", Action::LinkDown),
        ("link-up", Action::LinkUp),
        ("block-heartbeat", Action::BlockHeartbeat),
        ("unblock-heartbeat", Action::UnblockHeartbeat),
    ];

    /// Its name on the command line and in results.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("?", |(n, _)| n)
    }

    fn names() -> String {
        Self::ALL.map(|(n, _)| n).join(", ")
    }
}

/// What a fault acts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// The balancer process of node `lbN`.
    Balancer(String),
    /// The local web server of balancer node `lbN` (`lbN-local`).
    Local(String),
    /// The web server of real-server node `rsN`.
    Server(String),
    /// Interface `iface` of `node`.
    Link {
        /// Node name.
        node: String,
        /// Interface name inside it.
        iface: String,
    },
}

impl fmt::Display for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultTarget::Balancer(n) | FaultTarget::Server(n) => f.write_str(n),
            FaultTarget::Local(n) => write!(f, "{n}-local"),
            FaultTarget::Link { node, iface } => write!(f, "{node}:{iface}"),
        }
    }
}

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Milliseconds after the start of the load.
    pub at_ms: u64,
    /// What to do.
    pub action: Action,
    /// To what.
    pub target: FaultTarget,
}

/// A fault as the result JSON records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Milliseconds after the start of the load.
    pub at_ms: u64,
    /// Action name (`kill`, `link-down`, ...).
    pub action: String,
    /// Node (`lb2`, `lb1-local`, `rs1`, `lb1:front`).
    pub node: String,
}

impl Fault {
    /// The record for the result.
    pub fn record(&self) -> FaultRecord {
        FaultRecord {
            at_ms: self.at_ms,
            action: self.action.as_str().into(),
            node: self.target.to_string(),
        }
    }
}

/// Why a fault spec is refused: one line naming the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FaultError(pub String);

fn err<T>(m: String) -> Result<T, FaultError> {
    Err(FaultError(m))
}

/// Parses `4s`, `4.5s`, `4000ms` or `4` (seconds) into milliseconds.
pub fn parse_time_ms(s: &str) -> Option<u64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1000.0)
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0 && v * scale < 1e12).then(|| (v * scale).round() as u64)
}

/// A process NODE (`lbN`, `lbN-local`, `rsN`) by its name only.
fn process_target(node: &str) -> FaultTarget {
    match node.strip_suffix("-local") {
        Some(lb) => FaultTarget::Local(lb.to_string()),
        None if node.starts_with("rs") => FaultTarget::Server(node.to_string()),
        None => FaultTarget::Balancer(node.to_string()),
    }
}

impl FromStr for Fault {
    type Err = FaultError;

    /// Syntax only; [`Fault::validate`] checks it against the run.
    fn from_str(spec: &str) -> Result<Self, FaultError> {
        let bad = |m: &str| {
            err(format!(
                "--fault {spec:?}: {m} (expected at=T,ACTION=NODE, e.g. at=4s,kill=lb2)"
            ))
        };
        let mut parts = spec.split(',');
        let (Some(at), Some(act), None) = (parts.next(), parts.next(), parts.next()) else {
            return bad("two comma-separated fields expected");
        };
        let Some(t) = at.trim().strip_prefix("at=") else {
            return bad("the first field must be at=T");
        };
        let Some(at_ms) = parse_time_ms(t) else {
            return bad(&format!(
                "time {t:?}: expected seconds like 4s, 4.5s or 4000ms"
            ));
        };
        let Some((name, node)) = act.trim().split_once('=') else {
            return bad("the second field must be ACTION=NODE");
        };
        let Some(action) = Action::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
        else {
            return err(format!(
                "--fault {spec:?}: unknown action {name:?} (expected one of {})",
                Action::names()
            ));
        };
        let target = match action {
            Action::LinkDown | Action::LinkUp => match node.split_once(':') {
                Some((n, i)) if !n.is_empty() && !i.is_empty() => FaultTarget::Link {
                    node: n.into(),
                    iface: i.into(),
                },
                _ => return bad(&format!("{name} needs NODE:IFACE, got {node:?}")),
            },
            Action::BlockHeartbeat | Action::UnblockHeartbeat => FaultTarget::Balancer(node.into()),
            _ => process_target(node),
        };
        Ok(Fault {
            at_ms,
            action,
            target,
        })
    }
}

/// Checks that `target` names something of `t`: a balancer node for
/// `lbN`/`lbN-local`, a real-server node for `rsN`, an interface for links.
pub fn check_target(target: &FaultTarget, t: &Topology) -> Result<(), String> {
    let role_of = |n: &str| t.node(n).map(|x| x.role);
    let names = |r: Role| -> String {
        t.nodes
            .iter()
            .filter(|n| n.role == r)
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match target {
        FaultTarget::Balancer(n) | FaultTarget::Local(n) if role_of(n) != Some(Role::Balancer) => {
            Err(format!(
                "{target}: no balancer {n} in topology `{}` (balancers: {})",
                t.name,
                names(Role::Balancer)
            ))
        }
        FaultTarget::Server(n) if role_of(n) != Some(Role::Realserver) => Err(format!(
            "{target}: no real server {n} in topology `{}` (real servers: {})",
            t.name,
            names(Role::Realserver)
        )),
        FaultTarget::Link { node, iface } => match t.node(node) {
            None => Err(format!("{target}: no node {node} in topology `{}`", t.name)),
            Some(n) if !n.ifaces.iter().any(|f| &f.name == iface) => Err(format!(
                "{target}: {node} has no interface {iface} (it has: {})",
                n.ifaces
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(_) => Ok(()),
        },
        _ => Ok(()),
    }
}

impl Fault {
    /// Checks the fault against the topology and the run length (`None`:
    /// unknown, e.g. a `--num-conns` run).
    pub fn validate(&self, t: &Topology, duration_ms: Option<u64>) -> Result<(), FaultError> {
        let spec = format!(
            "at={}ms,{}={}",
            self.at_ms,
            self.action.as_str(),
            self.target
        );
        check_target(&self.target, t).map_err(|e| FaultError(format!("--fault {spec}: {e}")))?;
        if let Some(d) = duration_ms {
            if self.at_ms >= d {
                return err(format!(
                    "--fault {spec}: at {} ms is not before the end of the {d} ms run",
                    self.at_ms
                ));
            }
        }
        Ok(())
    }
}

/// Parses and checks `--down NODE` (a process: `lbN`, `lbN-local`, `rsN`).
pub fn parse_down(node: &str, t: &Topology) -> Result<FaultTarget, FaultError> {
    let target = process_target(node);
    check_target(&target, t).map_err(|e| FaultError(format!("--down {node}: {e}")))?;
    Ok(target)
}

/// Checks a whole schedule: each fault, and that `start` acts on a process
/// that is down at that moment (by `--down`, or an earlier kill/stop) and
/// kill/stop/restart on one that is up. Returns the faults sorted by time.
pub fn check_schedule(
    faults: &[Fault],
    down: &[FaultTarget],
    t: &Topology,
    duration_ms: Option<u64>,
) -> Result<Vec<Fault>, FaultError> {
    let mut sorted = faults.to_vec();
    sorted.sort_by_key(|f| f.at_ms);
    let mut is_down: Vec<FaultTarget> = down.to_vec();
    for f in &sorted {
        f.validate(t, duration_ms)?;
        let down_now = is_down.contains(&f.target);
        let spec = format!("at={}ms,{}={}", f.at_ms, f.action.as_str(), f.target);
        match f.action {
            Action::Start if !down_now => {
                return err(format!(
                    "--fault {spec}: {} is running then (start needs --down {} or an earlier kill/stop)",
                    f.target, f.target
                ))
            }
            Action::Kill | Action::Stop | Action::Restart if down_now => {
                return err(format!("--fault {spec}: {} is not running then", f.target))
            }
            Action::Start => is_down.retain(|x| x != &f.target),
            Action::Kill | Action::Stop => is_down.push(f.target.clone()),
            _ => {}
        }
    }
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology::builtin("2lb-2rs").unwrap()
    }

    fn f(s: &str) -> Result<Fault, FaultError> {
        s.parse()
    }

    #[test]
    fn parses_every_action() {
        assert_eq!(
            f("at=4s,kill=lb2").unwrap(),
            Fault {
                at_ms: 4000,
                action: Action::Kill,
                target: FaultTarget::Balancer("lb2".into())
            }
        );
        assert_eq!(
            f("at=9,start=rs1").unwrap().target,
            FaultTarget::Server("rs1".into())
        );
        assert_eq!(
            f("at=1500ms,stop=lb1-local").unwrap(),
            Fault {
                at_ms: 1500,
                action: Action::Stop,
                target: FaultTarget::Local("lb1".into())
            }
        );
        assert_eq!(
            f("at=2.5s,link-down=lb1:front").unwrap().target,
            FaultTarget::Link {
                node: "lb1".into(),
                iface: "front".into()
            }
        );
        let b = f("at=1s,block-heartbeat=lb2").unwrap();
        assert_eq!(
            b.record(),
            FaultRecord {
                at_ms: 1000,
                action: "block-heartbeat".into(),
                node: "lb2".into()
            }
        );
        for (name, a) in Action::ALL {
            assert_eq!(a.as_str(), name);
        }
    }

    #[test]
    fn bad_specs_get_one_precise_line() {
        let e = |s: &str| f(s).unwrap_err().to_string();
        assert_eq!(
            e("at=4s,explode=lb2"),
            "--fault \"at=4s,explode=lb2\": unknown action \"explode\" (expected one of kill, stop, start, restart, link-down, link-up, block-heartbeat, unblock-heartbeat)"
        );
        assert!(e("at=soon,kill=lb2").contains("time \"soon\": expected seconds"));
        assert!(e("kill=lb2").contains("two comma-separated fields"));
        assert!(e("at=1s,link-down=lb1").contains("link-down needs NODE:IFACE"));
        let v =
            |s: &str, d: Option<u64>| f(s).unwrap().validate(&topo(), d).unwrap_err().to_string();
        assert_eq!(
            v("at=4s,kill=lb3", Some(12_000)),
            "--fault at=4000ms,kill=lb3: lb3: no balancer lb3 in topology `2lb-2rs` (balancers: lb1, lb2)"
        );
        assert!(v("at=4s,kill=rs9", None).contains("no real server rs9"));
        assert!(v("at=4s,link-down=lb1:eth7", None).contains("lb1 has no interface eth7"));
        assert_eq!(
            v("at=12s,kill=lb2", Some(12_000)),
            "--fault at=12000ms,kill=lb2: at 12000 ms is not before the end of the 12000 ms run"
        );
        assert!(f("at=4s,kill=lb2")
            .unwrap()
            .validate(&topo(), Some(12_000))
            .is_ok());
        assert!(f("at=4s,link-down=lb1:front")
            .unwrap()
            .validate(&topo(), None)
            .is_ok());
    }

    #[test]
    fn schedules_follow_process_state() {
        let t = topo();
        let fs = |v: &[&str]| v.iter().map(|s| f(s).unwrap()).collect::<Vec<_>>();
        let down = vec![parse_down("lb2", &t).unwrap()];
        let ok = check_schedule(
            &fs(&["at=9s,kill=lb2", "at=3s,start=lb2"]),
            &down,
            &t,
            Some(12_000),
        )
        .unwrap();
        assert_eq!(ok.iter().map(|f| f.at_ms).collect::<Vec<_>>(), [3000, 9000]);
        let e = check_schedule(&fs(&["at=3s,start=lb2"]), &[], &t, Some(12_000)).unwrap_err();
        assert!(e.0.contains("lb2 is running then"), "{e}");
        let e =
            check_schedule(&fs(&["at=3s,kill=rs1", "at=4s,kill=rs1"]), &[], &t, None).unwrap_err();
        assert!(e.0.contains("rs1 is not running then"), "{e}");
        assert!(parse_down("lb9-local", &t)
            .unwrap_err()
            .0
            .starts_with("--down lb9-local: lb9-local: no balancer lb9"));
    }

    #[test]
    fn times() {
        assert_eq!(parse_time_ms("4s"), Some(4000));
        assert_eq!(parse_time_ms("0.25s"), Some(250));
        assert_eq!(parse_time_ms("250ms"), Some(250));
        assert_eq!(parse_time_ms("3"), Some(3000));
        assert_eq!(parse_time_ms("-1s"), None);
        assert_eq!(parse_time_ms("nan"), None);
    }
}
