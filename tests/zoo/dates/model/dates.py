"""Dates as numbers: days since 2020-01-01, a function of the team's own package."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

ORIGIN = pd.Timestamp("2020-01-01")


def days_since_origin(frame: Any) -> np.ndarray:
    """Each column of dates (text or datetime) as days since ORIGIN."""
    data = pd.DataFrame(frame)
    out = [(pd.to_datetime(data[c]) - ORIGIN).dt.days.to_numpy(np.float64) for c in data]
    return np.column_stack(out)
