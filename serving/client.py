"""A small Python client of the recommendation API, and a local server for scripts and tests.

Example usage::

    from serving.client import ApiClient

    with ApiClient("http://127.0.0.1:8000") as api:  # a running `cratedigger serve`
        print(api.discover_weekly("u000001")["items"][0])
        print(api.similar_items("t0000001", kind="cf", k=5))

    with local_server("data") as url, ApiClient(url) as api:  # starts one on a free port
        print(api.health()["collections"]["cf_items"]["version"])
"""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx

from serving.server import READY_PREFIX


class ApiError(RuntimeError):
    """A non-2xx answer: ``status`` and the server's ``detail`` message."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class ApiClient:
    """Typed calls to ``cratedigger serve``; errors raise :class:`ApiError` with the message."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, **params: Any) -> Any:
        response = self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response.json()

    def health(self) -> dict[str, Any]:
        return self.get("/health")

    def discover_weekly(self, user_id: str, week: dt.date | str | None = None) -> dict[str, Any]:
        return self.get(f"/users/{_segment(user_id)}/discover-weekly", week=week and str(week))

    def recommendations(self, user_id: str, k: int = 10) -> dict[str, Any]:
        return self.get(f"/users/{_segment(user_id)}/recommendations", k=k)

    def similar_items(self, item_id: str, kind: str = "cf", k: int = 10) -> dict[str, Any]:
        return self.get(f"/items/{_segment(item_id)}/similar", kind=kind, k=k)

    def similar_artists(self, artist_id: str, kind: str = "text", k: int = 10) -> dict[str, Any]:
        return self.get(f"/artists/{_segment(artist_id)}/similar", kind=kind, k=k)

    def search(self, q: str, type: str = "all", limit: int = 10) -> dict[str, Any]:
        return self.get("/search", q=q, type=type, limit=limit)


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")


@contextlib.contextmanager
def local_server(
    data_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 120.0,
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Run ``cratedigger serve --data-dir DATA_DIR`` in a subprocess (port 0: a free one),
    wait until it answers ``/health``, yield its base URL, stop it on exit."""
    command = [
        sys.executable,
        "-m",
        "orchestration.cli",
        "serve",
        "--data-dir",
        str(data_dir),
        "--host",
        host,
        "--port",
        str(port),
        *extra_args,
    ]
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            yield _wait_ready(process, errors, timeout)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            if process.stdout is not None:
                process.stdout.close()


def _wait_ready(process: subprocess.Popen, errors: IO[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    line = process.stdout.readline()  # the first line names the address (or the process died)
    if not line.startswith(READY_PREFIX):
        process.wait(timeout=10)
        errors.seek(0)
        raise RuntimeError(
            f"cratedigger serve did not start (exit {process.returncode}): "
            f"{(line + errors.read()).strip()[-2000:]}"
        )
    url = line[len(READY_PREFIX) :].split()[0]
    threading.Thread(target=process.stdout.read, daemon=True).start()  # drain the pipe
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cratedigger serve exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"cratedigger serve at {url} did not answer /health in {timeout:.0f} s")
