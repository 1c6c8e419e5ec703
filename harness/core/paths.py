"""Paths read at call time (never frozen at import): the warm-start cache."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache() -> Path:
    """The warm-start cache: $NGRPO_HARNESS_CACHE, else ~/.cache/ngrpo-harness (read now, not at import)."""
    return Path(os.environ.get("NGRPO_HARNESS_CACHE", Path.home() / ".cache" / "ngrpo-harness"))
