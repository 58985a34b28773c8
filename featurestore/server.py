"""The ``feast serve`` process manager: start Feast's HTTP feature server, wait, stop it.

Example usage::

    from featurestore.server import free_port, serve_command, start_server

    port = free_port()
    command = serve_command("feature_repo", yaml_path, "127.0.0.1", port)
    with start_server(command, f"http://127.0.0.1:{port}", log_path, cwd=data_dir) as server:
        requests.post(server.url + "/get-online-features", json=...)

:meth:`featurestore.client.FeatureStoreClient.serve` does all of this for a client's store.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from featurestore.errors import FeatureStoreError

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (for test servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def feast_executable(path: str | None = None) -> str:
    """``path``, else the ``feast`` CLI beside this Python; ``feast`` (from ``PATH``) if absent."""
    executable = path or str(Path(sys.executable).with_name("feast"))
    return executable if Path(executable).exists() else "feast"


def serve_command(
    repo_path: str | Path,
    yaml_path: str | Path,
    host: str,
    port: int,
    *,
    workers: int = 1,
    max_requests: int | None = None,
    executable: str | None = None,
) -> list[str]:
    """The ``feast serve`` command line for a repository and a ``feature_store.yaml``.

    Parameters
    ----------
    repo_path : str or Path
        Feast repository directory (``-c``).
    yaml_path : str or Path
        The effective ``feature_store.yaml`` (``-f``).
    host, port : str, int
        Where to listen.
    workers : int
        Gunicorn worker processes.
    max_requests : int, optional
        Requests after which gunicorn restarts a worker; ``0`` disables restarts, ``None``
        keeps Feast's default (1000 +- 50).
    executable : str, optional
        Path of the ``feast`` CLI (see :func:`feast_executable`).

    Returns
    -------
    list of str
        The command, for :func:`start_server`.
    """
    command = [feast_executable(executable), "-c", str(repo_path), "-f", str(yaml_path)]
    command += ["serve", "-h", host, "-p", str(port), "--no-access-log", "-w", str(workers)]
    if max_requests is not None:
        command += ["--max-requests", str(max_requests), "--max-requests-jitter", "0"]
    return command


def start_server(
    command: list[str], url: str, log_path: Path, cwd: Path, timeout_s: float = 60.0
) -> FeatureServer:
    """Start ``command`` as a :class:`FeatureServer` and wait until ``url`` answers."""
    logger.info("starting %s", " ".join(command))
    server = FeatureServer(command, url, log_path, cwd=cwd)
    server.wait_ready(timeout_s)
    return server


class FeatureServer:
    """A ``feast serve`` subprocess; use as a context manager so it is always stopped.

    Attributes
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:6566``; POST ``/get-online-features`` there.
    process : subprocess.Popen
        The server process (its own process group).
    log_path : Path
        Where the server's stdout and stderr go.
    """

    def __init__(self, command: list[str], url: str, log_path: Path, cwd: Path) -> None:
        self.url = url
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until ``GET /health`` answers 200; raise with the server log otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._fail(f"feast serve exited with code {self.process.returncode}")
            if self._healthy():
                return
            time.sleep(0.25)
        self._fail(f"feast serve did not answer {self.url}/health within {timeout_s:.0f}s")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _fail(self, reason: str) -> None:
        """Stop the server and raise with the end of its log."""
        self.stop()
        log = self.log_path.read_text(errors="replace")[-3000:]
        raise FeatureStoreError(f"{reason}; log:\n{log}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``timeout_s``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> FeatureServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
