"""The code location loads, and every asset carries what the UI needs."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import pytest

from orchestration.settings import SettingsError, load_settings


def test_definitions_load_and_every_asset_is_documented() -> None:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = list(graph.get_all_asset_keys())
    assert len(keys) >= 20
    for key in keys:
        node = graph.get(key)
        assert node.group_name and node.group_name != "default", key
        assert node.description, key
        assert node.owners, key
        assert any(t.startswith("dagster/kind/") for t in node.tags), key
    golden = [k for k in keys if k.path[0] == "golden"]
    assert {"users", "artists", "listens", "items"} <= {k.path[-1] for k in golden}
    for key in golden:
        assert graph.get(key).legacy_freshness_policy is None
        assert graph.get(key).freshness_policy is not None, key


def test_every_golden_table_has_a_blocking_suite_check() -> None:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    check_keys = graph.asset_check_keys
    golden = [k for k in graph.get_all_asset_keys() if k.path[0] == "golden"]
    for key in golden:
        names = {c.name for c in check_keys if c.asset_key == key}
        assert "expectations" in names, key
    blocking = [graph.get_check_spec(c).blocking for c in check_keys if c.name == "expectations"]
    assert blocking and all(blocking)


def test_dagster_definitions_validate_cli(tmp_path) -> None:
    import os

    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"CRATEDIGGER_PROFILE": "staging"}, "CRATEDIGGER_PROFILE"),
        ({"CRATEDIGGER_SOURCE": "spotify"}, "CRATEDIGGER_SOURCE"),
        ({"CRATEDIGGER_SOURCE": "hetrec"}, "CRATEDIGGER_SOURCE_PATH"),
        ({"CRATEDIGGER_SAMPLE_SCALE": "lots"}, "CRATEDIGGER_SAMPLE_SCALE"),
        ({"CRATEDIGGER_AUDIO_BACKEND": "vggish"}, "CRATEDIGGER_AUDIO_BACKEND"),
        ({"CRATEDIGGER_AUDIO_COMPARE": "dsp,vggish"}, "CRATEDIGGER_AUDIO_COMPARE"),
        ({"CRATEDIGGER_SAMPLE_SCALE": "inf"}, "CRATEDIGGER_SAMPLE_SCALE"),
        ({"CRATEDIGGER_SAMPLE_SCALE": "1e9"}, "CRATEDIGGER_SAMPLE_SCALE"),
        ({"MILVUS_URI": "notauri"}, "MILVUS_URI"),
        ({"CRATEDIGGER_AUDIO_DIR": "/no/such/folder"}, "CRATEDIGGER_AUDIO_DIR"),
        ({"CRATEDIGGER_DATA_DIR": "/etc/hostname/data"}, "CRATEDIGGER_DATA_DIR"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(env: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    message = str(error.value)
    assert key in message
    assert "use " in message or "needs" in message or "must be" in message


def test_audio_compare_lists_the_backends_to_embed_beside_the_default(tmp_path) -> None:
    from embeddings.audio import available_backends
    from orchestration.resources import build_resources

    def backends(**env: str) -> list[str]:
        settings = load_settings({"CRATEDIGGER_DATA_DIR": str(tmp_path), **env})
        return build_resources(settings)["paths"].audio_backends

    assert backends() == list(dict.fromkeys(["musicnn", *available_backends()]))
    assert backends(CRATEDIGGER_AUDIO_COMPARE="none") == ["musicnn"]
    assert backends(CRATEDIGGER_AUDIO_BACKEND="dsp", CRATEDIGGER_AUDIO_COMPARE="openl3,dsp") == [
        "dsp",
        "openl3",
    ]


def test_a_postgres_password_with_quotes_keeps_dagster_yaml_valid(tmp_path) -> None:
    import yaml

    from orchestration.instance import dagster_yaml

    url = 'postgresql+psycopg://user:pa"ss\\word@127.0.0.1:5432/test'
    settings = load_settings(
        {
            "CRATEDIGGER_DATA_DIR": str(tmp_path),
            "CRATEDIGGER_PROFILE": "production",
            "CRATEDIGGER_POSTGRES_URL": url,
        }
    )
    parsed = yaml.safe_load(dagster_yaml(settings))
    assert parsed["storage"]["postgres"]["postgres_url"].endswith('pa"ss\\word@127.0.0.1:5432/test')


def test_default_profile_is_embedded(tmp_path) -> None:
    settings = load_settings({"CRATEDIGGER_DATA_DIR": str(tmp_path)})
    assert settings.profile == "embedded"
    assert settings.milvus_uri.endswith("milvus.db")
    assert settings.warehouse_path == tmp_path.resolve() / "warehouse.duckdb"
    assert dg.__version__.startswith("1.13")


def test_cli_where_and_bad_config(tmp_path) -> None:
    import os

    env = {**os.environ, "CRATEDIGGER_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "where"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and str(tmp_path / "warehouse.duckdb") in done.stdout
    env["CRATEDIGGER_PROFILE"] = "staging"
    bad = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "where"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "CRATEDIGGER_PROFILE" in bad.stderr
    assert "not materialised yet" in done.stdout and "every asset materialised" not in done.stdout
    env.pop("CRATEDIGGER_PROFILE")
    for argv in (["playlist", "u000001"], ["playlist", "u000001", "--week", "banana"]):
        missing = subprocess.run(
            [sys.executable, "-m", "orchestration.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert missing.returncode == 1, argv
        assert missing.stderr.startswith("cratedigger playlist: ") and "Traceback" not in (
            missing.stderr
        )


# ---------------------------------------------------------------------------------- layout
PROJECT = __import__("pathlib").Path(__file__).resolve().parent.parent
PURE_PACKAGES = ("artifacts", "embeddings", "evaluation", "featurestore", "recommend", "quality")
PURE_PACKAGES += ("sources", "warehouse")
CODE = ("artifacts", "assets", "embeddings", "evaluation", "feature_repo", "featurestore")
CODE += ("orchestration", "quality")
CODE += ("recommend", "sources", "examples")


def _imported_modules(path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_pure_packages_never_import_dagster() -> None:
    offenders = {
        str(path.relative_to(PROJECT)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] in ("dagster", "assets")
        )
        for package in PURE_PACKAGES
        for path in (PROJECT / package).rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_no_asset_module_imports_another() -> None:
    from orchestration.definitions import ASSET_MODULES

    modules = {m.__name__ for m in ASSET_MODULES} | {"assets.checks"}
    for module in modules:
        path = PROJECT / (module.replace(".", "/") + ".py")
        others = _imported_modules(path) & (modules - {module})
        assert not others, f"{module} imports the asset module(s) {sorted(others)}"


def test_the_environment_is_read_in_settings_only() -> None:
    import re

    pattern = re.compile(r"\bos\.(environ|getenv|putenv)\b")
    readers = sorted(
        str(path.relative_to(PROJECT))
        for package in CODE
        for path in (PROJECT / package).rglob("*.py")
        if pattern.search(path.read_text()) and path != PROJECT / "orchestration" / "settings.py"
    )
    assert not readers, f"read or set the environment outside orchestration/settings.py: {readers}"
