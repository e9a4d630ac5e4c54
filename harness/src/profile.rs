//! Testbed profiles: how much CPU each node gets (cgroup CPU quota) and how
//! fast each link is (tc tbf). Pure values; `plan` realizes them.
//!
//! All namespaces share this host's CPUs, so without a profile the curves
//! show the host, not the design. The `paper` profile scales the paper's
//! hardware (LB Pentium III 700 MHz, real servers 500 MHz, 100 Mbit/s
//! switched Ethernet) onto a 2-core machine.
//!
//! Shape: 100 Mbit/s carries ~100k+ replies/s of the 75-byte page, far
//! above what the CPU shares allow, so the quota is what shapes the curve
//! and the links only cap bulk bytes. One paper GHz is worth
//! [`CORES_PER_PAPER_GHZ`] of a core here: LB 0.28 core, RS 0.20 core
//! (keeping the paper's 7:5 ratio). Caveat: a quota throttles only what is
//! charged to the cgroup (balancer, web server); kernel softirq packet work
//! is charged to whoever is running and is not throttled.
//!
//! Calibration (measured 2026-11-26 with the release binaries, Linux
//! 6.18, 2 cores, `harness run --profile paper --duration 10s`, 3 clients,
//! scheduler rr). Quotas alone did not make servers saturate: a realserver
//! at 0.28 core answered 6000 req/s directly without being throttled once,
//! because almost all of the per-request cost is kernel work. Hence
//! [`PAPER_SERVER_WORK_US`] = 500 µs of user CPU per request, which puts a
//! real server's capacity at ~0.20 / 500 µs = 400 req/s (measured ~380) and
//! an LB's local server at up to ~560 req/s:
//!
//! | topology, bi-active | offered (conn/s) | reply rate avg | errors (client-timo) |
//! |---------------------|-----------------:|---------------:|---------------------:|
//! | 1lb-1rs, off        |   300 |   300 |    0 |
//! | 1lb-1rs, off        |   500 |   383 |    0 (queueing; all served late) |
//! | 1lb-1rs, off        |   700 |   380 | 1095 of 7000 |
//! | 1lb-1rs, off        |   900 |   379 | 2804 of 9000 |
//! | 1lb-1rs, on         |   500 |   500 |    0 |
//! | 1lb-1rs, on         |   700 |   700 |    0 |
//! | 1lb-1rs, on         |   900 |   821 |    0 |
//! | 1lb-1rs, on         |  1200 |   776 |  352 of 12000 |
//! | 2lb-2rs, on         |  1200 |  1200 |    0 |
//! | 2lb-2rs, off        |  1200 |   760 |  558 of 12000 |
//!
//! So the servers saturate at ~380 req/s per real server (bi-active off)
//! and ~780 req/s for one LB plus one real server (bi-active on, rr splits
//! 50/50), while the clients keep headroom (the three loadgens used 5-8 %
//! of a core in total at every point) and so does the balancer (under 0.1
//! s of CPU per second, well below its 0.28 quota). Rates of 600-900 conn/s
//! on `1lb-1rs` (1200-1600 on `2lb-2rs`) therefore show the bi-active
//! difference; `harness demo` uses 600.

use serde::{Deserialize, Serialize};

use crate::topology::Role;

/// Host cores that stand for 1 GHz of the paper's Pentium III.
pub const CORES_PER_PAPER_GHZ: f64 = 0.4;
/// The paper's load balancer clock (MHz).
pub const PAPER_LB_MHZ: f64 = 700.0;
/// The paper's real server clock (MHz).
pub const PAPER_RS_MHZ: f64 = 500.0;
/// The paper's link rate (3Com 100 Mbit/s switching hub).
pub const PAPER_LINK_MBIT: u32 = 100;
/// CPU work per request of the `paper` profile's web servers (see
/// [`Profile::server_work_us`] and the calibration notes above).
pub const PAPER_SERVER_WORK_US: u32 = 500;
/// CFS period for quotas (the kernel default, 100 ms).
pub const DEFAULT_CPU_PERIOD_US: u32 = 100_000;
/// Queueing the tbf allows before dropping, like a small switch buffer.
pub const TBF_LATENCY_MS: u32 = 20;

