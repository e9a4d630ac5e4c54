#!/usr/bin/env python3
"""Side-by-side benchmark of loadgen and realserver against their peers.

Every figure is a ratio against a peer measured in the same invocation
(httperf, wrk, nginx), because these machines are shared and noisy. Each
measurement is repeated (--repeat, alternating the tools) and the median is
used. The server is pinned to CPU 0 and the load generator to CPU 1, so each
side has a core of its own on a two-core machine.

What it prints (the targets come from issues 2 and 8):
  * loadgen / httperf, maximum connection-per-request reply rate   (>= 2.5)
  * overload, httperf and loadgen at 1/2, 1 and 3 times the server's capacity (wrk's
    close-per-request rate): loadgen / httperf reply rate at 1x and 3x (>= 0.95 each),
    loadgen at 3x / at 1x (>= 0.85, no collapse), httperf / loadgen CPU per reply at 1/2 (>= 1)
  * loadgen / wrk, keep-alive closed loop, same connection count    (>= 1.0)
  * open-loop accuracy: achieved request rate vs target at 5k, 20k  (within 1 %)
  * realserver / nginx, keep-alive and connection-per-request (wrk) (>= 1.0 each)
  * loadgen peak RSS at 20 000 conn/s open loop for 30 s            (< 100 MB)

Results are also written atomically as JSON (--out).
Only loopback (127.0.0.1) is ever targeted.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
LOADGEN = os.path.join(RELEASE, "loadgen")
REALSERVER = os.path.join(RELEASE, "realserver")
SERVER_CPU = "0"
CLIENT_CPU = "1"
# The paper's page: 75 bytes, small enough for one packet.
PAGE = b"<html><head><title>test</title></head><body>This is a test. </body></html>\n"
assert len(PAGE) == 75, len(PAGE)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def pinned(cpu, argv):
    return ["taskset", "-c", cpu] + argv


class Server:
    """A server process on 127.0.0.1, pinned to the server CPU, stopped on exit."""

    def __init__(self, kind, workdir):
        self.kind = kind
        self.port = free_port()
        if kind == "nginx":
            conf = os.path.join(workdir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(dir=workdir, port=self.port))
            argv = ["nginx", "-c", conf, "-p", workdir]
        elif kind == "realserver":
            argv = [REALSERVER, "--listen", f"127.0.0.1:{self.port}", "--threads", "1",
                    "--name", "bench"]
        else:
            raise ValueError(kind)
        self.proc = subprocess.Popen(pinned(SERVER_CPU, argv), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log crit;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; use epoll; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 65;
    open_file_cache max=16;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    default_type text/html;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {dir}/www;
        location / {{ index index.html; }}
    }}
}}
"""


class Overrun(RuntimeError):
    """A load generator that did not finish in time (httperf can spin when overloaded)."""


def run(argv, timeout):
    """Run a load generator pinned to the client CPU; returns its stdout."""
    proc = subprocess.Popen(pinned(CLIENT_CPU, argv), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise Overrun(f"{argv[0]} did not finish within {timeout}s: {err.strip()[-500:]}")
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[-800:]}")
    return out


