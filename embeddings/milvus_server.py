"""A local Milvus standalone server (the PyPI package ``milvus``) for the production profile's
tests and for trying the server path on one machine.

Milvus Lite (a ``.db`` file) allows one process per file; a server answers many clients at
once. The ``milvus`` package (2.3.x) ships a standalone server binary inside its wheel: this
module starts it in a given folder on a free port, waits until it answers a client call, and
stops it on exit, also when the block raises. The server's own output goes to files under
``<base_dir>/logs`` (``milvus-stdout.log``, ``milvus-stderr.log``); this module logs one line
at start and one at stop, and a failure quotes the tail of the server's stderr.

Point the project at it with ``MILVUS_URI=<server.uri>`` (``http://127.0.0.1:<port>``).

Example usage::

    with LocalMilvusServer("data/milvus_server") as server:
        with VectorStore(server.uri) as store:
            store.write_collection("cf_items", ids, vectors, dim=64, metric="IP", version="v1")

The server writes about 250 MB of unpacked binaries and its data under ``base_dir``; starting
it takes about 10 s. Several servers can run on one machine (each gets free ports, its embedded
etcd too). Milvus 2.3's component ports (gRPC, metrics on 9091 or the next free port) listen on
every interface, without authentication: this is a server for one machine's tests and trials,
not a deployment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = 120.0
DEFAULT_STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.2
LOG_TAIL_LINES = 15
ETCD_ANCHOR = "  data:\n    dir: {{ etcd_data_dir }}\n"


class MilvusServerError(RuntimeError):
    """The local Milvus server could not start or answer; the message says why and where the
    server's logs are."""


