//! Black-box tests of the `balancer` binary that need no privileges and
//! touch no interface: exit codes and messages for bad flags, bad files,
//! missing interfaces and an unreachable control endpoint.

use std::io::Write;
use std::process::{Command, Output};

fn balancer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_balancer"))
        .args(args)
        .output()
        .expect("run balancer")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_every_run_flag_with_text() {
    let o = balancer(&["run", "--help"]);
    assert!(o.status.success());
    let h = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--config",
        "--front",
        "--back",
        "--vip",
        "--local",
        "--real",
        "--scheduler",
        "--method",
        "--bi-active",
        "--table-size",
        "--verify-checksums",
        "--hash-seed",
        "--timeout",
        "--node-id",
        "--member",
        "--cluster-key-file",
        "--heartbeat-interval",
        "--dead-after",
        "--drain-ms",
        "--health-check",
        "--health-path",
        "--rise",
        "--fall",
        "--tun",
        "--control",
        "--frame-buffer",
        "--rcvbuf",
        "--sndbuf",
        "--tick-ms",
        "--promisc",
    ] {
        assert!(h.contains(flag), "{flag} missing from:\n{h}");
    }
    let o = balancer(&["stats", "--help"]);
    assert!(o.status.success());
}

#[test]
fn bad_flags_exit_2_with_precise_messages() {
    let o = balancer(&["run", "--scheduler", "fifo"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid value 'fifo'"),
        "{}",
        stderr(&o)
    );

    let o = balancer(&["run", "--real", "10.0.0.2:80,wieght=2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown option \"wieght\""),
        "{}",
        stderr(&o)
    );

    let o = balancer(&["run", "--front", "f", "--vip", "10.0.0.1:80"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim(),
        "balancer: missing --back IF (give it as a flag or in --config FILE)"
    );

    let o = balancer(&[
        "run",
        "--front",
        "f",
        "--back",
        "b",
        "--vip",
        "10.0.0.1:80",
        "--method",
        "dr",
        "--real",
        "10.0.0.2:8080",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .contains("real_servers[0].port: expected the VIP port 80 with forwarding = \"dr\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_config_file_exit_2() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "[interfaces]\nfront = \"f\"\nback = \"b\"\n[vip]\naddr = \"10.0.0.1\"\nport = 80\n[[real_servers]]\naddr = \"10.1.0.2\"\nweight = -3"
    )
    .unwrap();
    let path = f.path().to_str().unwrap().to_string();
    let o = balancer(&["run", "--config", &path]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "configuration file {path}: real_servers[0].weight: expected an integer 0..=65535, got -3"
        )),
        "{}",
        stderr(&o)
    );
    let o = balancer(&["run", "--config", "/nonexistent/bal.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read configuration file /nonexistent/bal.toml"));
}

#[test]
fn missing_interface_is_named() {
    let o = balancer(&[
        "run",
        "--front",
        "nosuchif0",
        "--back",
        "nosuchif1",
        "--vip",
        "10.0.0.1:80",
        "--real",
        "10.0.0.2:80",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("front interface 'nosuchif0' does not exist (interfaces here:"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stats_without_a_balancer_fails_cleanly() {
    // A port on loopback with nothing listening.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let o = balancer(&["stats", "--control", &addr, "--timeout-ms", "500"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "cannot connect to the balancer control endpoint {addr}"
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn oversized_table_is_a_configuration_error_naming_the_limit() {
    for n in ["67108865", "1000000000000", "0"] {
        let o = balancer(&[
            "run",
            "--front",
            "f",
            "--back",
            "b",
            "--vip",
            "198.18.1.100:80",
            "--real",
            "198.18.11.11:80",
            "--table-size",
            n,
        ]);
        assert_eq!(o.status.code(), Some(2), "{n}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            e.contains(
                "table_size: expected an integer 1..=67108864 (the connection table reserves about"
            ) && e.contains(&format!("got {n}")),
            "{e}"
        );
    }
}

#[test]
fn cluster_key_problems_exit_2_with_one_line() {
    let base = [
        "run",
        "--front",
        "lo",
        "--back",
        "lo2",
        "--vip",
        "10.0.0.1:80",
        "--bi-active",
        "on",
        "--member",
        "1",
        "--member",
        "2",
    ];
    let one_line = |o: &Output| {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
        assert_eq!(stderr(o).trim().lines().count(), 1, "{}", stderr(o));
        stderr(o)
    };
    let o = balancer(&base);
    assert!(one_line(&o).contains("cluster.key: missing"));
    let mut v = base.to_vec();
    v.extend_from_slice(&["--cluster-key-file", "/nonexistent/cluster.key"]);
    let o = balancer(&v);
    assert!(one_line(&o).contains("cannot read cluster key file /nonexistent/cluster.key"));
    let mut short = tempfile::NamedTempFile::new().unwrap();
    writeln!(short, "too-short").unwrap();
    let p = short.path().to_str().unwrap().to_string();
    let mut v = base.to_vec();
    v.extend_from_slice(&["--cluster-key-file", &p]);
    let o = balancer(&v);
    assert!(
        one_line(&o).contains("expected at least 16 bytes (trailing whitespace ignored), got 9")
    );
    let o = balancer(&["weight", "--control", "127.0.0.1:1", "rs1", "3"]);
    assert!(one_line(&o).contains("target \"rs1\": expected local or realN"));
}
