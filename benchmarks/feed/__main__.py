"""Feed benchmark: a generated catalogue (about 1.5 KB an asset) served on 127.0.0.1, the real
feed-poller and reconciler as processes on a scratch database and vhost, measured from trigger to
every change applied in Postgres; and, in the same run, dlt merging the same file.

    .venv/bin/python -m benchmarks.feed [--assets 100000] [--million 1000000] [--skip-dlt]
                                        (--assets 0: only the million and dlt)
                                        [--workers N]

Figures: first run, identical re-run (writes nothing), 1 % changed, the poller's peak RSS, a run
of `--million` assets (0 to skip), and dlt's first load and identical re-load, with ratios. The
machine is shared: run it at reduced scale while others work (e.g. `--assets 20000 --million 0`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.system import CLI, System

from benchmarks.feed.catalogue import assets, gzip_file, write_json

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
WRITES = (
    "SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relname = 'assets'"
)
ROOT = Path(__file__).resolve().parents[2]
DLT_VENV = ROOT / ".venv-bench-dlt"


def psql(dsn: str, sql: str) -> str:
    out = subprocess.run(["psql", dsn, "-tAc", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Served:
    """A directory served on 127.0.0.1 (HTTP/1.1, Last-Modified from the file)."""

    def __init__(self, folder: Path) -> None:
        handler = partial(_Quiet, directory=str(folder))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        return None


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pid_of(system: System, name: str) -> int:
    process = system.services[name].process
    assert process is not None, f"{name} is not running"
    return process.pid


def _family(pid: int) -> list[int]:
    """`pid` and its child processes (the poller's validation workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [pid, *(int(c) for c in children.read_text().split())]
    except OSError:
        return [pid]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid` and its live children: unlike wall time,
    it does not depend on what else the shared machine runs."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in _family(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def family_peak_rss_mb(pid: int) -> float:
    """Peak RSS of `pid` plus that of each live child (an upper bound of what they held at once)."""
    return sum(peak_rss_mb(member) for member in _family(pid))


def wait_applied(dsn: str, sql: str, expected: int, timeout: float = 3600) -> float:
    deadline = time.monotonic() + timeout
    while True:
        if int(psql(dsn, sql) or 0) >= expected:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"not applied in time: {sql}")
        time.sleep(0.2)


def run_feed(system: System, feed_id: str, timeout: float = 3600) -> tuple[dict[str, Any], float]:
    """Trigger a run and wait for its end (the CLI's own wait, not `System.cli`'s 180 s limit:
    a million-asset run takes longer)."""
    began = time.monotonic()
    args = ["feed", "trigger", feed_id, "--wait", "--timeout", str(int(timeout)), "--json"]
    result = subprocess.run(
        [*CLI, *args], env=system.env, capture_output=True, timeout=timeout + 60, check=False
    )
    out = result.stdout.decode().strip()
    run = json.loads(out) if out else None
    if run is None or run.get("status") not in ("ok", "not_modified"):
        raise SystemExit(f"feed run ended {result.returncode}: {run} {result.stderr.decode()}")
    return run, began


def measure(
    system: System,
    dsn: str,
    folder: Path,
    served: Served,
    count: int,
    label: str,
    *,
    with_changes: bool = True,
    gzipped: bool = False,
) -> dict[str, Any]:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    name = f"{label}.json"
    write_json(folder / name, assets(count, base=at), count, at)
    decoded = (folder / name).stat().st_size
    if gzipped:
        # Over the 512 MiB cap on what a feed sends, as a provider of this size would: gzipped.
        plain = folder / name
        name = gzip_file(plain, level=1).name
        plain.unlink()
    _, provider = system.cli("provider", "create", f"Bench {label}", "--json")
    pid = provider["provider_id"]
    _, feed = system.cli("feed", "add", pid, served.url(name), "--json")
    applied = f"SELECT count(*) FROM assets WHERE provider_id = '{pid}'"
    figures: dict[str, Any] = {
        "assets": count,
        "bytes": (folder / name).stat().st_size,
        "decoded_bytes": decoded,
    }

    poller, reconciler = pid_of(system, "feed-poller"), pid_of(system, "reconciler")
    cpu_before = cpu_seconds(poller), cpu_seconds(reconciler)
    run, began = run_feed(system, feed["feed_id"])
    figures["first_s"] = wait_applied(dsn, applied, count) - began
    figures["first_counts"] = run["counts"]
    figures["first_cpu_s"] = {
        "poller_and_workers": cpu_seconds(poller) - cpu_before[0],
        "reconciler": cpu_seconds(reconciler) - cpu_before[1],
    }
    figures["first_timeline_s"] = timeline(system, run["run_id"], began)
    figures["load_average"] = os.getloadavg()[0]

    rows_before = psql(dsn, WRITES)
    run, began = run_feed(system, feed["feed_id"])
    figures["identical_s"] = time.monotonic() - began
    figures["identical_status"] = run["status"]
    time.sleep(1)
    rows_after = psql(dsn, WRITES)
    figures["identical_rows_written"] = int(rows_after) - int(rows_before)

    if not with_changes:
        figures["poller_peak_rss_mb"] = peak_rss_mb(poller)
        figures["poller_and_workers_peak_rss_mb"] = family_peak_rss_mb(poller)
        return figures
    changed = max(1, count // 100)
    later = at + timedelta(seconds=30)
    write_json(folder / name, assets(count, base=at, changed_every=100), count, later)
    mark = psql(dsn, "SELECT now()")
    run, began = run_feed(system, feed["feed_id"])
    figures["changed_s"] = (
        wait_applied(dsn, f"{applied} AND applied_at > '{mark}'", changed) - began
    )
    figures["changed_counts"] = run["counts"]
    figures["changed_timeline_s"] = timeline(system, run["run_id"], began)
    figures["poller_peak_rss_mb"] = peak_rss_mb(poller)
    figures["poller_and_workers_peak_rss_mb"] = family_peak_rss_mb(poller)
    return figures


def timeline(system: System, run_id: str, began: float) -> dict[str, float]:
    """Seconds from the trigger to the run's start, the end of staging and of the plan pass, and
    the run's end (its last event confirmed), from
    the poller's log (wall clock, so read against the trigger's wall-clock instant)."""
    wall_began = time.time() - (time.monotonic() - began)
    marks = {
        "feed run started": "started",
        "feed staged": "staged",
        "feed planned": "planned",
        "feed run finished": "ended",
    }
    found: dict[str, float] = {}
    log_file = system.workdir / "feed-poller.log"
    for line in log_file.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("run_id") == run_id and entry.get("event") in marks:
            at = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
            found[marks[entry["event"]]] = round(at - wall_began, 2)
    return found


def ensure_dlt() -> Path:
    python = DLT_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DLT_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "-r",
                str(ROOT / "benchmarks" / "requirements-feed.txt"),
            ],
            check=True,
        )
    return python


def measure_dlt(folder: Path, name: str, dsn: str) -> dict[str, Any]:
    python = ensure_dlt()
    dataset = f"bench_{uuid.uuid4().hex[:6]}"
    script = Path(__file__).with_name("dlt_peer.py")
    figures: dict[str, Any] = {}
    # dlt insists on a password in its credentials; the local server trusts loopback anyway.
    credentials = dsn.replace("postgres@", "postgres:unused@", 1)
    for label in ("first", "identical"):
        out = subprocess.run(
            [str(python), str(script), str(folder / name), credentials, dataset],
            check=True,
            capture_output=True,
            text=True,
            cwd=folder,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        figures[f"{label}_s"] = result["seconds"]
        figures[f"{label}_rss_mb"] = result["max_rss_mb"]
    return figures


def summary(report: dict[str, Any]) -> list[str]:
    lines = _ours(report["rwasync"]) if "rwasync" in report else []
    first = report["rwasync"]["first_s"] if "rwasync" in report else None
    if "million" in report:
        big = report["million"]
        lines.append(
            f"  {big['assets']} assets: first run {big['first_s']:.1f} s, identical re-run "
            f"{big['identical_s']:.1f} s ({big['identical_rows_written']} rows written), "
            f"poller peak RSS {big['poller_peak_rss_mb']:.0f} MB "
            f"({big['poller_and_workers_peak_rss_mb']:.0f} MB with workers), "
            f"CPU {big['first_cpu_s']}, timeline {big['first_timeline_s']}"
        )
    if "dlt" in report:
        peer = report["dlt"]
        versus = f" (rwasync {peer['first_s'] / first:.2f} x as fast)" if first else ""
        lines.append(
            f"  dlt merge first   {peer['first_s']:7.1f} s{versus}, {peer['first_rss_mb']:.0f} MB"
        )
        lines.append(f"  dlt identical     {peer['identical_s']:7.1f} s")
    return lines


def _ours(ours: dict[str, Any]) -> list[str]:
    first = ours["first_s"]
    cpu = ours["first_cpu_s"]
    lines = [
        f"feed of {ours['assets']} assets ({ours['bytes'] / 1e6:.0f} MB):",
        f"  first run         {first:7.1f} s",
        f"  identical re-run  {ours['identical_s']:7.1f} s ({ours['identical_s'] / first:.2f} x "
        f"first; {ours['identical_rows_written']} rows written)",
        f"  1 % changed       {ours['changed_s']:7.1f} s ({ours['changed_s'] / first:.2f} x first; "
        f"timeline {ours.get('changed_timeline_s')})",
        f"  poller peak RSS   {ours['poller_peak_rss_mb']:7.0f} MB "
        f"({ours['poller_and_workers_peak_rss_mb']:.0f} MB with its validation workers)",
        f"  first run's CPU   poller and workers {cpu['poller_and_workers']:.1f} s, "
        f"reconciler {cpu['reconciler']:.1f} s; timeline {ours['first_timeline_s']}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument(
        "--million", type=int, default=1_000_000, help="assets of the big run; 0 skips it"
    )
    parser.add_argument("--skip-dlt", action="store_true")
    parser.add_argument(
        "--workers", type=int, default=None, help="the poller's validation workers (its default)"
    )
    args = parser.parse_args()

    name = f"bench_feed_{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"], check=True
    )
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    folder = Path(tempfile.mkdtemp(prefix="rwasync-bench-feed-"))
    extra = {}
    if args.workers is not None:
        extra["RWASYNC_FEED_POLLER_VALIDATION_WORKERS"] = str(args.workers)
    system = System(dsn, f"amqp://guest:guest@127.0.0.1:5672/{name}", folder, extra_env=extra)
    served = Served(folder)
    report: dict[str, Any] = {"load_average_at_start": os.getloadavg()[0]}
    try:
        system.cli("migrate")
        system.start("reconciler", "feed-poller")
        if args.assets:
            report["rwasync"] = measure(system, dsn, folder, served, args.assets, "catalogue")
            print(json.dumps(report["rwasync"]), flush=True)
        if args.million:
            # The first run and the identical re-run only: a changed million is the 1 % run again.
            report["million"] = measure(
                system,
                dsn,
                folder,
                served,
                args.million,
                "million",
                with_changes=False,
                gzipped=True,
            )
            print(json.dumps(report["million"]), flush=True)
        if not args.skip_dlt:
            peer = args.assets or 100_000
            write_json(
                folder / "peer.json", assets(peer, base=datetime.now(UTC)), peer, datetime.now(UTC)
            )
            report["dlt"] = measure_dlt(folder, "peer.json", dsn)
            print(json.dumps(report["dlt"]), flush=True)
    finally:
        system.stop_all()
        served.server.shutdown()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False)
        subprocess.run(
            ["psql", ADMIN_DSN, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
            check=False,
        )
    print(json.dumps(report, indent=2))
    for line in summary(report):
        print(line)


if __name__ == "__main__":
    main()