def flush_time_wait():
    """Leftover TIME_WAIT sockets skew the next run (PAWS rejects); drop them."""
    subprocess.run(["ss", "-K", "state", "time-wait"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


HTTPERF_TOTAL = re.compile(
    r"^Total: connections (\d+) requests (\d+) replies (\d+) test-duration ([\d.]+) s", re.M)
HTTPERF_REQ_RATE = re.compile(r"^Request rate: ([\d.]+) req/s", re.M)
HTTPERF_ERRORS = re.compile(r"^Errors: total (\d+)", re.M)
HTTPERF_CPU = re.compile(r"^CPU time \[s\]: user ([\d.]+) system ([\d.]+)", re.M)
HTTPERF_REPLY_RATE = re.compile(
    r"^Reply rate \[replies/s\]: min [\d.]+ avg ([\d.]+) max [\d.]+ stddev [\d.]+ \((\d+) samples\)",
    re.M)


def parse_httperf(text, who):
    """The few numbers we need from httperf's summary layout (loadgen prints the same)."""
    total = HTTPERF_TOTAL.search(text)
    rate = HTTPERF_REQ_RATE.search(text)
    errors = HTTPERF_ERRORS.search(text)
    if not (total and rate and errors):
        raise RuntimeError(f"{who}: output is not in httperf's summary layout:\n{text[-1500:]}")
    conns, reqs, replies, duration = (int(total.group(1)), int(total.group(2)),
                                      int(total.group(3)), float(total.group(4)))
    cpu = HTTPERF_CPU.search(text)
    sampled = HTTPERF_REPLY_RATE.search(text)
    return {
        "connections": conns,
        "requests": reqs,
        "replies": replies,
        "duration_s": duration,
        "reply_rate": replies / duration if duration > 0 else 0.0,
        # httperf's own figure (5-s samples), the one the paper plots; None without a sample.
        "sampled_reply_rate": (float(sampled.group(1))
                               if sampled and int(sampled.group(2)) > 0 else None),
        "request_rate": float(rate.group(1)),
        "errors": int(errors.group(1)),
        "cpu_s": float(cpu.group(1)) + float(cpu.group(2)) if cpu else None,
    }


def overload(port, repeat, seconds):
    """Connection per request at half, one and three times the server's capacity, httperf and
    loadgen alternating, both with their defaults (issue 8's table). Capacity is wrk's
    close-per-request rate in the same invocation. Returns the checks' inputs."""
    caps = []
    for _ in range(repeat):
        flush_time_wait()
        caps.append(wrk(port, 64, seconds, close=True))
    capacity = statistics.median(caps)
    log(f"    server capacity (wrk -c64, Connection: close): {capacity:.0f} req/s {caps}")
    points = {"half": round(capacity / 2), "capacity": round(capacity), "3x": round(3 * capacity)}
    runs = {(tool, name): [] for tool in ("httperf", "loadgen") for name in points}
    for _ in range(repeat):
        for name, rate in points.items():
            for tool in ("httperf", "loadgen"):
                flush_time_wait()
                try:
                    p = conn_per_request(tool, port, rate, seconds)
                except Overrun as e:
                    log(f"    {tool:8s} {name:8s} {rate:6d}/s: overran ({e})")
                    p = {"reply_rate": 0.0, "sampled_reply_rate": 0.0, "errors": None,
                         "cpu_s": None, "replies": 0, "connections": 0, "overrun": True}
                rr = p["sampled_reply_rate"] if p.get("sampled_reply_rate") is not None \
                    else p["reply_rate"]
                p["figure"] = rr
                runs[(tool, name)].append(p)
                cpu = p.get("cpu_s")
                per = (f"{cpu / p['replies'] * 1e6:6.1f} us/reply" if cpu and p["replies"]
                       else "   n/a")
                log(f"    {tool:8s} {name:8s} {rate:6d}/s: reply rate {rr:8.0f}, errors "
                    f"{p['errors']}, CPU {cpu} s ({per})")
    med = {k: statistics.median(x["figure"] for x in v) for k, v in runs.items()}

    def cpu_per_reply(tool):
        vals = [x["cpu_s"] / x["replies"] for x in runs[(tool, "half")]
                if x.get("cpu_s") and x["replies"]]
        return statistics.median(vals) if vals else float("nan")

    return capacity, points, runs, med, cpu_per_reply("httperf"), cpu_per_reply("loadgen")


def conn_per_request(tool, port, rate, seconds):
    """One open-loop point: `rate` new connections/s, one call each, for `seconds`.

    httperf runs without --hog: with it, httperf binds every local port itself, which defeats
    the kernel's TIME_WAIT reuse on loopback, so it runs out of ports after ~28k connections and
    spins until killed; that would measure the port range, not the tool.
    """
    conns = int(rate * seconds)
    common = ["--server", "127.0.0.1", "--port", str(port), "--uri", "/index.html",
              "--rate", str(rate), "--num-conns", str(conns), "--num-calls", "1",
              "--timeout", "5"]
    binary = "httperf" if tool == "httperf" else LOADGEN
    out = run([binary] + common, timeout=seconds * 3 + 30)
    return parse_httperf(out, tool)


def max_conn_rate(tool, port, rates, seconds):
    """Sweep the offered rate upwards; the best reply rate seen while errors stay under 1 %."""
    best = 0.0
    points = []
    for rate in rates:
        flush_time_wait()
        try:
            p = conn_per_request(tool, port, rate, seconds)
        except Overrun as e:
            log(f"    {tool:8s} rate {rate:6d}: overran its time and was killed ({e}); saturated")
            points.append({"rate": rate, "overrun": True})
            break
        points.append({"rate": rate, **p})
        err_pct = 100.0 * p["errors"] / max(p["connections"], 1)
        log(f"    {tool:8s} rate {rate:6d}: replies/s {p['reply_rate']:9.0f}, errors {err_pct:5.2f} %")
        if err_pct <= 1.0:
            best = max(best, p["reply_rate"])
        # Past saturation: the reply rate no longer follows the offered rate.
        if err_pct > 1.0 or p["reply_rate"] < 0.9 * rate:
            break
    return best, points


WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)


def wrk(port, conns, seconds, close):
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}/index.html")
    out = run(argv, timeout=seconds + 30)
    m = WRK_RPS.search(out)
    if not m:
        raise RuntimeError(f"wrk output not understood:\n{out}")
    return float(m.group(1))


