"""The one place that knows which profile runs. Everything else receives plain values.

Environment variables (all optional; defaults give the embedded profile on the built-in sample):

==========================  ===================================================================
``CRATEDIGGER_PROFILE``     ``embedded`` (default: DuckDB file, Milvus Lite, Feast on SQLite) or
                            ``production`` (Feast SQL registry on Postgres + Redis online store,
                            Dagster storage on Postgres, Milvus server through ``MILVUS_URI``)
``CRATEDIGGER_DATA_DIR``    where every artefact goes (default ``./data`` of the checkout)
``CRATEDIGGER_SOURCE``      ``sample`` (default), ``hetrec`` or ``generic``
``CRATEDIGGER_SOURCE_PATH`` directory of the HetRec or generic files (required for those two)
``CRATEDIGGER_SAMPLE_SCALE`` multiplies the sample generator's size (default 1.0)
``MILVUS_URI``              Milvus server URI; default ``<data dir>/milvus.db`` (Milvus Lite)
``CRATEDIGGER_ARTIFACT_URI`` where models, vector sets and blend configs are stored, versioned:
                            a folder (default ``<data dir>/artifacts``) or an fsspec URI
                            such as ``s3://bucket/cratedigger`` (production)
``CRATEDIGGER_POSTGRES_URL`` production: SQLAlchemy URL of Postgres
                            (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``)
``CRATEDIGGER_REDIS_URL``   production: Redis ``host:port`` (default ``127.0.0.1:6379``)
``CRATEDIGGER_FEAST_PROJECT`` production: the Feast project in the shared registry and online
                            store (default ``cratedigger``); one per deployment sharing Postgres
                            and Redis
``CRATEDIGGER_AUDIO_BACKEND`` ``musicnn`` (default), ``openl3`` or ``dsp``: the audio model the
                            recommender uses (attributes, audio -> CF)
``CRATEDIGGER_AUDIO_COMPARE`` other backends embedded beside it, each into its own Milvus
                            collection and reported side by side: ``installed`` (default: every
                            other installed backend), ``none``, or a comma list such as ``dsp``
``CRATEDIGGER_AUDIO_DIR``   the audio folder the sensor watches (default: the sample's clips)
``CRATEDIGGER_API_HOST``    the address ``cratedigger serve`` binds (default ``127.0.0.1``)
``CRATEDIGGER_API_PORT``    its port (default 8000; 0 picks a free one)
``CRATEDIGGER_API_REFRESH_SECONDS`` how often the server looks for newly published vectors,
                            playlists and catalogue changes (default 2)
``CRATEDIGGER_ENGINE``      ``duckdb`` (default) or ``spark``: the engine of the raw landing, row
                            rules, quarantine and golden tables, their GX suites and Feast's
                            offline store (``warehouse.spark_engine``: Parquet under
                            ``<data dir>/spark``, read by DuckDB downstream as views)
``SPARK_MASTER``            the Spark master the Spark engine connects to (default ``local[2]``;
                            ``local[N]``, ``local[*]``, ``spark://host:port``, ``yarn``,
                            ``k8s://...``)
``CRATEDIGGER_CF_ALS``      ``implicit`` (default) or ``mllib``: who fits the ALS source (Spark
                            MLlib's implicit ALS on ``SPARK_MASTER``, the same model contract)
``CRATEDIGGER_EXECUTOR``    ``in_process`` (default: one step at a time in the ``cratedigger run``
                            process) or ``multiprocess`` (independent steps in parallel processes,
                            the pools keeping single-writer stores safe)
``CRATEDIGGER_MAX_CONCURRENT`` steps the multiprocess executor runs at once (default 2)
``CRATEDIGGER_EXPERIMENT``  the A/B variants of the playlists: ``default`` (control 80%, wider
                            exploration 20%), ``none`` (one variant) or a JSON file / inline JSON
                            object (``recommend.variants``)
==========================  ===================================================================
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("embedded", "production")
SOURCES = ("sample", "hetrec", "generic")
AUDIO_BACKENDS = ("musicnn", "openl3", "dsp")
ENGINES = ("duckdb", "spark")
EXECUTORS = ("in_process", "multiprocess")
CF_ALS = ("implicit", "mllib")
DEFAULT_SPARK_MASTER = "local[2]"
SPARK_MASTER_PATTERN = r"local(\[(\*|\d+)(,\d+)?\])?|(spark|k8s|mesos)://\S+|yarn"


class SettingsError(ValueError):
    """A configuration value is wrong. The message names the key and the fix."""


@dataclass(frozen=True)
class Settings:
    """Resolved configuration for one process."""

    profile: str
    data_dir: Path
    source: str
    source_path: str | None
    sample_scale: float
    milvus_uri: str
    artifact_uri: str
    postgres_url: str
    redis_url: str
    audio_backend: str
    audio_folder: str | None = None
    audio_compare: str = "installed"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_refresh_seconds: float = 2.0
    experiment: str = ""  # JSON of the experiment (recommend.variants); "" = the default
    engine: str = "duckdb"
    spark_master: str = DEFAULT_SPARK_MASTER
    executor: str = "in_process"
    max_concurrent: int = 2
    cf_als: str = "implicit"
    feast_project: str = "cratedigger"

    @property
    def spark_dir(self) -> Path:
        """Where the Spark engine keeps its Parquet tables (``raw/``, ``golden/``)."""
        return self.data_dir / "spark"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def gx_root(self) -> Path:
        return self.data_dir / "gx"

    @property
    def data_docs_index(self) -> Path:
        return self.gx_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"

    @property
    def sample_dir(self) -> Path:
        return self.data_dir / "sample"

    @property
    def feature_dir(self) -> Path:
        return self.data_dir / "features"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def feature_repo(self) -> Path:
        return PROJECT_ROOT / "feature_repo"

    @property
    def audio_dir(self) -> Path:
        """The folder the audio sensor watches: the sample's synthesised clips by default."""
        if self.audio_folder:
            return Path(self.audio_folder).expanduser().resolve()
        return self.sample_dir / "audio" if self.source == "sample" else self.data_dir / "audio"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


