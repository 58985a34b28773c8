"""What tests check before they need Java and pyspark, or a service on 127.0.0.1: each says why
it skips (never a silent pass)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from pathlib import Path


def reachable(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def spark_missing() -> str | None:
    """Why Spark cannot run here (pyspark or Java missing), or None."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install -e '.[spark]')"
    java_home = os.environ.get("JAVA_HOME")
    if shutil.which("java") is None and not (java_home and Path(java_home, "bin/java").exists()):
        return "Java is not installed (Spark needs a JDK 17, e.g. openjdk-17)"
    return None
