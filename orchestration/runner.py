"""Run the whole graph in process (what ``cratedigger run`` and the benchmarks do)."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field

import dagster as dg

logger = logging.getLogger(__name__)

PID_TAG = "cratedigger/pid"
HOST_TAG = "cratedigger/host"
UNFINISHED = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


STEP_DONE = {"STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED", "STEP_SKIPPED": "skipped"}
# every finished step of this process: job label, step, status, seconds, peak RSS (MB)
STEP_STATS: list[dict] = []


def reset_peak_rss() -> None:
    """Restart the process's peak-RSS counter (Linux ``clear_refs`` 5); a no-op elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float | None:
    """Peak resident memory since the last :func:`reset_peak_rss` (Linux ``VmHWM``), in MB."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class _ProgressHandler(logging.Handler):
    """Prints ``[label k/M] step done in s (peak MB)`` as each step of a run ends, from Dagster's
    step events, and records it in :data:`STEP_STATS`."""

    def __init__(self, total: int, label: str, run_id: str | None = None) -> None:
        super().__init__(level=logging.DEBUG)
        self.total, self.label, self.done, self.run_id = total, label, 0, run_id
        self.started: dict[str, float] = {}

    def _finished(self) -> int:
        """Steps of the run finished so far, this one included. In process: this handler's
        count. Under the multiprocess executor (``run_id`` given) every step logs from its own
        process, so the count comes from the run's event log, where this step's event is not
        stored yet."""
        self.done += 1
        if self.run_id is None:
            return self.done
        try:
            kinds = {dg.DagsterEventType[kind] for kind in STEP_DONE}
            records = dg.DagsterInstance.get().get_records_for_run(
                self.run_id, of_type=kinds, limit=10_000
            )
            return min(self.total, len(records.records) + 1)
        except Exception:  # a progress line never fails a step
            return self.done

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_event", None)
        step = getattr(event, "step_key", None)
        if event is None or step is None:
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            # in process, steps run one at a time; under the multiprocess executor each step
            # has its own process: either way the peak is this step's
            reset_peak_rss()
            self.started[step] = time.monotonic()
        elif kind in STEP_DONE:
            done = self._finished()
            seconds = time.monotonic() - self.started.get(step, time.monotonic())
            peak = peak_rss_mb()
            STEP_STATS.append(
                {
                    "job": self.label,
                    "step": step,
                    "status": STEP_DONE[kind],
                    "seconds": round(seconds, 2),
                    "peak_rss_mb": None if peak is None else round(peak, 1),
                }
            )
            width = len(str(self.total))
            memory = "" if peak is None else f", peak {peak / 1024:.1f} GB"
            print(
                f"[{self.label} {done:>{width}}/{self.total}] {step} {STEP_DONE[kind]} "
                f"in {seconds:.1f} s{memory}",
                file=sys.stderr,
                flush=True,
            )


@dg.logger(
    config_schema={
        "total": dg.Field(int),
        "label": dg.Field(str, default_value="step"),
        "multiprocess": dg.Field(bool, default_value=False),
    },
    description="One line per finished step: step N of M, its name and its seconds.",
)
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    config = init_context.logger_config
    log = logging.getLogger(f"cratedigger.progress.{id(init_context)}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    run_id = init_context.run_id if config["multiprocess"] else None
    log.handlers = [_ProgressHandler(config["total"], config["label"], run_id)]
    return log


def with_progress_logger(job: dg.JobDefinition) -> dg.JobDefinition:
    """``job`` with the progress logger beside the console one."""
    return job.with_logger_defs({**job.loggers, "progress": progress_logger})


def with_progress(
    job: dg.JobDefinition, run_config: dict, label: str, multiprocess: bool = False
) -> tuple[dg.JobDefinition, dict]:
    """``job`` with the progress logger beside the console one, and the run config for both."""
    total = len(job.nodes_in_topological_order)
    progress = {"total": total, "label": label, "multiprocess": multiprocess}
    config = {
        **run_config,
        "loggers": {**run_config.get("loggers", {}), "progress": {"config": progress}},
    }
    return with_progress_logger(job), config


def _execute(
    instance: dg.DagsterInstance,
    job_name: str,
    partition_key: str | None,
    run_config: dict,
    tags: dict[str, str],
) -> dg.ExecutionResult:
    """One run of ``job_name``: in this process (``CRATEDIGGER_EXECUTOR=in_process``), or by the
    job's multiprocess executor, independent steps in parallel processes."""
    from orchestration import definitions as d

    label = "week " + partition_key if partition_key else "main"
    multiprocess = d.settings.executor == "multiprocess"
    job, config = with_progress(d.defs.resolve_job_def(job_name), run_config, label, multiprocess)
    if not multiprocess:
        return job.execute_in_process(
            instance=instance,
            partition_key=partition_key,
            run_config=config,
            raise_on_error=False,
            tags=tags,
        )
    partition = {"dagster/partition": partition_key} if partition_key else {}
    return dg.execute_job(
        dg.reconstructable(d.JOB_FACTORIES[job_name]),
        instance=instance,
        run_config=config,
        tags={**tags, **partition},
        raise_on_error=False,
    )


@dataclass
class RunSummary:
    """Outcome of :func:`run_everything`."""

    success: bool
    run_ids: list[str] = field(default_factory=list)
    passed_checks: int = 0
    failed_checks: list[str] = field(default_factory=list)
    failed_job: str | None = None


def run_everything(instance: dg.DagsterInstance, log_level: str = "INFO") -> RunSummary:
    """Materialise every unpartitioned asset, then the latest partition of partitioned ones."""
    from orchestration import definitions as d

    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    for run_id in recover_dead_runs(instance):
        print(
            f"cratedigger: run {run_id} was left unfinished by a process that is gone; "
            "marked failed and its pool slots freed"
        )
    tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    summary = RunSummary(success=True)
    runs: list[tuple[str, str | None]] = [(d.EVERYTHING_JOB, None)]
    while runs:
        # the weeks are registered by the main job, so the weekly run is known after it
        job_name, partition_key = runs.pop(0)
        result = _execute(instance, job_name, partition_key, run_config, tags)
        summary.run_ids.append(result.run_id)
        for evaluation in result.get_asset_check_evaluations():
            if evaluation.passed:
                summary.passed_checks += 1
            else:
                summary.failed_checks.append(
                    f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
                )
        if not result.success:
            summary.success = False
            summary.failed_job = job_name + (f" [{partition_key}]" if partition_key else "")
            break
        if job_name == d.EVERYTHING_JOB:
            runs.extend(d.partitioned_runs(instance))
    return summary


def step_seconds(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, float]:
    """Wall seconds per step (asset or check) of the given runs, from the event log."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for run_id in run_ids:
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None or entry.step_key is None:
                continue
            if event.event_type_value == "STEP_START":
                started[entry.step_key] = entry.timestamp
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                begin = started.get(entry.step_key)
                if begin is not None:
                    seconds[entry.step_key] = seconds.get(entry.step_key, 0.0) + (
                        entry.timestamp - begin
                    )
    return seconds


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def recover_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Runs of ``cratedigger run`` on this host left STARTED by a process that is gone (killed):
    mark them failed and free the pool slots they hold, so the next run does not wait forever.
    Returns their run ids."""
    recovered = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED)):
        pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if not pid or host != socket.gethostname() or _alive(int(pid)):
            continue
        instance.report_run_failed(
            run, message=f"cratedigger run (pid {pid}) ended without finishing this run (killed?)"
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(run.run_id)
    return recovered