# What third-party libraries read from the environment: models load from installed packages
# only (no hub), musicnn needs legacy Keras, TensorFlow and GX stay quiet.
RUNTIME_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TF_USE_LEGACY_KERAS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GX_ANALYTICS_ENABLED": "false",
    # Spark's Python workers run this interpreter (its packages: Feast's Spark engine, UDFs);
    # PySpark reads only the environment variable for that
    "PYSPARK_PYTHON": sys.executable,
}
FORCED = ("HF_HUB_OFFLINE",)  # no network at run time, whatever the caller set
FEAST_DATA_DIR_ENV = "CRATEDIGGER_FEAST_DATA_DIR"


def apply_runtime_environment() -> None:
    """Set :data:`RUNTIME_ENVIRONMENT` (before the libraries that read it are imported)."""
    for key, value in RUNTIME_ENVIRONMENT.items():
        if key in FORCED:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)


def dagster_home() -> Path | None:
    """``DAGSTER_HOME`` when set."""
    home = os.environ.get("DAGSTER_HOME")
    return Path(home) if home else None


def use_dagster_home(path: Path) -> None:
    """Point this process (and the Dagster runs it starts) at ``path``."""
    os.environ["DAGSTER_HOME"] = str(path)


def warehouse_engine(env: dict[str, str] | None = None) -> str:
    """``CRATEDIGGER_ENGINE`` alone (``duckdb`` or ``spark``), checked: for the ``feast`` CLI's
    ``feature_repo/``, whose sources follow the engine."""
    return _choice(
        dict(os.environ if env is None else env), "CRATEDIGGER_ENGINE", "duckdb", ENGINES
    )


def feast_data_dir() -> str:
    """The Feast data directory that ``feature_repo/`` reads (set by the feature store client and
    by whoever runs the ``feast`` CLI)."""
    value = os.environ.get(FEAST_DATA_DIR_ENV)
    if not value:
        raise SettingsError(
            f"{FEAST_DATA_DIR_ENV} is not set: export it to the directory holding the feature "
            f"Parquet files and the registry (e.g. `export {FEAST_DATA_DIR_ENV}=$PWD/data/"
            "features`), then rerun the feast command."
        )
    return value


