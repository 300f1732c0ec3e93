"""How predictions are judged.

Example:
    >>> rmse([1, 2, 3], [1, 2, 5]), mae([1, 2, 3], [1, 2, 5])
    (1.1547005383792515, 0.6666666666666666)
"""

from __future__ import annotations

import numpy as np


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.mean(np.abs(diff)))
