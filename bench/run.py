"""Benchmark mira-batch against the leanest aiohttp client and the openai SDK.

    python bench/run.py [throughput|latency|memory|pacing|mira|schema|all]
                        [--jobs N] [--rounds R]
    python bench/run.py first-request   # the start, to the first request out

`mira` runs default flags against Mira's real limits on the bundled simulator
(bench/mira.py): no nginx, about seven minutes of real time.

Starts nginx on a loopback port answering a fixed chat-completion body (nginx costs
far less CPU than the clients, so it is never the bottleneck), generates the jobs,
and runs the clients alternately (A B C A B C ...) for several rounds. It reports the
median requests/second, CPU seconds and peak RSS of each, and the ratios. Results go
to bench/out/results.json as well. nginx and its echo module (for the 200 ms
variant) come from Debian: the script installs them when it runs as root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
KEY = "sk-mira-" + "b" * 40  # a throwaway key for a local endpoint
TOKENS_PER_REPLY = 60
REPLY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "mira",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "A short benchmark answer.",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 20, "total_tokens": 60},
    },
    separators=(",", ":"),
)
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
sys.path.insert(0, str(ROOT))  # run as a script, bench/ is not a package
from bench.schema import reply_body, validation_cost, write_schema  # noqa: E402

JSON_REPLY = reply_body()  # a 1 KB JSON answer, for the schema runs


@dataclass
class Measure:
    """One client run."""

    client: str
    requests: int
    wall_s: float
    requests_per_s: float
    cpu_s: float
    peak_rss_mb: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_nginx() -> str:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx and ECHO_MODULE.exists():
        return nginx
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing nginx and its echo module from Debian's packages ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(
            [
                "apt-get",
                "install",
                "-y",
                "-qq",
                "nginx-light",
                "libnginx-mod-http-echo",
            ],
            check=True,
            env=env,
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if Path(nginx).exists():
            return nginx
    sys.exit(
        "nginx with the echo module is needed: apt-get install nginx-light "
        "libnginx-mod-http-echo (as root)"
    )


class Endpoint:
    """nginx on 127.0.0.1: /fast/v1 answers at once, /slow/v1 after 200 ms."""

    def __init__(self, workdir: Path, *, access_log: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.access_log = workdir / "access.log"
        log_line = (
            f"access_log {self.access_log} stamp;" if access_log else "access_log off;"
        )
        conf = f"""
load_module {ECHO_MODULE};
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    log_format stamp '$msec';
    {log_line}
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_buffer_size 64k;
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        location /fast/v1/chat/completions {{
            default_type application/json;
            add_header x-request-id bench;
            return 200 '{REPLY}';
        }}
        location /json/v1/chat/completions {{
            default_type application/json;
            add_header x-request-id bench;
            return 200 '{JSON_REPLY.replace(chr(92), chr(92) * 2)}';
        }}
        location /slow/v1/chat/completions {{
            default_type application/json;
            echo_read_request_body;
            echo_sleep 0.2;
            echo '{REPLY}';
        }}
    }}
}}
"""
        (workdir / "nginx.conf").write_text(conf)
        self._proc = subprocess.Popen(
            [find_nginx(), "-c", str(workdir / "nginx.conf"), "-p", str(workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(
            f"nginx did not start: {(workdir / 'error.log').read_text()}"
        )

    def url(self, variant: str) -> str:
        return f"http://127.0.0.1:{self.port}/{variant}/v1"

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)


def write_jobs(path: Path, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            body = {
                "model": "mira",
                "messages": [
                    {"role": "user", "content": f"Benchmark prompt number {i}."}
                ],
                "max_tokens": 20,
            }
            fh.write(json.dumps({"custom_id": f"j{i}", "body": body}) + "\n")


def measure(
    name: str, argv: list[str], cwd: Path, parse: Callable[[Path], int]
) -> Measure:
    """Run one client process; CPU and peak RSS come from wait4 on that process."""
    env = {**os.environ, "MIRA_API_KEY": KEY}
    started = time.perf_counter()
    with open(cwd / f"{name}.out", "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{name} exited {proc.returncode}: "
            f"{(cwd / f'{name}.out').read_text()[-2000:]}"
        )
    requests = parse(cwd / f"{name}.out")
    internal = _internal_rate(cwd / f"{name}.out")
    return Measure(
        client=name,
        requests=requests,
        wall_s=round(wall, 3),
        requests_per_s=round(internal or requests / wall, 1),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 2),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
    )


def _internal_rate(path: Path) -> float | None:
    """The client's own requests/second, timed from its first request."""
    for line in path.read_text().splitlines():
        data = json.loads(line) if line.startswith("{") else {}
        if "requests_per_s" in data:
            value: float = data["requests_per_s"]
            return value
    return None


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def mira_batch_argv(
    jobs: Path, url: str, concurrency: int, extra: list[str] | None = None
) -> list[str]:
    script = Path(sys.executable).with_name("mira-batch")
    return [
        str(script),
        "run",
        str(jobs),
        "--base-url",
        url,
        "--concurrency",
        str(concurrency),
        "--progress",
        "off",
        "--fresh",
        "--force",
        "--log-format",
        "json",
        "-o",
        "mb.results.jsonl",
        "--errors",
        "mb.errors.jsonl",
        "--summary",
        "mb.summary.json",
        *(extra or []),
    ]


