"""Feast online responses as DataFrames: a column per feature, a status per row.

Pure code over Feast's ``OnlineResponse``; :meth:`featurestore.client.FeatureStoreClient.
online_features` is the caller.

Row statuses: ``PRESENT`` (every feature has a value), ``NOT_FOUND`` (the key is in no requested
view), ``PARTIAL`` (anything between). Per feature, Feast's field status (``NOT_FOUND``,
``NULL_VALUE``, ``OUTSIDE_MAX_AGE``), made consistent across online stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd


def response_frame(
    response: Any, entity_key: str, keys: Sequence[str], refs: Sequence[str], dtypes: Mapping
) -> pd.DataFrame:
    """One row per key in input order: key, features, ``status``, ``feature_status``.

    Parameters
    ----------
    response : feast.online_response.OnlineResponse
        The answer of ``FeatureStore.get_online_features`` for ``keys``.
    entity_key : str
        Join key column name, e.g. ``user_id``.
    keys : sequence of str
        The entity keys asked for, in order.
    refs : sequence of str
        The ``view:feature`` references asked for.
    dtypes : mapping
        Feast dtype name (``Int64``, ``UnixTimestamp``, ...) per feature name.

    Returns
    -------
    pandas.DataFrame
        ``entity_key``, one column per feature, ``status`` and ``feature_status`` (dict of the
        features that are not ``PRESENT`` -> their status).
    """
    feature_columns = [r.split(":")[1] for r in refs]
    details = field_statuses(response, len(keys), feature_columns)
    values = response.to_dict()
    columns: dict[str, Any] = {entity_key: list(keys)}
    for column in feature_columns:
        columns[column] = typed_values(values[column], dtypes.get(column))
    columns["status"] = [row_status(detail) for detail in details]
    columns["feature_status"] = [
        {name: status for name, status in detail.items() if status != "PRESENT"}
        for detail in details
    ]
    return pd.DataFrame(columns)


def field_statuses(response: Any, rows: int, feature_columns: Sequence[str]) -> list[dict]:
    """Per row, the status of each feature (``PRESENT``, ``NOT_FOUND``, ...)."""
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    names = list(response.proto.metadata.feature_names.val)
    results = dict(zip(names, response.proto.results, strict=True))
    return [
        {name: field_status(results[name], row, FieldStatus) for name in feature_columns}
        for row in range(rows)
    ]


def row_status(detail: Mapping[str, str]) -> str:
    """``PRESENT``, ``NOT_FOUND`` or ``PARTIAL`` from the statuses of one row's features."""
    if all(status == "PRESENT" for status in detail.values()):
        return "PRESENT"
    if all(status == "NOT_FOUND" for status in detail.values()):
        return "NOT_FOUND"
    return "PARTIAL"


def typed_values(values: Sequence[Any], dtype: str | None) -> Any:
    """A feature's values with pandas types: nullable ``Int64``, UTC timestamps, else as is."""
    if dtype in ("Int32", "Int64"):
        return pd.array(values, dtype="Int64")
    if dtype == "UnixTimestamp":
        return pd.to_datetime(pd.Series(values, dtype=object), utc=True)
    return values


def field_status(result: Any, row: int, field_status_enum: Any) -> str:
    """Feast's status of one value, made consistent across online stores.

    Feast's Redis store reports ``PRESENT`` with an empty value and a zero timestamp for keys
    it does not hold (SQLite reports ``NOT_FOUND``); an empty value is reported here as
    ``NOT_FOUND`` when its timestamp is zero, else as ``NULL_VALUE``.
    """
    status = field_status_enum.Name(result.statuses[row])
    if status == "PRESENT" and result.values[row].WhichOneof("val") is None:
        stamp = result.event_timestamps[row] if len(result.event_timestamps) > row else None
        return "NOT_FOUND" if stamp is None or stamp.seconds == 0 else "NULL_VALUE"
    return status
