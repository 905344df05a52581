"""Applying per-label score offsets: what the runtime and the calibration fit both need.

Kept apart from :mod:`models.calibrate` (which fits offsets and runs the
classifier to do so) so that :mod:`models.runtime` does not import it back.
"""

from __future__ import annotations

import numpy as np

FLOOR = 1e-12
"""Smallest probability taken before a log."""


def apply_offsets(probs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Label indices ``argmax(log p + offsets)`` per row of ``probs``."""
    return np.asarray(np.argmax(np.log(np.maximum(probs, FLOOR)) + offsets, axis=-1))
