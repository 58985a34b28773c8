"""Benchmark: the whole graph (``cratedigger run``) at 1M, 10M and 100M listen events.

For each size, the streamed sample generator (:mod:`sources.sample_stream`) writes the generic
source's Parquet files (seeded; about 100 events per user, 20 tracks per sqrt(event)), then a
fresh process runs every asset and the latest week on them (generic source, embedded profile,
a fresh data directory) and reports wall seconds and peak RSS per step (Linux ``VmHWM``, reset
at every step start: steps run one at a time in process). Milvus Lite's server process is not
counted.

Writes ``bench_results/scale.json`` and ``bench_results/scale.md``: per size the total wall
time, the peak RSS, wall seconds per 10M events, and the ten heaviest steps; per step and size
the full table in the JSON.

Run from the repository root::

    python -m benchmarks.bench_scale                       # 1M, 10M, 100M
    python -m benchmarks.bench_scale --sizes 1M,10M --work /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS_DIR = Path("bench_results")
STEP_MARK = "BENCH_SCALE_STEPS "


def parse_size(text: str) -> int:
    """``10M`` / ``100k`` / ``1e6`` -> an event count."""
    from sources.sample_stream import parse_count

    return parse_count(text)


def generate(events: int, folder: Path, seed: int) -> float:
    """Write the generic files for ``events`` unless they are there; returns seconds."""
    from sources.sample_stream import SampleStream

    if (folder / "sample_stream.json").exists():
        return 0.0
    started = time.perf_counter()
    SampleStream(events, seed).write(folder)
    return time.perf_counter() - started


def run_one(source: Path, data_dir: Path) -> None:
    """In a fresh process: run everything on ``source`` and print the step table as JSON."""
    from orchestration.cli import _prepare_home
    from orchestration.settings import apply_runtime_environment

    apply_runtime_environment()
    _prepare_home()
    import dagster as dg

    from orchestration.runner import STEP_STATS, run_everything

    started = time.perf_counter()
    summary = run_everything(dg.DagsterInstance.get(), log_level="WARNING")
    report = {
        "success": summary.success,
        "failed_job": summary.failed_job,
        "failed_checks": summary.failed_checks,
        "wall_s": round(time.perf_counter() - started, 1),
        "steps": STEP_STATS,
    }
    print(STEP_MARK + json.dumps(report), flush=True)


def measure(events: int, work: Path, seed: int, timeout: float) -> dict:
    """Generate, then run the graph in a child process; the child's step table and totals."""
    source = work / f"source_{events}"
    data_dir = work / f"data_{events}"
    generation_s = generate(events, source, seed)
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {
        **os.environ,
        "CRATEDIGGER_SOURCE": "generic",
        "CRATEDIGGER_SOURCE_PATH": str(source),
        "CRATEDIGGER_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(data_dir / "dagster_home"),
        "CRATEDIGGER_AUDIO_COMPARE": "none",
    }
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_scale",
                "--run-one",
                str(source),
                str(data_dir),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as expired:
        return timed_out(events, generation_s, time.perf_counter() - started, expired)
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith(STEP_MARK)]
    if not lines:
        tail = (done.stdout + done.stderr)[-2000:]
        return {"events": events, "success": False, "wall_s": round(wall, 1), "error": tail}
    report = json.loads(lines[-1][len(STEP_MARK) :])
    peaks = [s["peak_rss_mb"] for s in report["steps"] if s["peak_rss_mb"] is not None]
    return {
        "events": events,
        "generation_s": round(generation_s, 1),
        "process_wall_s": round(wall, 1),
        "peak_rss_gib": round(max(peaks, default=0.0) / 1024, 2),
        "wall_s_per_10M_events": round(report["wall_s"] * 1e7 / events, 1),
        **report,
    }


PROGRESS = re.compile(
    r"^\[(?P<job>.+?) +\d+/\d+\] (?P<step>\S+) (?P<status>\S+) in (?P<s>[\d.]+) s"
    r"(?:, peak (?P<gb>[\d.]+) GB)?"
)


def steps_from_progress(text: str) -> list[dict]:
    """The finished steps of the runner's progress lines (``[job n/N] step done in s, peak GB``)."""
    steps = []
    for line in text.splitlines():
        if match := PROGRESS.match(line):
            gb = match["gb"]
            steps.append(
                {
                    "job": match["job"],
                    "step": match["step"],
                    "status": match["status"],
                    "seconds": float(match["s"]),
                    "peak_rss_mb": None if gb is None else round(float(gb) * 1024, 1),
                }
            )
    return steps


def timed_out(
    events: int, generation_s: float, wall: float, expired: subprocess.TimeoutExpired
) -> dict:
    """A size stopped at ``--timeout``: the steps it finished, from its progress lines."""
    stderr = expired.stderr or ""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    steps = steps_from_progress(text)
    peaks = [s["peak_rss_mb"] for s in steps if s["peak_rss_mb"] is not None]
    return {
        "events": events,
        "success": False,
        "generation_s": round(generation_s, 1),
        "process_wall_s": round(wall, 1),
        "peak_rss_gib": round(max(peaks, default=0.0) / 1024, 2),
        "error": f"stopped at the --timeout of {expired.timeout:.0f} s after {len(steps)} steps",
        "steps": steps,
    }


def markdown(results: list[dict]) -> str:
    lines = [
        "# Whole graph at scale (`python -m benchmarks.bench_scale`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared and noisy. Generic "
        "source from `sources.sample_stream`; wall = `run_everything` (main job + latest week); "
        "peak RSS = the largest step peak (VmHWM per step; Milvus Lite's process not counted).",
        "",
        "| events | ok | wall s | s per 10M events | peak RSS GiB | generation s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['events']:,} | {'yes' if r.get('success') else 'NO'} | {r.get('wall_s', '')} "
            f"| {r.get('wall_s_per_10M_events', '')} | {r.get('peak_rss_gib', '')} "
            f"| {r.get('generation_s', '')} |"
        )
    for r in results:
        lines += ["", f"## {r['events']:,} events: heaviest steps", ""]
        if not r.get("steps"):
            lines.append(f"failed before any step finished: `{r.get('error', '')[-300:]}`")
            continue
        lines += ["| job | step | status | s | peak RSS MB |", "|---|---|---|---|---|"]
        for s in sorted(r["steps"], key=lambda s: -s["seconds"])[:10]:
            lines.append(
                f"| {s['job']} | {s['step']} | {s['status']} | {s['seconds']} "
                f"| {s['peak_rss_mb']} |"
            )
        if r.get("error"):
            lines.append(f"\nNOT FINISHED: {r['error']}")
        elif not r.get("success"):
            lines.append(f"\nFAILED: {r.get('failed_job')} {r.get('failed_checks')}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M,100M", help="comma-separated event counts")
    parser.add_argument("--work", default="/tmp/cratedigger_scale", help="scratch folder")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per size")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--run-one", nargs=2, metavar=("SOURCE", "DATA_DIR"), help="internal")
    args = parser.parse_args(argv)
    if args.run_one:
        run_one(Path(args.run_one[0]), Path(args.run_one[1]))
        return 0
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",")]
    except ValueError as error:
        print(f"bench_scale: --sizes: {error}", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for events in sizes:
        print(f"== {events:,} events", flush=True)
        result = measure(events, work, args.seed, args.timeout)
        print({k: v for k, v in result.items() if k != "steps"}, flush=True)
        results.append(result)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.json").write_text(json.dumps(results, indent=1))
        (args.out / "scale.md").write_text(markdown(results))
    return 0 if all(r.get("success") for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
