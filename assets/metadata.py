"""Standard Dagster metadata for frames and figures (row count, schema, preview, plots)."""

import base64
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

PREVIEW_ROWS = 10


def frame_metadata(frame: pd.DataFrame, preview_rows: int = PREVIEW_ROWS) -> dict[str, Any]:
    """``dagster/row_count``, ``dagster/column_schema`` and a markdown preview of ``frame``."""
    columns = [
        dg.TableColumn(name=str(name), type=str(dtype)) for name, dtype in frame.dtypes.items()
    ]
    preview = frame.head(preview_rows).copy()
    for column in preview.columns:
        if preview[column].dtype != object:
            continue
        if preview[column].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            preview[column] = preview[column].map(
                lambda v: f"[{len(v)} values]" if isinstance(v, (list, tuple, np.ndarray)) else v
            )
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "preview": dg.MetadataValue.md(
            preview.to_markdown(index=False) if len(frame) else "_empty_"
        ),
    }


def png_markdown(png: bytes, title: str = "plot") -> dg.MetadataValue:
    """A PNG image inlined into markdown metadata (renders in the asset's metadata panel)."""
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def floats(values: dict[str, Any]) -> dict[str, dg.MetadataValue]:
    """Numbers as float metadata (so Dagster plots them across materialisations)."""
    out: dict[str, dg.MetadataValue] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = dg.MetadataValue.float(float(value))
    return out


def too_small(context: dg.AssetExecutionContext, error: Exception) -> dg.MaterializeResult:
    """What an evaluation reports when the data is too small for it: a warning, no failure,
    so the playlists downstream still build."""
    context.log.warning(f"too small to evaluate: {error}")
    return dg.MaterializeResult(
        metadata={"evaluated": False, "reason": dg.MetadataValue.text(f"too small: {error}")}
    )