/// Names accepted by [`Profile::builtin`].
pub const BUILTIN_PROFILES: &[&str] = &["unconstrained", "paper"];

/// CPU cores per role (`None`: no cgroup, unconstrained).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuShares {
    /// Load generator hosts.
    #[serde(default)]
    pub client: Option<f64>,
    /// The router.
    #[serde(default)]
    pub router: Option<f64>,
    /// Each load balancer.
    #[serde(default)]
    pub balancer: Option<f64>,
    /// Each real server.
    #[serde(default)]
    pub realserver: Option<f64>,
}

/// Node capacities and link rates of one testbed flavour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Profile name.
    pub name: String,
    /// CPU share per role, in cores.
    #[serde(default)]
    pub cpu: CpuShares,
    /// Rate of every data-path link, Mbit/s, each direction (`None`: unlimited).
    #[serde(default)]
    pub link_mbit: Option<u32>,
    /// CFS period the quotas are expressed in.
    #[serde(default = "default_period")]
    pub cpu_period_us: u32,
    /// CPU work per request in every web server (`realserver --work-us`),
    /// in microseconds of the server thread's own CPU time. A quota only
    /// throttles what is charged to the cgroup, and a 75-byte page costs
    /// the server process almost nothing (the kernel's packet work is not
    /// charged to it), so this is what makes a server's capacity follow its
    /// CPU share: capacity ~ cores / work.
    #[serde(default)]
    pub server_work_us: Option<u32>,
}