def loadgen_closed_loop(port, conns, seconds):
    argv = [LOADGEN, f"http://127.0.0.1:{port}/index.html", "--concurrency", str(conns),
            "--duration", f"{seconds}s"]
    out = run(argv, timeout=seconds + 30)
    p = parse_httperf(out, "loadgen")
    return p["replies"] / p["duration_s"]


def loadgen_open_loop(port, rate, seconds):
    flush_time_wait()
    argv = [LOADGEN, f"http://127.0.0.1:{port}/index.html", "--rate", str(rate),
            "--duration", f"{seconds}s", "--timeout", "5"]
    out = run(argv, timeout=seconds * 2 + 30)
    return parse_httperf(out, "loadgen")


def peak_rss_open_loop(port, rate, seconds):
    """Peak RSS of a loadgen run, via wait4 on that process alone."""
    flush_time_wait()
    argv = pinned(CLIENT_CPU, [LOADGEN, f"http://127.0.0.1:{port}/index.html", "--rate",
                               str(rate), "--duration", f"{seconds}s", "--timeout", "5"])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    # taskset execs loadgen in place, so the pid is loadgen's.
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    p = parse_httperf(out, "loadgen")
    return usage.ru_maxrss / 1024.0, p


def median_of(fn, repeat):
    values = [fn() for _ in range(repeat)]
    return statistics.median(values), values


def ratio(a, b):
    return a / b if b > 0 else float("nan")


