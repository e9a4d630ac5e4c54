//! `reports` binary: `render DIR` and `compare BASELINE CURRENT`; parse, call the library, map
//! outcomes to exit codes (0 fine, 1 regression or write failure, 2 bad input).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reports::compare::{compare, Rule};
use reports::model::Reproduction;
use reports::render::{render, RenderError};

#[derive(Parser)]
#[command(
    name = "reports",
    version,
    about = "Render and compare `harness reproduce` result directories"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rewrite points.csv, summary.csv, fig4..fig7 (.svg, .png) and REPORT.md of DIR from
    /// DIR/results.json, measuring nothing.
    Render {
        /// A result directory holding results.json.
        dir: PathBuf,
    },
    /// Compare reply rate and error rate per configuration and rate against a baseline run.
    /// Exit 0: no regression; 1: something regressed; 2: bad input.
    Compare {
        /// The baseline result directory.
        baseline: PathBuf,
        /// The result directory to judge.
        current: PathBuf,
        /// Largest tolerated worsening of a median, percent of the baseline's.
        #[arg(long, default_value_t = 10.0, value_name = "PCT")]
        max_regression: f64,
        /// Smallest error-rate increase, in percentage points, that can count as a regression.
        #[arg(long, default_value_t = 1.0, value_name = "PP")]
        error_floor: f64,
    },
}

/// Bad input: one line, exit 2.
fn bad_input(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("reports: {msg}");
    ExitCode::from(2)
}

/// Read a result directory given on the command line.
fn read_dir(role: &str, dir: &Path) -> Result<Reproduction, String> {
    if !dir.is_dir() {
        return Err(format!(
            "{role} directory {} does not exist or is not a directory",
            dir.display()
        ));
    }
    Reproduction::read(dir).map_err(|e| format!("{role}: {e}"))
}

fn run_render(dir: &Path) -> ExitCode {
    if !dir.is_dir() {
        return bad_input(format!(
            "result directory {} does not exist or is not a directory",
            dir.display()
        ));
    }
    match render(dir) {
        Ok(files) => {
            println!("reports: wrote {} files in {}", files.len(), dir.display());
            ExitCode::SUCCESS
        }
        Err(RenderError::Model(e)) => bad_input(e),
        Err(e) => {
            eprintln!("reports: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_compare(baseline: &Path, current: &Path, rule: Rule) -> ExitCode {
    let (b, c) = match (read_dir("baseline", baseline), read_dir("current", current)) {
        (Ok(b), Ok(c)) => (b, c),
        (Err(e), _) | (_, Err(e)) => return bad_input(e),
    };
    match compare(&b, &c, rule) {
        Ok(cmp) => {
            print!("{}", cmp.render());
            if cmp.regressed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => bad_input(e),
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Render { dir } => run_render(&dir),
        Command::Compare {
            baseline,
            current,
            max_regression,
            error_floor,
        } => run_compare(
            &baseline,
            &current,
            Rule {
                max_regression_pct: max_regression,
                error_floor_pp: error_floor,
            },
        ),
    }
}
