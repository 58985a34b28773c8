"""Record which warehouse tables each asset reads, to compare with the deps it declares."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

from orchestration.resources import Warehouse

_TABLE = re.compile(r"\b(raw|golden|recommend)\.([a-z_][a-z0-9_]*)\b", re.IGNORECASE)
_RECOMMEND_ASSETS = {"similar_artists": "similar_artists_table"}
_READS: dict[str, dict[dg.AssetKey, set[dg.AssetKey]]] = defaultdict(lambda: defaultdict(set))


def tables_in(sql: str) -> set[dg.AssetKey]:
    """Asset keys of the warehouse tables an SQL statement names (quarantine excluded)."""
    keys = set()
    for schema, table in _TABLE.findall(sql):
        schema, table = schema.lower(), table.lower()
        if table == "quarantine":
            continue
        if schema == "recommend":
            keys.add(dg.AssetKey(_RECOMMEND_ASSETS.get(table, table)))
        else:
            keys.add(dg.AssetKey([schema, table]))
    return keys


class _Recorder:
    def __init__(self, connection: Any, sink) -> None:
        self._connection = connection
        self._sink = sink

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self._sink(sql)
        return self._connection.execute(sql, *args, **kwargs)

    def sql(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self._sink(sql)
        return self._connection.sql(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class RecordingWarehouse(Warehouse):
    """The real warehouse; every statement is attributed to the assets of the running step."""

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        with super().connect(read_only=read_only) as connection:
            yield _Recorder(connection, self._record)

    def _record(self, sql: str) -> None:
        try:
            context = dg.OpExecutionContext.get()
        except Exception:  # noqa: BLE001 - outside a step (e.g. a sensor): nothing to attribute
            context = None
        if context is None:
            return
        for key in context.selected_asset_keys:
            _READS[self.path][key] |= tables_in(sql)

    def reads(self) -> dict[dg.AssetKey, set[dg.AssetKey]]:
        return {key: set(tables) for key, tables in _READS[self.path].items()}