def _choice(env: dict[str, str], key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(key, default).strip().lower() or default
    if value not in allowed:
        raise SettingsError(
            f"{key}={value!r} is not valid; use one of {', '.join(allowed)} "
            f"(or unset it for the default {default!r})."
        )
    return value


def _audio_compare(env: dict[str, str]) -> str:
    key = "CRATEDIGGER_AUDIO_COMPARE"
    value = env.get(key, "installed").strip().lower() or "installed"
    if value in ("installed", "none"):
        return value
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in AUDIO_BACKENDS]
    if unknown or not names:
        raise SettingsError(
            f"{key}={value!r} names unknown backends {unknown}; use 'installed', 'none' or a "
            f"comma list of {', '.join(AUDIO_BACKENDS)} (e.g. {key}=dsp)."
        )
    return ",".join(dict.fromkeys(names))


MAX_SAMPLE_SCALE = 5000.0
DEFAULT_API_PORT = 8000


def _api_host(env: dict[str, str]) -> str:
    key = "CRATEDIGGER_API_HOST"
    value = env.get(key, "").strip() or "127.0.0.1"
    if any(c.isspace() or c in "/?#@" for c in value):
        raise SettingsError(
            f"{key}={value!r} is not a host address; use an IP such as 127.0.0.1 (loopback, the "
            "default) or 0.0.0.0 (every interface), or a host name."
        )
    return value


def _api_port(env: dict[str, str]) -> int:
    key = "CRATEDIGGER_API_PORT"
    raw = env.get(key, "").strip() or str(DEFAULT_API_PORT)
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise SettingsError(
            f"{key}={raw!r} must be a port number in 0..65535 such as {DEFAULT_API_PORT} "
            "(0 picks a free port)."
        )
    return port


def _api_refresh_seconds(env: dict[str, str]) -> float:
    key = "CRATEDIGGER_API_REFRESH_SECONDS"
    raw = env.get(key, "").strip() or "2"
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0.05 <= seconds <= 3600:
        raise SettingsError(f"{key}={raw!r} must be a number of seconds in [0.05, 3600] such as 2.")
    return seconds


def _experiment(env: dict[str, str]) -> str:
    """The experiment as checked JSON ("" for the default): ``default``, ``none``, a JSON
    file or an inline JSON object."""
    key = "CRATEDIGGER_EXPERIMENT"
    raw = env.get(key, "").strip()
    if raw.lower() in ("", "default"):
        return ""
    from recommend.variants import SINGLE_VARIANT, VariantError, parse_experiment

    if raw.lower() == "none":
        return parse_experiment(SINGLE_VARIANT).to_json()
    text = raw
    if not raw.startswith("{"):
        path = Path(raw).expanduser()
        if not path.is_file():
            raise SettingsError(
                f"{key}={raw!r} is neither a JSON file nor a JSON object; use 'default', "
                "'none', the path of a JSON file or an object such as "
                '\'{"name": "x", "variants": [{"name": "control", "share": 1}]}\'.'
            )
        text = path.read_text()
    try:
        return parse_experiment(text).to_json()
    except VariantError as error:
        raise SettingsError(f"{key}: {error}") from error


def spark_master(env: dict[str, str] | None = None) -> str:
    """``SPARK_MASTER`` (default ``local[2]``), checked to name a Spark master."""
    env = dict(os.environ if env is None else env)
    value = env.get("SPARK_MASTER", "").strip() or DEFAULT_SPARK_MASTER
    if not re.fullmatch(SPARK_MASTER_PATTERN, value):
        raise SettingsError(
            f"SPARK_MASTER={value!r} is not a Spark master; use local[2] (the default), "
            "local[*], spark://host:7077, yarn or k8s://https://host:443."
        )
    return value


def _feast_project(env: dict[str, str]) -> str:
    value = env.get("CRATEDIGGER_FEAST_PROJECT", "").strip() or "cratedigger"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_]*", value):
        raise SettingsError(
            f"CRATEDIGGER_FEAST_PROJECT={value!r} is not a Feast project name; use letters, "
            "digits and '_' (not starting with '_'), such as cratedigger_staging."
        )
    return value


def _max_concurrent(env: dict[str, str]) -> int:
    raw = env.get("CRATEDIGGER_MAX_CONCURRENT", "").strip() or "2"
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise SettingsError(
            f"CRATEDIGGER_MAX_CONCURRENT={raw!r} must be a whole number from 1 to 64, such as 2 "
            "(the steps the multiprocess executor runs at once)."
        )
    return int(raw)


MILVUS_SCHEMES = ("http://", "https://", "tcp://", "unix:")