fn default_period() -> u32 {
    DEFAULT_CPU_PERIOD_US
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Neither a built-in nor a readable file.
    #[error("unknown profile `{0}`: expected one of {b} or a path to a .toml/.json file", b = BUILTIN_PROFILES.join(", "))]
    Unknown(String),
    /// Unreadable or malformed file.
    #[error("profile file {path}: {msg}")]
    File {
        /// File path.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// A value out of range.
    #[error("profile `{profile}` is invalid: {msg}")]
    Invalid {
        /// Profile name.
        profile: String,
        /// What is wrong and what is expected.
        msg: String,
    },
}

impl Profile {
    /// A built-in profile by name (see [`BUILTIN_PROFILES`]).
    pub fn builtin(name: &str) -> Option<Profile> {
        match name {
            "unconstrained" => Some(Profile {
                name: name.into(),
                cpu: CpuShares::default(),
                link_mbit: None,
                cpu_period_us: DEFAULT_CPU_PERIOD_US,
                server_work_us: None,
            }),
            "paper" => Some(Profile {
                name: name.into(),
                cpu: CpuShares {
                    client: None,
                    router: None,
                    balancer: Some(PAPER_LB_MHZ / 1000.0 * CORES_PER_PAPER_GHZ),
                    realserver: Some(PAPER_RS_MHZ / 1000.0 * CORES_PER_PAPER_GHZ),
                },
                link_mbit: Some(PAPER_LINK_MBIT),
                cpu_period_us: DEFAULT_CPU_PERIOD_US,
                server_work_us: Some(PAPER_SERVER_WORK_US),
            }),
            _ => None,
        }
    }

    /// A built-in name, or else a `.toml`/`.json` file, validated.
    pub fn load(spec: &str) -> Result<Profile, ProfileError> {
        let p = match Profile::builtin(spec) {
            Some(p) => p,
            None => {
                if !std::path::Path::new(spec).exists() {
                    return Err(ProfileError::Unknown(spec.into()));
                }
                let ferr = |msg: String| ProfileError::File {
                    path: spec.into(),
                    msg,
                };
                let text = std::fs::read_to_string(spec).map_err(|e| ferr(e.to_string()))?;
                if spec.ends_with(".json") {
                    serde_json::from_str(&text).map_err(|e| ferr(e.to_string()))?
                } else {
                    toml::from_str(&text).map_err(|e| ferr(e.to_string()))?
                }
            }
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks ranges: quotas of at least 1 ms per period (kernel minimum),
    /// periods of 1 ms..1 s, link rates of 1 Mbit/s..100 Gbit/s.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |msg: String| ProfileError::Invalid {
            profile: self.name.clone(),
            msg,
        };
        if !(1_000..=1_000_000).contains(&self.cpu_period_us) {
            return Err(bad(format!(
                "cpu_period_us = {} must be in 1000..=1000000",
                self.cpu_period_us
            )));
        }
        for role in [Role::Client, Role::Router, Role::Balancer, Role::Realserver] {
            if let Some(c) = self.cores(role) {
                let q = c * f64::from(self.cpu_period_us);
                if !c.is_finite() || c <= 0.0 || c > 1024.0 || q < 1000.0 {
                    return Err(bad(format!(
                        "cpu.{} = {c} cores must be > 0, at most 1024, and at least 1 ms per {} us period",
                        role.as_str(),
                        self.cpu_period_us
                    )));
                }
            }
        }
        if let Some(w) = self.server_work_us {
            if w > 1_000_000 {
                return Err(bad(format!(
                    "server_work_us = {w} must be at most 1000000 (one second per request)"
                )));
            }
        }
        if let Some(m) = self.link_mbit {
            if !(1..=100_000).contains(&m) {
                return Err(bad(format!("link_mbit = {m} must be in 1..=100000")));
            }
        }
        Ok(())
    }

    /// CPU share of a role in cores, if constrained.
    pub fn cores(&self, role: Role) -> Option<f64> {
        match role {
            Role::Client => self.cpu.client,
            Role::Router => self.cpu.router,
            Role::Balancer => self.cpu.balancer,
            Role::Realserver => self.cpu.realserver,
        }
    }

    /// CFS quota (µs per period) of a role, if constrained.
    pub fn quota_us(&self, role: Role) -> Option<u64> {
        self.cores(role)
            .map(|c| (c * f64::from(self.cpu_period_us)).round() as u64)
    }

    /// tbf arguments for a link (`rate .. burst .. latency ..`), if limited.
    /// The burst is 1 ms worth of bytes (at least 3000, two full frames).
    pub fn tbf_args(&self) -> Option<Vec<String>> {
        self.link_mbit.map(|m| {
            let burst = (u64::from(m) * 1_000_000 / 8 / 1000).max(3000);
            vec![
                "rate".into(),
                format!("{m}mbit"),
                "burst".into(),
                burst.to_string(),
                "latency".into(),
                format!("{TBF_LATENCY_MS}ms"),
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_numbers() {
        let p = Profile::builtin("paper").unwrap();
        p.validate().unwrap();
        assert_eq!(p.quota_us(Role::Balancer), Some(28_000));
        assert_eq!(p.quota_us(Role::Realserver), Some(20_000));
        assert_eq!(p.quota_us(Role::Client), None);
        assert_eq!(p.quota_us(Role::Router), None);
        assert_eq!(p.server_work_us, Some(500));
        assert_eq!(
            p.tbf_args().unwrap().join(" "),
            "rate 100mbit burst 12500 latency 20ms"
        );
    }

    #[test]
    fn unconstrained_has_nothing() {
        let p = Profile::builtin("unconstrained").unwrap();
        p.validate().unwrap();
        assert!(p.tbf_args().is_none());
        assert!(
            [Role::Client, Role::Router, Role::Balancer, Role::Realserver]
                .iter()
                .all(|r| p.quota_us(*r).is_none())
        );
    }

    #[test]
    fn rejects_out_of_range() {
        let mut p = Profile::builtin("paper").unwrap();
        p.cpu.balancer = Some(0.001);
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("cpu.balancer = 0.001"), "{e}");
        p.cpu.balancer = Some(f64::NAN);
        assert!(p.validate().is_err());
        p.cpu.balancer = Some(0.3);
        p.server_work_us = Some(2_000_000);
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("server_work_us = 2000000"));
        p.server_work_us = Some(500);
        p.link_mbit = Some(0);
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("link_mbit = 0"));
    }

    #[test]
    fn load_file_and_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(
            &f,
            "name = \"half\"\nlink_mbit = 10\n[cpu]\nrealserver = 0.5\n",
        )
        .unwrap();
        let p = Profile::load(f.to_str().unwrap()).unwrap();
        assert_eq!(p.quota_us(Role::Realserver), Some(50_000));
        assert_eq!(p.link_mbit, Some(10));
        let e = Profile::load("nope").unwrap_err().to_string();
        assert!(e.contains("unconstrained, paper"), "{e}");
    }
}