def unavailable_reason() -> str | None:
    """Why a local Milvus server cannot run here, or None when it can be tried.

    Checks that the ``milvus`` package is installed and that this is Linux or macOS (the
    systems its wheels carry a server binary for). Whether the binary runs shows at
    :meth:`LocalMilvusServer.start`.
    """
    try:
        import milvus  # noqa: F401
    except ImportError:
        return (
            "the 'milvus' package (standalone Milvus server) is not installed; install it with "
            "`pip install 'milvus>=2.3.5,<2.4'` (the project's 'production' extra)"
        )
    if sys.platform not in ("linux", "darwin"):
        return f"the 'milvus' package ships no server binary for {sys.platform}"
    return None


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalMilvusServer:
    """A Milvus standalone server process in ``base_dir``, as a context manager.

    Parameters
    ----------
    base_dir
        Folder for the server's binaries, configuration, logs and data (created). Reusing a
        folder keeps the collections of the previous run.
    port
        The gRPC/HTTP port clients use; default: a free port picked by the OS. When the port is
        taken by the time the server starts, the package picks the next free one; :attr:`uri`
        always names the port in use.
    start_timeout
        Seconds to wait for the server to answer before giving up (and stopping it).
    stop_timeout
        Seconds to wait for the process to exit after SIGTERM before it is killed (see
        :meth:`stop`).

    Raises
    ------
    MilvusServerError
        From :meth:`start`: the package is missing, the binary exits, or the server does not
        answer within ``start_timeout``.
    """

    def __init__(
        self,
        base_dir: str | Path,
        port: int | None = None,
        *,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT_S,
    ) -> None:
        self.base_dir = Path(base_dir).expanduser().resolve()
        self.requested_port = port
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._server: Any = None
        self._port: int | None = None

    # ------------------------------------------------------------------ properties
    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        process = self._process
        return process is not None and process.poll() is None

    @property
    def port(self) -> int:
        """The port clients connect to (after :meth:`start`)."""
        if self._port is None:
            raise MilvusServerError("the local Milvus server is not started; call start()")
        return self._port

    @property
    def uri(self) -> str:
        """``http://127.0.0.1:<port>``: what ``MILVUS_URI`` and ``VectorStore`` take."""
        return f"http://{HOST}:{self.port}"

    @property
    def logs_dir(self) -> Path:
        """Where the server writes its logs."""
        return self.base_dir / "logs"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        process = self._process
        return process.pid if process is not None else None

    @property
    def _process(self) -> subprocess.Popen | None:
        return getattr(self._server, "server_proc", None) if self._server is not None else None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Start the server and wait until it answers a client call.

        Returns
        -------
        str
            The server URI.

        Raises
        ------
        MilvusServerError
            See the class docstring. The process is stopped before the error is raised.
        """
        if self.running:
            return self.uri
        reason = unavailable_reason()
        if reason:
            raise MilvusServerError(reason)
        started = time.monotonic()
        try:
            self._spawn()
            self._wait_until_ready(started + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        logger.info(
            "Milvus server %s started in %.1fs (pid %s, folder %s)",
            self.uri,
            time.monotonic() - started,
            self.pid,
            self.base_dir,
        )
        return self.uri

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``stop_timeout``. Idempotent.

        Milvus 2.3.5 standalone exits at once on SIGTERM while it holds no loaded collection,
        but once one is loaded its shutdown retries a coordinator that is already gone and does
        not end (seen here for 90 s), hence the kill. Written collections are flushed by
        :class:`~embeddings.vector_store.VectorStore` before they are published, and a server
        restarted in the same folder after the kill serves them again (checked).
        """
        server, self._server = self._server, None
        if server is None:
            return
        process = getattr(server, "server_proc", None)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.info(
                    "Milvus server pid %s still shutting down %.0fs after SIGTERM; killed",
                    process.pid,
                    self.stop_timeout,
                )
        server.stop()  # kills it if still alive, closes the log files
        if self._port is not None:
            logger.info("Milvus server %s stopped", self.uri)
        self._port = None

    def __enter__(self) -> LocalMilvusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:  # a forgotten server must not outlive its owner
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing to report to
            self.stop()

    # ------------------------------------------------------------------ internals
    def _spawn(self) -> None:
        from milvus import MilvusServer

        self.base_dir.mkdir(parents=True, exist_ok=True)
        server = MilvusServer(_server_config(self.base_dir), wait_for_started=False)
        server.set_base_dir(str(self.base_dir))
        server.listen_port = int(self.requested_port or free_port())
        self._server = server
        cwd = os.getcwd()  # start() changes directory and does not restore it on a failure
        try:
            server.start()  # resolves ports, unpacks the binary, spawns the process
        except (OSError, RuntimeError) as error:
            raise MilvusServerError(
                f"cannot start the Milvus server in {self.base_dir}: {error}"
            ) from error
        finally:
            os.chdir(cwd)
        self._port = int(server.listen_port)

    def _wait_until_ready(self, deadline: float) -> None:
        """Poll until the health endpoint says OK and a client call succeeds."""
        health_url = f"http://{HOST}:{self._server.webservice_port}/healthz"
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise MilvusServerError(
                    f"the Milvus server exited with code {code} while starting{self._log_tail()}"
                )
            if _healthy(health_url) and _answers(self.uri):
                return
            time.sleep(POLL_INTERVAL_S)
        raise MilvusServerError(
            f"the Milvus server on port {self._port} did not answer within "
            f"{self.start_timeout:.0f}s{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        path = self.logs_dir / "milvus-stderr.log"
        try:
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return f" (no server log at {path})"
        tail = "\n".join(lines) or "(empty)"
        return f"; last lines of {path}:\n{tail}"


def _server_config(base_dir: Path) -> Any:
    """The package's configuration, with the embedded etcd on free ports.

    The stock template leaves the embedded etcd on its fixed ports 2379/2380, so a second
    server on the machine dies at start ("bind: address already in use"). An etcd config
    file (``etcd.config.path``) with free client and peer ports lets servers run side by side.
    A package whose template lacks the anchor keeps the stock configuration.
    """
    import milvus
    from milvus import MilvusServerConfig

    package_data = Path(milvus.__file__).parent / "data"
    text = (package_data / "config.yaml.template").read_text(encoding="utf-8")
    if ETCD_ANCHOR not in text:
        logger.debug("milvus template without %r: embedded etcd stays on 2379/2380", ETCD_ANCHOR)
        return MilvusServerConfig()
    folder = base_dir / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    template = folder / "milvus.yaml.template"
    template.write_text(
        text.replace(ETCD_ANCHOR, ETCD_ANCHOR + "  config:\n    path: {{ etcd_config_path }}\n"),
        encoding="utf-8",
    )
    client, peer = free_port(), free_port()
    etcd_config = folder / "embedded-etcd.yaml"
    etcd_config.write_text(
        f"name: default\n"
        f"listen-client-urls: http://{HOST}:{client}\n"
        f"advertise-client-urls: http://{HOST}:{client}\n"
        f"listen-peer-urls: http://{HOST}:{peer}\n"
        f"initial-advertise-peer-urls: http://{HOST}:{peer}\n"
        f"initial-cluster: default=http://{HOST}:{peer}\n",
        encoding="utf-8",
    )
    config = MilvusServerConfig(template=str(template))
    config.glog_conf_file = str(package_data / "glog.conf")  # set only for the stock template
    config.set("etcd_config_path", str(etcd_config))
    config.set("etcd_port", client)
    return config


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return "OK" in response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return False


def _answers(uri: str) -> bool:
    """True when a pymilvus client can list collections (its own retries logged quietly)."""
    from pymilvus import MilvusClient

    quiet = logging.getLogger("pymilvus")
    previous = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        client = MilvusClient(uri=uri, timeout=5)
        try:
            client.list_collections()
        finally:
            client.close()
        return True
    except Exception:  # any client failure means "not ready yet"
        return False
    finally:
        quiet.setLevel(previous)
