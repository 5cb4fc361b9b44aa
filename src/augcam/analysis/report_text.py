"""Numbers and tables as the report prints them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from augcam.analysis.run_tables import augmentation_label


def fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def html_table(frame: pd.DataFrame, digits: int = 4) -> dict:
    return {
        "columns": [str(c) for c in frame.columns],
        "rows": [[fmt(v, digits) for v in row] for row in frame.itertuples(index=False)],
    }


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the control marked in its augmentation column (for display only)."""
    return frame.assign(augmentation=frame["augmentation"].map(augmentation_label))
