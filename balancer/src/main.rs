//! `balancer`: parses options and calls the library and the I/O layer.
//!
//! Exit codes: 0 on success and after SIGINT/SIGTERM, 2 for bad flags or
//! an invalid configuration (also one the engine refuses, such as a
//! connection table that cannot be allocated), 1 for runtime errors (missing interface, no
//! permission, control endpoint unreachable ...).

mod cli;
mod io;

use std::process::ExitCode;
use std::time::Duration;

use balancer::counters::format_list;
use balancer::status::{format_status, StatusDoc};
use clap::Parser;

use crate::cli::{Cli, Command, ControlArgs, RunArgs, StatsArgs};
use crate::io::packet::PortOptions;
use crate::io::runner::{self, RunOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => run(&a),
        Command::Stats(a) => stats(&a),
        Command::Drain(a) => control(&a, "/drain".into()),
        Command::Undrain(a) => control(&a, "/undrain".into()),
        Command::Weight(a) => {
            if io::control::parse_target(&a.target).is_none() {
                eprintln!(
                    "balancer: target {:?}: expected local or realN (as `balancer stats` names them)",
                    a.target
                );
                return ExitCode::from(2);
            }
            control(
                &a.control,
                format!("/weight?target={}&weight={}", a.target, a.weight),
            )
        }
    }
}

/// Sends a command to a control endpoint and prints its answer.
fn control(a: &ControlArgs, path: String) -> ExitCode {
    let t = Duration::from_millis(a.timeout_ms);
    match io::control::request(a.control, "POST", &path, t) {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("balancer: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(a: &RunArgs) -> ExitCode {
    let cfg = match cli::build_config(a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("balancer: {e}");
            return ExitCode::from(2);
        }
    };
    let cluster_key = match cli::load_key(&cfg) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("balancer: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = RunOptions {
        port: PortOptions {
            io: a.io,
            frame_buffer: a.frame_buffer as usize,
            rcvbuf: a.rcvbuf,
            sndbuf: a.sndbuf,
            promisc: a.promisc,
            qdisc_bypass: a.qdisc_bypass == cli::OnOff::On,
        },
        tick: Duration::from_millis(a.tick_ms),
        tun: a.tun.clone(),
        control: a.control,
        batch: a.batch as usize,
        cluster_key,
        early_drop: a.early_drop == cli::OnOff::On,
    };
    match runner::run(cfg, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("balancer: {e:#}");
            // A configuration the engine refuses (e.g. a connection table
            // that cannot be reserved) is bad input too.
            let config = e.chain().any(|c| c.is::<balancer::engine::EngineError>());
            ExitCode::from(if config { 2 } else { 1 })
        }
    }
}

fn stats(a: &StatsArgs) -> ExitCode {
    let body = match io::control::fetch(a.control, "/stats", Duration::from_millis(a.timeout_ms)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("balancer: {e:#}");
            return ExitCode::from(1);
        }
    };
    if a.json {
        print!("{body}");
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<StatusDoc>(&body) {
        Ok(d) if a.list => print!("{}", format_list(&d.snapshot)),
        Ok(d) => print!("{}", format_status(&d)),
        Err(e) => {
            eprintln!(
                "balancer: {}/stats did not return a balancer status document: {e}",
                a.control
            );
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
