"""``cratedigger``: run the whole graph, print where to look, print a user's playlist, serve the
recommendation API."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from orchestration.settings import (
    SettingsError,
    apply_runtime_environment,
    dagster_home,
    load_settings,
    load_settings_for_data_dir,
    use_dagster_home,
)


def _prepare_home() -> None:
    """Use ``DAGSTER_HOME`` when set, else ``<data dir>/dagster_home`` with the profile's yaml."""
    from orchestration.instance import ensure_dagster_home

    path = ensure_dagster_home(load_settings(), dagster_home())
    use_dagster_home(path)


def cmd_run(args: argparse.Namespace) -> int:
    """Materialise every asset (and the latest weekly partition) on the configured source."""
    from orchestration.runlock import RunInProgressError, run_lock
    from orchestration.services import check_services

    settings = load_settings()
    check_services(settings)
    try:
        with run_lock(settings.data_dir):
            return _run(args)
    except RunInProgressError as error:
        print(f"cratedigger run: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    _prepare_home()
    import dagster as dg

    from orchestration.runner import run_everything

    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    summary = run_everything(instance, args.log_level)
    print(f"\nchecks: {summary.passed_checks} passed, {len(summary.failed_checks)} failed")
    for name in summary.failed_checks:
        print(f"  FAILED CHECK {name}")
    if not summary.success:
        print(f"{summary.failed_job} failed; see the step errors above or in the UI (make ui).")
        return 1
    elapsed = time.perf_counter() - started
    print(where_text(elapsed))
    if not args.no_playlist:
        _print_any_playlist()
    return 0


def where_text(elapsed: float | None = None) -> str:
    settings = load_settings()
    header = (
        f"cratedigger: every asset materialised in {elapsed:.0f} s"
        if elapsed is not None
        else "cratedigger: where everything is"
    )

    def path(where: Path | str) -> str:
        exists = str(where).startswith("http") or Path(where).exists()
        return f"{where}" + ("" if exists else "  (not materialised yet: run `cratedigger run`)")

    lines = [
        "",
        f"{header} (profile {settings.profile}, source {settings.source}).",
        f"  warehouse (DuckDB)   {path(settings.warehouse_path)}",
        f"  data-quality report  {path(settings.data_docs_index)}",
        f"  quality summary      {path(settings.reports_dir / 'data_quality.md')}",
        f"  vectors (Milvus)     {path(settings.milvus_uri)}",
        f"  models (artifacts)   {path(settings.artifact_uri)}",
        f"  feature repo (Feast) {settings.feature_repo}",
        f"  Dagster home         {dagster_home() or ''}",
        "  UI                   make ui   (dagster dev -w workspace.yaml, http://127.0.0.1:3000)",
    ]
    return "\n".join(lines)


def _print_any_playlist() -> None:
    try:
        from recommend.playlist import first_user_playlist_text
    except ImportError:
        return
    text = first_user_playlist_text(load_settings().warehouse_path)
    if text:
        print("\n" + text)


def cmd_playlist(args: argparse.Namespace) -> int:
    from recommend.playlist import PlaylistUnavailable, playlist_text

    try:
        print(playlist_text(load_settings().warehouse_path, args.user_id, week=args.week))
    except PlaylistUnavailable as error:
        print(f"cratedigger playlist: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_radio(args: argparse.Namespace) -> int:
    """A station drifting from a seed artist along the week's transition model, every step
    with its reason."""
    from recommend.errors import TooSmall
    from recommend.journeys import (
        NoTransitionModel,
        UnknownArtist,
        load_transition_model,
        radio_text,
    )

    if args.steps < 1:
        print(f"cratedigger radio: --steps must be >= 1, got {args.steps}", file=sys.stderr)
        return 2
    try:
        week = None if args.week is None else _week_of(args.week)
        week, model = load_transition_model(str(load_settings().artifact_uri), week)
        text = radio_text(model, args.artist_id, steps=args.steps, seed=args.seed)
        print(f"week {week}: {model.rule.describe()}\n{text}")
    except (NoTransitionModel, UnknownArtist, TooSmall, ValueError) as error:
        print(f"cratedigger radio: {error}", file=sys.stderr)
        return 1
    return 0


def _week_of(day: str) -> str:
    """The Monday (``YYYY-MM-DD``) of the week holding ``day``; ValueError naming the format."""
    import pandas as pd

    from orchestration.partitions import week_of

    try:
        return week_of(pd.Timestamp(day))
    except (ValueError, TypeError) as error:
        raise ValueError(f"--week {day!r} is not a date (YYYY-MM-DD)") from error


def cmd_where(args: argparse.Namespace) -> int:
    print(where_text())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The HTTP API over what the pipeline published (never blocks a running pipeline)."""
    from serving.server import ServeError, ServeOptions, serve
    from serving.service import ServiceConfig

    settings = load_settings_for_data_dir(args.data_dir) if args.data_dir else load_settings()
    options = ServeOptions(
        host=args.host or settings.api_host,
        port=settings.api_port if args.port is None else args.port,
        log_level=args.log_level.lower(),
    )
    if not 0 <= options.port <= 65535:
        print(f"cratedigger serve: --port {options.port} is not in 0..65535", file=sys.stderr)
        return 2
    try:
        serve(ServiceConfig.from_settings(settings), options)
    except ServeError as error:
        print(f"cratedigger serve: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cratedigger", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialise every asset on the configured source")
    run.add_argument("--no-playlist", action="store_true", help="do not print a playlist")
    run.add_argument(
        "--log-level", default="INFO", help="Dagster console log level (DEBUG shows every event)"
    )
    run.set_defaults(func=cmd_run)
    playlist = sub.add_parser("playlist", help="print a user's Discover Weekly with reasons")
    playlist.add_argument("user_id")
    playlist.add_argument("--week", default=None, help="week start YYYY-MM-DD (default latest)")
    playlist.set_defaults(func=cmd_playlist)
    radio = sub.add_parser(
        "radio",
        help="an endless station from a seed artist, each step with its reason",
        description="Drift from ARTIST_ID along the transition model of exploratory listeners "
        "(no artist twice within 20 steps); prints the first --steps steps.",
    )
    radio.add_argument("artist_id")
    radio.add_argument("--steps", type=int, default=50, help="steps to print (default 50)")
    radio.add_argument("--week", default=None, help="any day of the week (default the latest)")
    radio.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    radio.set_defaults(func=cmd_radio)
    where = sub.add_parser("where", help="print where the artefacts are")
    where.set_defaults(func=cmd_where)
    serve = sub.add_parser(
        "serve",
        help="the recommendation API (FastAPI): playlists, similar items, search, health",
        description="Serve what the pipeline published over HTTP; OpenAPI at /openapi.json.",
    )
    serve.add_argument(
        "--host", default=None, help="address to bind (default CRATEDIGGER_API_HOST, 127.0.0.1)"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=None,
        help="port (default CRATEDIGGER_API_PORT, 8000; 0 picks a free one, printed)",
    )
    serve.add_argument(
        "--data-dir", default=None, help="data directory (default CRATEDIGGER_DATA_DIR)"
    )
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level",
    )
    serve.set_defaults(func=cmd_serve)
    args = parser.parse_args(argv)
    apply_runtime_environment()
    try:
        return int(args.func(args))
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2


def entry() -> None:
    """Console entry point. Exits without interpreter teardown once output is flushed: DuckDB
    2.0's bindings print reference-leak noise at teardown that would bury the summary."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
