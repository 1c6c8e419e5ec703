"""Models named by a Hugging Face hub id (Qwen/Qwen2.5-Math-7B) or by a local folder.

`resolve_model(value, field)` gives a local folder: a folder as it is; a hub id through huggingface_hub,
its local cache first (HF_HUB_CACHE), downloading only when online. Offline (HF_HUB_OFFLINE) with no
cached copy, or a value that is neither, is a one-line UserError naming the field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.core.errors import UserError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_TRUE = {"1", "ON", "YES", "TRUE"}


def is_hub_id(value: str) -> bool:
    """`org/name` that is not a local path (Qwen/Qwen2.5-Math-7B; not ./x, /x, ~/x or an existing path)."""
    return bool(_HUB_ID.match(value)) and not Path(value).exists()


def hub_cache() -> str:
    """The hub cache folder huggingface_hub reads: HF_HUB_CACHE, else HF_HOME/hub, else its default
    (~/.cache/huggingface/hub), read at call time."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE") or (
        str(Path(os.environ["HF_HOME"]) / "hub") if "HF_HOME" in os.environ else constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def cached_snapshot(repo_id: str) -> str | None:
    """The local snapshot folder of a hub model in the cache, or None when it is not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(repo_id, cache_dir=hub_cache(), local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None


def resolve_model(value: str, field: str) -> str:
    """A local model folder for `value` (a folder, or a hub id: cache first, then a download when online)."""
    if Path(value).expanduser().is_dir():
        return str(Path(value).expanduser())
    if not is_hub_id(value):
        raise UserError(f"{field}: {value} is not a model folder (config.json + weights), nor a hub id "
                        "like Qwen/Qwen2.5-Math-7B")
    cached = cached_snapshot(value)
    if cached is not None:
        return cached
    if hub_offline():
        raise UserError(f"{field}: hub model {value} is not in the Hugging Face cache ({hub_cache()}) and "
                        "HF_HUB_OFFLINE is set: download it where there is network (`hf download "
                        f"{value}`) into that cache, or unset HF_HUB_OFFLINE")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(value, cache_dir=hub_cache())
    except Exception as e:  # noqa: BLE001 - no network, unknown repo, gated model: one line naming the field
        raise UserError(f"{field}: hub model {value} is not in the Hugging Face cache ({hub_cache()}) and "
                        f"could not be downloaded ({type(e).__name__}); give a local folder, or set "
                        "HF_HUB_OFFLINE=1 to use the cache only") from None
