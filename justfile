# Everyday recipes. `just` alone lists them.
set shell := ["bash", "-euo", "pipefail", "-c"]

default:
    @just --list

# Install the Debian packages the tests and experiments need (scripts/packages.txt; as root), or name them.
deps:
    scripts/deps

# Build every binary in release mode (what benchmarks and experiments use).
build:
    cargo build --release --workspace

# Run every test (unit, property, black-box, namespace: root); builds the binaries the black-box tests run.
test: deps
    cargo build --workspace --bins
    cargo test --workspace --all-targets

# Format check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Side-by-side benchmark against httperf, wrk and nginx (ratios of medians). ARGS: --quick, --repeat N.
bench *ARGS: deps build
    python3 scripts/bench.py {{ARGS}}

# Start a realserver on 127.0.0.1:8080 (paper page). ARGS are passed on, e.g. `just serve --threads 2`.
serve *ARGS: build
    ./target/release/realserver --listen 127.0.0.1:8080 {{ARGS}}

# Load a server with loadgen, e.g. `just load http://127.0.0.1:8080/ --rate 5000 --duration 10s`.
load *ARGS: build
    ./target/release/loadgen {{ARGS}}

# Bi-active on vs off at one point (1lb-1rs, paper profile), side by side; tears down. Needs root.
demo *ARGS: deps build
    ./target/release/harness demo {{ARGS}}

# One experiment point, e.g. `just run --topology 2lb-2rs --profile paper --bi-active off --rate 1200 --duration 10s`.
run *ARGS: deps build
    ./target/release/harness run {{ARGS}}

# Balancer vs nftables DNAT vs HAProxy vs direct, in the testbed (ratios of medians). Needs root.
bench-balancer *ARGS: deps build
    ./target/release/harness bench-balancer {{ARGS}}

# Hostile load (root): a no-flood baseline, then SYN, non-SYN and malformed floods at the VIP while legit clients run at a fixed rate; table size, legit replies and errors, RSS, input-check counters. ARGS: --flood, --seconds, --rate, --table-size, --syn-recv-timeout, --flood-pps, --repeat (rounds; medians), --profile, --strict.
flood *ARGS: deps build
    ./target/release/harness flood {{ARGS}}

# The paper's Table I matrix with rate sweeps, Figures 4-7, REPORT.md (root). ARGS: --quick, --configs, --rates, --repeat, --duration, --generator, --out-dir, --resume.
reproduce *ARGS: deps build
    ./target/release/harness reproduce {{ARGS}}

# CI performance gate: `reproduce --quick`, then `reports compare` with reports/baseline/ (default --error-floor 5; root). Exit 0 ok, 1 regression, 2 bad input.
perf-gate *ARGS: deps build
    #!/usr/bin/env bash
    set -euo pipefail
    out="$(mktemp -d /tmp/perf-gate.XXXXXX)/quick"
    ./target/release/harness reproduce --quick --out-dir "$out"
    ./target/release/reports compare reports/baseline "$out" {{ if ARGS == "" { "--error-floor 5" } else { ARGS } }}

# Refresh the perf gate's baseline (reports/baseline/) on this machine: `reproduce --quick`, committed slim (root).
perf-baseline: deps build
    #!/usr/bin/env bash
    set -euo pipefail
    out="$(mktemp -d /tmp/perf-baseline.XXXXXX)/quick"
    ./target/release/harness reproduce --quick --out-dir "$out"
    rm -rf reports/baseline
    scripts/slim-results "$out" reports/baseline

# Remove every namespace, link and cgroup of the testbed (also after a crash).
down:
    cargo build --release -p harness
    ./target/release/harness down

# Random and mutated frames through three balancers for a bounded time (stable toolchain).
fuzz SECONDS="60":
    cargo run --release -p balancer --example fuzz_frames -- --seconds {{SECONDS}}

# Coverage-guided fuzzing of the frame path with cargo-fuzz (libFuzzer), bounded in time.
fuzz-libfuzzer SECONDS="60":
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    cd balancer && RUSTC_BOOTSTRAP=1 cargo fuzz run engine_frames -- -max_total_time={{SECONDS}}

# Failover in the testbed: 2lb-2rs at 400 conn/s for 12 s, lb2's balancer killed at 4 s; prints when
# lb1's membership changed and from when on every connection succeeded (timeline.csv, timeline.svg and .png in the run dir).
failover *ARGS: deps build
    ./target/release/harness run --topology 2lb-2rs --rate 400 --duration 12s --fault at=4s,kill=lb2 {{ARGS}}

# Heartbeat failover of two balancers in namespaces (release build): KILLS SIGKILLs of one,
# each timed from the kill to the survivor's membership change; then health withdrawal, drain,
# heartbeat partition and graceful leave. Needs root; takes the testbed lock.
detection KILLS="12": deps
    cargo build --release -p realserver -p balancer --bins
    FAILOVER_KILLS={{KILLS}} flock /tmp/bal-testbed.lock cargo test --release -p balancer --test failover -- --nocapture

# Coverage-guided fuzzing of the heartbeat parser and membership node with cargo-fuzz, bounded in time.
fuzz-heartbeats SECONDS="60":
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    cd balancer && RUSTC_BOOTSTRAP=1 cargo fuzz run heartbeats -- -max_total_time={{SECONDS}}

# Memory of a one-million-flow connection table (target: <= 200 MB).
conntrack-mem:
    cargo run --release -p balancer --example conntrack_mem
