"""Check the services a profile needs before any compute starts, in seconds, naming the key."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from orchestration.settings import Settings, SettingsError

TIMEOUT_SECONDS = 3.0


def _reachable(host: str, port: int) -> str | None:
    """None when a TCP connection opens, else the reason."""
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS):
            return None
    except OSError as error:
        return str(error) or type(error).__name__


def _postgres(settings: Settings) -> str | None:
    url = urlsplit(settings.postgres_url.replace("+psycopg", "").replace("+psycopg2", ""))
    host, port = url.hostname or "127.0.0.1", url.port or 5432
    reason = _reachable(host, port)
    if reason is None:
        import psycopg

        try:
            dsn = settings.postgres_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(
                dsn.replace("postgresql+psycopg2://", "postgresql://"),
                connect_timeout=int(TIMEOUT_SECONDS),
            ):
                return None
        except psycopg.Error as error:
            reason = str(error).strip().splitlines()[0]
    return (
        f"PostgreSQL at {host}:{port} is not usable ({reason}): start it, or fix "
        "CRATEDIGGER_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)."
    )


def _redis(settings: Settings) -> str | None:
    host, _, port = settings.redis_url.partition(":")
    reason = _reachable(host or "127.0.0.1", int(port or 6379))
    if reason is None:
        return None
    return (
        f"Redis at {settings.redis_url} is not reachable ({reason}): start it, or fix "
        "CRATEDIGGER_REDIS_URL (host:port, e.g. 127.0.0.1:6379)."
    )


def check_services(settings: Settings) -> None:
    """Raise :class:`SettingsError` naming the key of every configured service that is down."""
    if settings.profile != "production":
        return
    problems = [p for p in (_postgres(settings), _redis(settings)) if p]
    if problems:
        raise SettingsError(" ".join(problems))
