"""The one SparkSession getter of the project (the Spark engine and MLlib ALS use it).

Quiet by default: log level ERROR from the first JVM line on (``log4j2.properties`` beside
this module), no UI or progress bars, Arrow transfers; on a ``local`` master the driver binds to
127.0.0.1 and Python workers run this interpreter. Nothing here reads the environment: the
master comes from :func:`orchestration.settings.spark_master` unless given.

Example usage::

    spark = spark_session("local[2]")
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
DEFAULT_DRIVER_MEMORY = "4g"
# read when the session starts (a session that already runs keeps its own)
LAUNCH_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.warehouse.dir": str(Path(tempfile.gettempdir()) / "cratedigger-spark-warehouse"),
    "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.pyspark.python": sys.executable,
    "spark.pyspark.driver.python": sys.executable,
}
LOCAL_CONF = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}


def spark_session(
    master: str | None = None,
    app_name: str = "cratedigger",
    driver_memory: str = DEFAULT_DRIVER_MEMORY,
) -> SparkSession:
    """Start (or get: its master and settings win) a quiet SparkSession.

    Parameters
    ----------
    master
        ``local[2]``, ``spark://host:7077``, ``k8s://...``; default ``SPARK_MASTER``.
    app_name
        The application name the cluster shows.
    driver_memory
        The driver's heap (``spark.driver.memory``).
    """
    from pyspark.sql import SparkSession

    from orchestration.settings import spark_master

    master = master or spark_master()
    conf = {**LAUNCH_CONF, "spark.driver.memory": driver_memory}
    if master.startswith("local"):
        conf |= LOCAL_CONF
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
