//! Whether this process may create namespaces (root, or CAP_NET_ADMIN plus
//! CAP_SYS_ADMIN in the effective set). Parsing is pure.

/// The one line printed when privileges are missing.
pub const NEED_ROOT: &str = "harness: creating network namespaces needs root (CAP_NET_ADMIN); run it as root, e.g. `sudo harness up`";

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Whether the `CapEff:` line of `/proc/self/status` text grants
/// CAP_NET_ADMIN and CAP_SYS_ADMIN (both needed by `ip netns`).
pub fn caps_allow(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|bits| bits & (1 << CAP_NET_ADMIN) != 0 && bits & (1 << CAP_SYS_ADMIN) != 0)
}

/// Whether this process has the needed capabilities.
pub fn is_privileged() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| caps_allow(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_capeff() {
        assert!(caps_allow("Name:\tx\nCapEff:\t000001ffffffffff\n"));
        assert!(caps_allow("CapEff:\t0000000000201000\n"));
        assert!(!caps_allow("CapEff:\t0000000000001000\n")); // NET_ADMIN only
        assert!(!caps_allow("CapEff:\t0000000000000000\n"));
        assert!(!caps_allow("CapEff:\tzz\n"));
        assert!(!caps_allow(""));
    }
}