def run_mira_batch(
    jobs: Path, url: str, concurrency: int, cwd: Path, extra: list[str] | None = None
) -> Measure:
    def parse(out: Path) -> int:
        return _count_lines(cwd / "mb.results.jsonl")

    m = measure(
        "mira-batch", mira_batch_argv(jobs, url, concurrency, extra), cwd, parse
    )
    summary = json.loads((cwd / "mb.summary.json").read_text())
    m.requests_per_s = summary["requests_per_s"]
    return m


def run_reference(
    kind: str, jobs: Path, url: str, concurrency: int, cwd: Path
) -> Measure:
    script = ROOT / "bench" / f"{kind}_client.py"
    target = f"{url}/chat/completions" if kind == "lean" else url
    argv = [sys.executable, str(script), str(jobs), target, KEY, str(concurrency)]

    def parse(out: Path) -> int:
        for line in out.read_text().splitlines():
            if line.startswith("{"):
                requests: int = json.loads(line)["requests"]
                return requests
        return 0

    label = {"lean": "aiohttp-lean", "openai": "openai-sdk", "window": "mira (window)"}
    return measure(label[kind], argv, cwd, parse)


def median_of(runs: list[Measure]) -> dict[str, Any]:
    return {
        "client": runs[0].client,
        "runs": len(runs),
        "requests": runs[0].requests,
        "requests_per_s": round(statistics.median(m.requests_per_s for m in runs), 1),
        "cpu_s": round(statistics.median(m.cpu_s for m in runs), 2),
        "peak_rss_mb": round(statistics.median(m.peak_rss_mb for m in runs), 1),
        "all_requests_per_s": [m.requests_per_s for m in runs],
    }


def throughput(
    endpoint: Endpoint,
    work: Path,
    jobs: int,
    rounds: int,
    concurrencies: list[int],
    with_openai: bool,
) -> dict[str, Any]:
    path = work / f"jobs-{jobs}.jsonl"
    write_jobs(path, jobs)
    openai_path = work / "jobs-openai.jsonl"
    write_jobs(openai_path, min(jobs, 3000))  # the SDK is ~10x slower: fewer jobs
    url = endpoint.url("fast")
    report: dict[str, Any] = {}
    for concurrency in concurrencies:
        runs: dict[str, list[Measure]] = {
            "mira-batch": [],
            "mira (window)": [],
            "aiohttp-lean": [],
            "openai-sdk": [],
        }
        for _ in range(rounds):
            runs["mira-batch"].append(run_mira_batch(path, url, concurrency, work))
            runs["aiohttp-lean"].append(
                run_reference("lean", path, url, concurrency, work)
            )
            runs["mira (window)"].append(
                run_reference("window", path, url, concurrency, work)
            )
            if with_openai:
                runs["openai-sdk"].append(
                    run_reference("openai", openai_path, url, concurrency, work)
                )
        medians = {name: median_of(r) for name, r in runs.items() if r}
        lean = medians["aiohttp-lean"]["requests_per_s"]
        for m in medians.values():
            m["ratio_to_lean"] = round(m["requests_per_s"] / lean, 3)
        report[f"concurrency_{concurrency}"] = medians
        print_table(f"fast endpoint, {jobs} jobs, concurrency {concurrency}", medians)
    start = start_up(endpoint, work)
    report["start_up"] = asdict(start)
    for concurrency in concurrencies:
        mb = report[f"concurrency_{concurrency}"]["mira-batch"]
        per_request_us = (mb["cpu_s"] - start.cpu_s) / jobs * 1e6
        mb["cpu_us_per_request"] = round(per_request_us, 1)
        print(
            f"  concurrency {concurrency}: {per_request_us:.0f} us of CPU a request "
            f"(start-up, {start.cpu_s:.2f} s, apart)"
        )
    return report