def _check_data_dir(data_dir: Path) -> None:
    for parent in [data_dir, *data_dir.resolve().parents]:
        if parent.exists() and not parent.is_dir():
            raise SettingsError(
                f"CRATEDIGGER_DATA_DIR={str(data_dir)!r} lies under {str(parent)!r}, which is a "
                "file; use a directory path."
            )


def _milvus_uri(env: dict[str, str], data_dir: Path) -> str:
    uri = env.get("MILVUS_URI") or str(data_dir.resolve() / "milvus.db")
    if not (uri.endswith(".db") or uri.startswith(MILVUS_SCHEMES)):
        raise SettingsError(
            f"MILVUS_URI={uri!r} is neither a Milvus Lite file nor a server URL; use a path "
            "ending '.db' or a URL such as http://127.0.0.1:19530, or unset it for Milvus Lite."
        )
    return uri


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read the profile from environment variables (or ``env``) and check every value."""
    env = dict(os.environ if env is None else env)
    profile = _choice(env, "CRATEDIGGER_PROFILE", "embedded", PROFILES)
    source = _choice(env, "CRATEDIGGER_SOURCE", "sample", SOURCES)
    audio_backend = _choice(env, "CRATEDIGGER_AUDIO_BACKEND", "musicnn", AUDIO_BACKENDS)
    data_dir = Path(env.get("CRATEDIGGER_DATA_DIR") or PROJECT_ROOT / "data").expanduser()
    source_path = env.get("CRATEDIGGER_SOURCE_PATH") or None
    if source != "sample" and not source_path:
        raise SettingsError(
            f"CRATEDIGGER_SOURCE={source} needs CRATEDIGGER_SOURCE_PATH, the directory holding "
            "its files (e.g. CRATEDIGGER_SOURCE_PATH=../shared/data/hetrec2011-lastfm-2k)."
        )
    raw_scale = env.get("CRATEDIGGER_SAMPLE_SCALE", "1.0")
    try:
        sample_scale = float(raw_scale)
    except ValueError:
        sample_scale = -1.0
    if not (0 < sample_scale <= MAX_SAMPLE_SCALE):
        raise SettingsError(
            f"CRATEDIGGER_SAMPLE_SCALE={raw_scale!r} must be a number in (0, {MAX_SAMPLE_SCALE}] "
            "such as 1 or 10 (scale 1 is about 48k listen events)."
        )
    _check_data_dir(data_dir)
    milvus_uri = _milvus_uri(env, data_dir)
    audio_folder = env.get("CRATEDIGGER_AUDIO_DIR") or None
    if audio_folder and not Path(audio_folder).expanduser().is_dir():
        raise SettingsError(
            f"CRATEDIGGER_AUDIO_DIR={audio_folder!r} is not a directory; use the folder of audio "
            "files to watch, or unset it for the sample's clips."
        )
    artifact_uri = env.get("CRATEDIGGER_ARTIFACT_URI") or str(data_dir.resolve() / "artifacts")
    return Settings(
        profile=profile,
        data_dir=data_dir.resolve(),
        source=source,
        source_path=source_path,
        sample_scale=sample_scale,
        milvus_uri=milvus_uri,
        artifact_uri=artifact_uri,
        postgres_url=env.get(
            "CRATEDIGGER_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        redis_url=env.get("CRATEDIGGER_REDIS_URL", "127.0.0.1:6379"),
        audio_backend=audio_backend,
        audio_folder=audio_folder,
        audio_compare=_audio_compare(env),
        api_host=_api_host(env),
        api_port=_api_port(env),
        api_refresh_seconds=_api_refresh_seconds(env),
        experiment=_experiment(env),
        engine=warehouse_engine(env),
        spark_master=spark_master(env),
        executor=_choice(env, "CRATEDIGGER_EXECUTOR", "in_process", EXECUTORS),
        max_concurrent=_max_concurrent(env),
        cf_als=_choice(env, "CRATEDIGGER_CF_ALS", "implicit", CF_ALS),
        feast_project=_feast_project(env),
    )


def load_settings_for_data_dir(data_dir: str | Path) -> Settings:
    """:func:`load_settings` with ``CRATEDIGGER_DATA_DIR`` replaced by ``data_dir`` (a command's
    ``--data-dir``); paths derived from it (Milvus file, artifacts) follow unless set."""
    env = dict(os.environ)
    env["CRATEDIGGER_DATA_DIR"] = str(data_dir)
    return load_settings(env)
