"""Run the API with uvicorn on an address bound before the first request (port 0: a free one).

The first line printed on stdout names the address, e.g.
``cratedigger serve: listening on http://127.0.0.1:8000`` (tests and
:func:`serving.client.local_server` read it).
"""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import dataclass

from serving.service import RecommendationService, ServiceConfig

logger = logging.getLogger(__name__)

READY_PREFIX = "cratedigger serve: listening on "


class ServeError(RuntimeError):
    """The server cannot start; the message says why (one line)."""


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "warning"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(config: ServiceConfig, options: ServeOptions) -> None:
    """Load what the pipeline published, then answer until SIGINT/SIGTERM."""
    import uvicorn

    from serving.api import create_app

    if not config.warehouse_path.exists() and not (config.data_dir / "exports").exists():
        raise ServeError(
            f"nothing to serve in {config.data_dir}: no warehouse and no exports; run "
            "`cratedigger run` (or `make demo`) first, or point --data-dir at a data directory"
        )
    logging.basicConfig(
        level=options.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    sock = bind(options.host, options.port)
    # one BLAS thread: requests are single small matrix products, and threads that spin on a
    # shared machine cost more than they give (requests already run concurrently)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    service = RecommendationService(config).load().start()
    app = create_app(service)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"{READY_PREFIX}http://{shown}:{port}  (OpenAPI: /openapi.json)", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=options.log_level,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        service.stop()
        sock.close()
        sys.stdout.flush()