def start_up(endpoint: Endpoint, work: Path) -> Measure:
    """A run of one job: the CPU and memory that are not per request."""
    path = work / "jobs-one.jsonl"
    write_jobs(path, 1)
    return run_mira_batch(path, endpoint.url("fast"), 1, work)


def schema_runs(
    endpoint: Endpoint, work: Path, jobs: int, rounds: int
) -> dict[str, Any]:
    """Validation cost per answer, then nginx answering 1 KB of JSON: mira-batch
    with --json-schema and without, beside the lean client, concurrency 64."""
    print("\nvalidation cost per answer (microseconds)")
    report: dict[str, Any] = {"validation_us": validation_cost()}
    path = work / f"jobs-{jobs}.jsonl"
    write_jobs(path, jobs)
    schema = write_schema(work)
    url = endpoint.url("json")
    runs: dict[str, list[Measure]] = {
        "mira-batch --json-schema": [],
        "mira-batch": [],
        "aiohttp-lean": [],
    }
    for _ in range(rounds):
        checked = run_mira_batch(path, url, 64, work, ["--json-schema", str(schema)])
        checked.client = "mira-batch --json-schema"
        runs["mira-batch --json-schema"].append(checked)
        runs["mira-batch"].append(run_mira_batch(path, url, 64, work))
        runs["aiohttp-lean"].append(run_reference("lean", path, url, 64, work))
    medians = {name: median_of(r) for name, r in runs.items()}
    lean = medians["aiohttp-lean"]["requests_per_s"]
    for m in medians.values():
        m["ratio_to_lean"] = round(m["requests_per_s"] / lean, 3)
    report["throughput"] = medians
    print_table(f"nginx answering 1 KB of JSON, {jobs} jobs, concurrency 64", medians)
    return report


def latency(endpoint: Endpoint, work: Path, concurrency: int) -> dict[str, Any]:
    # 40 rounds: the adaptive limit starts at 3, proves 4 in a round trip,
    # then triples each one, so the first few round trips run below the ceiling.
    jobs = concurrency * 40
    path = work / "jobs-latency.jsonl"
    write_jobs(path, jobs)
    m = run_mira_batch(path, endpoint.url("slow"), concurrency, work)
    ideal = concurrency / 0.2
    result = {
        **asdict(m),
        "ideal_requests_per_s": ideal,
        "fraction_of_ideal": round(m.requests_per_s / ideal, 3),
    }
    print_table(
        f"200 ms endpoint, {jobs} jobs, concurrency {concurrency}",
        {"mira-batch": result},
    )
    print(
        f"  {result['fraction_of_ideal']:.0%} of {concurrency} / 0.2 s "
        f"= {ideal:.0f} requests/s"
    )
    # What each request in flight costs in memory: the run's peak over one of
    # a single job, per the most it had in flight.
    timeline = json.loads((work / "mb.summary.json").read_text())["timeline"]
    column = timeline["columns"].index("in_flight")
    peak = max(row[column] for row in timeline["rows"])
    base = start_up(endpoint, work).peak_rss_mb
    per_1000 = (m.peak_rss_mb - base) / peak * 1000
    result["peak_in_flight"] = peak
    result["rss_mb_per_1000_in_flight"] = round(per_1000, 1)
    print(
        f"  {per_1000:.1f} MB of RSS per 1,000 in flight ({peak:.0f} at most, "
        f"{m.peak_rss_mb:.1f} MB against {base:.1f} MB for one job)"
    )
    return result