def write_atomic(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


SECTIONS = ("sweep", "overload", "keepalive", "accuracy", "realserver", "rss")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median used)")
    ap.add_argument("--seconds", type=int, default=5, help="length of each throughput run")
    ap.add_argument("--quick", action="store_true",
                    help="one repeat, short runs, no 30 s RSS run (a smoke test, not a result)")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "bench.json"),
                    help="where to write the JSON result (atomically)")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if not only <= set(SECTIONS):
        sys.exit(f"bench: unknown --only section(s) {sorted(only - set(SECTIONS))}; "
                 f"expected some of {','.join(SECTIONS)}")
    if args.quick:
        args.repeat, args.seconds = 1, 2
    for tool in ("nginx", "httperf", "wrk", "taskset", "ss"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: '{tool}' is not installed (see .ci/run for the packages)")
    for binary in (LOADGEN, REALSERVER):
        if not os.path.exists(binary):
            sys.exit(f"bench: {binary} is missing; run 'cargo build --release' first")
    if os.cpu_count() is None or os.cpu_count() < 2:
        log("bench: WARNING: fewer than 2 CPUs; server and client share a core")
        global CLIENT_CPU
        CLIENT_CPU = SERVER_CPU

    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so the servers below are always stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix="bench-")
    os.makedirs(os.path.join(workdir, "www"))
    os.makedirs(os.path.join(workdir, "tmp"))
    with open(os.path.join(workdir, "www", "index.html"), "wb") as f:
        f.write(PAGE)
    result = {"started_unix": time.time(), "repeat": args.repeat, "seconds": args.seconds,
              "kernel": os.uname().release, "checks": []}
    servers = []
    try:
        nginx = Server("nginx", workdir)
        servers.append(nginx)
        rates = [4000, 6000, 8000, 10000, 12000, 14000, 16000, 20000, 25000, 30000, 35000,
                 40000, 45000, 50000, 60000]
        if args.quick:
            rates = [2000, 5000, 10000]

        if "sweep" in only:
            log("1/6 maximum connection-per-request reply rate against nginx (sweep)")
            best = {"httperf": [], "loadgen": []}
            for _ in range(args.repeat):
                for tool in ("httperf", "loadgen"):
                    b, _points = max_conn_rate(tool, nginx.port, rates, args.seconds)
                    best[tool].append(b)
            h, l = statistics.median(best["httperf"]), statistics.median(best["loadgen"])
            add_check(result, "loadgen / httperf, max conn-per-request reply rate",
                      ratio(l, h), ">=", 2.5, {"loadgen": best["loadgen"], "httperf": best["httperf"]})

        if "overload" in only:
            log("2/6 overload: half, one and three times the server's capacity (httperf vs loadgen)")
            capacity, points, runs, med, cpu_h, cpu_l = overload(nginx.port, args.repeat,
                                                                 max(args.seconds, 6))
            samples = {f"{t}@{n}": [x["figure"] for x in v] for (t, n), v in runs.items()}
            samples["capacity_req_s"] = capacity
            samples["offered"] = points
            add_check(result, "loadgen / httperf reply rate at the server's capacity",
                      ratio(med[("loadgen", "capacity")], med[("httperf", "capacity")]), ">=", 0.95,
                      samples)
            add_check(result, "loadgen / httperf reply rate at 3x the server's capacity",
                      ratio(med[("loadgen", "3x")], med[("httperf", "3x")]), ">=", 0.95, samples)
            add_check(result, "loadgen reply rate at 3x / at 1x capacity (no collapse)",
                      ratio(med[("loadgen", "3x")], med[("loadgen", "capacity")]), ">=", 0.85,
                      samples)
            add_check(result, "httperf / loadgen CPU per reply at half capacity",
                      ratio(cpu_h, cpu_l), ">=", 1.0,
                      {"httperf_us": cpu_h * 1e6, "loadgen_us": cpu_l * 1e6})

        if "keepalive" in only:
            log("3/6 keep-alive closed loop, 64 connections, against nginx")
            kw = {"wrk": [], "loadgen": []}
            for i in range(args.repeat):
                # Alternate who goes first, so a machine that drifts within a round favours
                # neither tool.
                order = ("wrk", "loadgen") if i % 2 == 0 else ("loadgen", "wrk")
                for tool in order:
                    kw[tool].append(wrk(nginx.port, 64, args.seconds, close=False)
                                    if tool == "wrk"
                                    else loadgen_closed_loop(nginx.port, 64, args.seconds))
            add_check(result, "loadgen / wrk, keep-alive req/s (64 conns)",
                      ratio(statistics.median(kw["loadgen"]), statistics.median(kw["wrk"])),
                      ">=", 1.0, kw)

        if "accuracy" in only:
            log("4/6 open-loop rate accuracy")
            for target in (5000, 20000):
                achieved = []
                for _ in range(args.repeat):
                    achieved.append(loadgen_open_loop(nginx.port, target, max(args.seconds, 10)
                                                      if not args.quick else 2)["request_rate"])
                med = statistics.median(achieved)
                add_check(result, f"open-loop accuracy at {target} req/s (achieved/target)",
                          med / target, "within", 0.01, {"achieved": achieved})

        if "realserver" in only:
            log("5/6 realserver vs nginx under wrk (one worker / one thread)")
            real = Server("realserver", workdir)
            servers.append(real)
            for close, label in ((False, "keep-alive"), (True, "connection-per-request")):
                runs = {"nginx": [], "realserver": []}
                for _ in range(args.repeat):
                    flush_time_wait()
                    runs["nginx"].append(wrk(nginx.port, 64, args.seconds, close))
                    flush_time_wait()
                    runs["realserver"].append(wrk(real.port, 64, args.seconds, close))
                add_check(result, f"realserver / nginx, {label} req/s (wrk -c64)",
                          ratio(statistics.median(runs["realserver"]),
                                statistics.median(runs["nginx"])), ">=", 1.0, runs)

        if "rss" in only:
            log("6/6 loadgen peak RSS, 20 000 conn/s open loop")
            seconds = 5 if args.quick else 30
            rss_mb, p = peak_rss_open_loop(nginx.port, 20000, seconds)
            add_check(result, f"loadgen peak RSS at 20000 conn/s for {seconds} s (MB)", rss_mb,
                      "<", 100.0, {"replies": p["replies"], "errors": p["errors"]})

    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    result["finished_unix"] = time.time()
    write_atomic(args.out, result)
    print_table(result)
    print(f"\nwritten: {args.out}")
    failed = [c for c in result["checks"] if not c["pass"]]
    sys.exit(1 if failed else 0)


def add_check(result, name, value, op, target, samples):
    if op == ">=":
        ok = value >= target
    elif op == "<":
        ok = value < target
    elif op == "within":
        ok = abs(value - 1.0) <= target
    else:
        raise ValueError(op)
    result["checks"].append({"name": name, "value": value, "op": op, "target": target,
                             "pass": ok, "samples": samples})
    log(f"  -> {name}: {value:.3f} ({'PASS' if ok else 'FAIL'})")


def print_table(result):
    print(f"\n{'measurement':62s} {'value':>9s}  {'target':>10s}  result")
    for c in result["checks"]:
        target = (f"{c['op']} {c['target']}" if c["op"] != "within"
                  else f"1 +- {c['target']:.0%}")
        print(f"{c['name']:62s} {c['value']:9.4f}  {target:>10s}  "
              f"{'PASS' if c['pass'] else 'FAIL'}")


if __name__ == "__main__":
    main()
