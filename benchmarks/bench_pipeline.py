"""End-to-end time of the whole graph on the sample and on HetRec, with a per-asset table.

Each dataset runs in its own subprocess (settings are read once per process) on a fresh data
directory under a temporary folder, exactly as ``cratedigger run`` does.

    python -m benchmarks.bench_pipeline                 # sample + HetRec (if ../shared/data)
    python -m benchmarks.bench_pipeline --only sample
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench_results"
HETREC = ROOT.parent / "shared" / "data" / "hetrec2011-lastfm-2k"


def _one(name: str, out: Path) -> None:
    """Child process: run everything once and write the timings to ``out``."""
    import dagster as dg

    from orchestration.runner import run_everything, step_seconds

    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    summary = run_everything(instance, log_level="WARNING")
    total = time.perf_counter() - started
    out.write_text(
        json.dumps(
            {
                "dataset": name,
                "success": summary.success,
                "total_seconds": total,
                "checks_passed": summary.passed_checks,
                "checks_failed": summary.failed_checks,
                "steps": step_seconds(instance, summary.run_ids),
            }
        )
    )


def _run(name: str, env_extra: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench_pipeline_{name}_") as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, **env_extra, "CRATEDIGGER_DATA_DIR": str(Path(tmp) / "data")}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_pipeline", "--child", name, str(out)],
            cwd=ROOT,
            env=env,
            check=True,
        )
        result = json.loads(out.read_text())
        # keep the evaluation tables the assets wrote (cf, text cold start, blend, quality)
        kept = RESULTS / f"reports_{name}"
        kept.mkdir(parents=True, exist_ok=True)
        for report in (Path(tmp) / "data" / "reports").glob("*"):
            if report.suffix in (".csv", ".md", ".png"):
                shutil.copy(report, kept / report.name)
        result["process_seconds"] = time.perf_counter() - started
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["sample", "hetrec"], default=None)
    parser.add_argument("--child", nargs=2, metavar=("NAME", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _one(args.child[0], Path(args.child[1]))
        return 0
    datasets = {"sample": {"CRATEDIGGER_SOURCE": "sample"}}
    if HETREC.exists():
        datasets["hetrec"] = {
            "CRATEDIGGER_SOURCE": "hetrec",
            "CRATEDIGGER_SOURCE_PATH": str(HETREC),
        }
    else:
        print(f"HetRec not found at {HETREC}: sample only")
    if args.only:
        datasets = {k: v for k, v in datasets.items() if k == args.only}
    results = [_run(name, env) for name, env in datasets.items()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(results, indent=2))
    steps = sorted({s for r in results for s in r["steps"]})
    lines = [
        "# Whole graph, end to end (`python -m benchmarks.bench_pipeline`)",
        "",
        "| dataset | ok | wall s (runs) | wall s (process, incl. imports) | checks passed |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['dataset']} | {r['success']} | {r['total_seconds']:.1f} | "
            f"{r['process_seconds']:.1f} | {r['checks_passed']} |"
        )
    lines += [
        "",
        "Per step (seconds):",
        "",
        "| step | " + " | ".join(r["dataset"] for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    order = sorted(steps, key=lambda s: -max(r["steps"].get(s, 0.0) for r in results))
    for step in order:
        cells = " | ".join(f"{r['steps'].get(step, 0.0):.2f}" for r in results)
        lines.append(f"| {step} | {cells} |")
    (RESULTS / "pipeline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["success"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