def memory(endpoint: Endpoint, work: Path, sizes: list[int]) -> dict[str, Any]:
    url = endpoint.url("fast")
    report: dict[str, Any] = {}
    for size in sizes:
        path = work / f"jobs-mem-{size}.jsonl"
        write_jobs(path, size)
        m = run_mira_batch(path, url, 256, work)
        report[str(size)] = asdict(m)
        print(
            f"  {size:>9} jobs: peak RSS {m.peak_rss_mb:.1f} MB, "
            f"{m.requests_per_s:.0f} req/s, cpu {m.cpu_s:.1f} s"
        )
        path.unlink()
    return report


def pacing(work: Path) -> dict[str, Any]:
    """--rpm and --tpm against an endpoint that logs each request's arrival."""
    (work / "paced").mkdir()
    logged = Endpoint(work / "paced", access_log=True)
    try:
        path = work / "jobs-paced.jsonl"
        write_jobs(path, 40)
        report: dict[str, Any] = {}
        for flag, value, window_s in (("--rpm", "300", 2.0), ("--tpm", "36000", 2.0)):
            logged.access_log.write_text("")
            m = run_mira_batch(path, logged.url("fast"), 16, work, [flag, value])
            time.sleep(0.5)  # nginx writes its log lines as it goes
            stamps = sorted(float(x) for x in logged.access_log.read_text().split())
            most = max(sum(1 for s in stamps if t <= s < t + window_s) for t in stamps)
            span = stamps[-1] - stamps[0]
            if flag == "--rpm":
                allowed = 300 * window_s / 60 + 1
                unit = "requests"
                most_units = most
            else:
                # Pacing charges the estimate, then the reported usage; per request here
                # that is TOKENS_PER_REPLY once corrected.
                allowed = 36000 * window_s / 60 + TOKENS_PER_REPLY
                unit = "tokens"
                most_units = most * TOKENS_PER_REPLY
            report[flag] = {
                "jobs": 40,
                "wall_s": m.wall_s,
                "first_to_last_s": round(span, 2),
                f"most_{unit}_in_{window_s:g}s": most_units,
                f"allowed_{unit}": allowed,
            }
            print(
                f"  {flag} {value}: 40 jobs in {m.wall_s:.1f} s (first to last request "
                f"{span:.1f} s); at most {most_units} {unit} in any {window_s:g} s "
                f"window (bound {allowed:g})"
            )
        return report
    finally:
        logged.stop()


