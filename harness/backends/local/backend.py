"""The embedded CPU backend behind the Backend interface (harness.backends)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.core import results

if TYPE_CHECKING:
    from harness.config.runspec import RunSpec


class LocalBackend:
    name = "local"

    def check(self, exp, for_run: bool = True) -> None:
        """Nothing beyond the schema: the embedded backend has no external dependency."""

    def shared_key(self, spec: RunSpec, cache_dir: Path) -> str | None:
        from harness.embedded.warmstart import warm_start_path, warm_start_ready

        return None if warm_start_ready(spec, Path(cache_dir)) else str(warm_start_path(spec, cache_dir))

    def prepare(self, spec: RunSpec, cache_dir: Path, progress=None) -> None:
        from harness.embedded.warmstart import ensure_warm_start

        ensure_warm_start(spec, Path(cache_dir), progress=progress)

    def inputs(self, spec: RunSpec, cache_dir: Path) -> dict:
        from harness.embedded.warmstart import warm_start_record

        return warm_start_record(spec, Path(cache_dir))

    def train(self, spec: RunSpec, run_dir: Path, cache_dir: Path, progress=None) -> None:
        from harness.backends.local.trainer import train

        train(spec, Path(run_dir), Path(cache_dir), progress=progress)

    def has_checkpoint(self, run_dir: Path) -> bool:
        return (Path(run_dir) / results.CKPT_DIR / "latest.pt").exists()