def print_table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"  {'client':<14}{'req/s':>10}{'cpu s':>9}{'peak MB':>10}{'vs lean':>9}")
    for name, row in rows.items():
        ratio = row.get("ratio_to_lean")
        ratio_text = f"{ratio:.2f}" if ratio is not None else "-"
        print(
            f"  {name:<14}{row['requests_per_s']:>10.0f}{row['cpu_s']:>9.2f}"
            f"{row['peak_rss_mb']:>10.1f}{ratio_text:>9}"
        )


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _against_the_simulator(what: str, results: dict[str, Any]) -> None:
    """`mira`: Mira's limits, default flags against the best fixed flags;
    `mira-source`: Mira as its backend source behaves. No nginx needed."""
    sys.path.insert(0, str(ROOT))  # run as a script, bench/ is not a package
    from bench.mira import run_scenarios
    from bench.mira_source import run_source_scenarios

    runs = {
        "mira": (
            "Mira's limits, default flags against the best fixed flags",
            run_scenarios,
        ),
        "mira-source": (
            "Mira as its backend source behaves, default flags",
            run_source_scenarios,
        ),
    }
    title, run = runs[what]
    with tempfile.TemporaryDirectory(prefix="mira-bench-") as tmp:
        print(f"\n{title}")
        results[what.replace("-", "_")] = run(Path(tmp), free_port())
    out = OUT / f"results-{what}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=[
            "throughput",
            "latency",
            "memory",
            "pacing",
            "mira",
            "mira-source",
            "messages",
            "collect",
            "cache",
            "report",
            "schema",
            "tables",
            "first-request",
            "all",
        ],
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=20_000,
        help="jobs per throughput run (default: 20000)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="A/B/C rounds; medians are reported (default: 5)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows of the tables run"
    )
    parser.add_argument(
        "--memory-sizes", type=int, nargs="+", default=[10_000, 1_000_000]
    )
    parser.add_argument(
        "--no-openai", action="store_true", help="skip the openai SDK client"
    )
    parser.add_argument(
        "--case",
        action="append",
        default=[],
        help="messages: run only this case (repeatable; default: every case)",
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    print(f"machine: {results['machine']}")
    if args.what == "collect":
        sys.path.insert(0, str(ROOT))  # run as a script, bench/ is not a package
        from bench.collect import run_collect

        with tempfile.TemporaryDirectory(prefix="mira-bench-") as tmp:
            results["collect"] = run_collect(Path(tmp))
        (OUT / "results-collect.json").write_text(json.dumps(results, indent=2) + "\n")
        return
    if args.what == "cache":
        sys.path.insert(0, str(ROOT))  # run as a script, bench/ is not a package
        from bench.cache import run_cache

        with tempfile.TemporaryDirectory(prefix="mira-bench-") as tmp:
            results["cache"] = run_cache(Path(tmp), free_port())
        (OUT / "results-cache.json").write_text(json.dumps(results, indent=2) + "\n")
        return
    if args.what == "report":
        sys.path.insert(0, str(ROOT))  # run as a script, bench/ is not a package
        from bench.report import run_report

        with tempfile.TemporaryDirectory(prefix="mira-bench-") as tmp:
            results["report"] = run_report(Path(tmp))
        (OUT / "results-report.json").write_text(json.dumps(results, indent=2) + "\n")
        return
    if args.what in ("mira", "mira-source"):
        _against_the_simulator(args.what, results)
        return
    if args.what == "first-request":
        sys.path.insert(0, str(ROOT))  # run as a script, bench/ is not a package
        from bench.first_request import run_first_request

        print("\nthe first request after the process starts")
        with tempfile.TemporaryDirectory(prefix="mira-bench-") as tmp:
            results["first_request"] = run_first_request(Path(tmp))
        out = OUT / "results-first-request.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        return
    if args.what == "messages":
        sys.path.insert(0, str(ROOT))  # run as a script, bench/ is not a package
        from bench.messages import run_cases

        print("\ndaily messages per answer, default flags (Mira's backend source)")
        with tempfile.TemporaryDirectory(prefix="mira-bench-") as tmp:
            results["messages"] = run_cases(Path(tmp), free_port(), args.case)
        out = OUT / "results-messages.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        return
    with tempfile.TemporaryDirectory(prefix="mira-bench-") as tmp:
        work = Path(tmp)
        endpoint = Endpoint(work)
        try:
            if args.what in ("throughput", "all"):
                results["throughput"] = throughput(
                    endpoint,
                    work,
                    args.jobs,
                    args.rounds,
                    args.concurrency,
                    not args.no_openai,
                )
            if args.what == "tables":
                from bench.tables import run_tables

                print("\nlarge tables (the real command, nginx fast endpoint)")
                results["tables"] = run_tables(
                    work, endpoint.url("fast"), args.rows, KEY
                )
            if args.what in ("schema", "all"):
                results["schema"] = schema_runs(endpoint, work, args.jobs, args.rounds)
            if args.what in ("latency", "all"):
                results["latency"] = {
                    str(c): latency(endpoint, work, c) for c in (256, 1024)
                }
            if args.what in ("pacing", "all"):
                results["pacing"] = pacing(work)
            if args.what in ("memory", "all"):
                print("\nmemory (mira-batch, concurrency 256, fast endpoint)")
                results["memory"] = memory(endpoint, work, args.memory_sizes)
        finally:
            endpoint.stop()
    out = OUT / f"results-{args.what}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
