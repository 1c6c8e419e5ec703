"""Provenance: which code, libraries and inputs made a run (issue 19).

Every run's status.json carries a `provenance` record (written when the run starts, kept by every
later status write, see harness.core.results.write_status):

    code       the code id: a hash of the source that makes results (every .py file of `algorithms/`
               and `harness/` except `harness/report/` and `harness/cli/`, which only read results or
               parse the command line) and of the experiment's plugin files. It is what decides
               whether a finished run is stale: `harness run` compares it with the current code's.
    source     that source hash alone; `plugins`: {plugin: sha256 of its file}
    commit     the git commit of the checkout (None outside a git checkout), `dirty` (uncommitted
               changes to what the code id covers, or pyproject.toml) and `diff_sha256` (a hash of
               `git diff HEAD` over those paths and of their untracked files, when dirty)
    version    the installed package's version (a wheel install has no commit: version + source)
    versions   torch, transformers, verl, vllm, math-verify, numpy and python (None: not installed)
    machine    the CPU model, its vector extensions (avx2, avx512f, ...) and the OS: float results, and so
               a warm start trained for 2000 steps, can differ between CPUs with the same code and libraries
    threads    torch's intra-op thread count in the run
    warm_start {sha256 of its weights, cache key} when the run starts from a warm start
    step0      the run's first evaluation (pass@1 and pass@k_max per benchmark), once it is done

`resumed_by` lists the code ids that resumed a run its first code started (only with
`harness run --accept-stale`): such a run was made by more than one version of the code.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout (or site-packages) holding algorithms/, harness/
PACKAGES = ("algorithms", "harness")
NOT_RESULT_CODE = ("harness/report/", "harness/cli/")  # read results / parse arguments: make no number
GIT_PATHS = ("algorithms", "harness", "pyproject.toml",  # what the code id covers, as git pathspecs
             *(f":(exclude){p.rstrip('/')}" for p in NOT_RESULT_CODE))
LIBRARIES = ("torch", "transformers", "verl", "vllm", "math-verify", "numpy")
DIST = "ngrpo-harness"


def source_files(root: Path = ROOT) -> list[Path]:
    """The .py files whose code makes results, sorted, relative to root."""
    out = []
    for pkg in PACKAGES:
        for p in sorted((root / pkg).rglob("*.py")):
            rel = p.relative_to(root).as_posix()
            if "__pycache__" not in rel and not rel.startswith(NOT_RESULT_CODE):
                out.append(p.relative_to(root))
    return out


def hash_files(root: Path, files: list[Path]) -> str:
    """sha256 over (relative name, contents) of every file, in order; 16 hex digits."""
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.as_posix().encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def source_hash(root: Path = ROOT) -> str:
    """The hash of the source that makes results (cached: the code does not change under a process)."""
    return hash_files(root, source_files(root))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def plugin_hashes(plugins: list[str] | None) -> dict[str, str]:
    """{plugin: sha256 of its file} for .py paths and importable module names (their file)."""
    out = {}
    for p in plugins or []:
        if p.endswith(".py"):
            path = Path(p)
        else:
            spec = importlib.util.find_spec(p)
            path = Path(spec.origin) if spec is not None and spec.origin else None
        out[p] = file_sha256(path) if path is not None and path.exists() else "missing"
    return out


def code_id(plugins: list[str] | None = None) -> str:
    """The id of the code that makes a run: the source hash, combined with its plugin files' hashes."""
    ph = plugin_hashes(plugins)
    if not ph:
        return source_hash()
    joined = source_hash() + "".join(f"\n{k}={v}" for k, v in sorted(ph.items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.decode(errors="replace") if r.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def git_state() -> dict:
    """{commit, dirty, diff_sha256} of the checkout; commit None when the code is not a git checkout."""
    head = _git("rev-parse", "HEAD") if (ROOT / ".git").exists() else None
    if head is None:
        return {"commit": None, "dirty": None, "diff_sha256": None}
    status = _git("status", "--porcelain", "--", *GIT_PATHS) or ""
    dirty = bool(status.strip())
    if not dirty:
        return {"commit": head.strip(), "dirty": False, "diff_sha256": None}
    h = hashlib.sha256((_git("diff", "HEAD", "--", *GIT_PATHS) or "").encode())
    for rel in sorted((_git("ls-files", "--others", "--exclude-standard", "--", *GIT_PATHS) or "").split()):
        h.update(b"\0new " + rel.encode() + b"\0" + (ROOT / rel).read_bytes())  # untracked files count too
    return {"commit": head.strip(), "dirty": True, "diff_sha256": h.hexdigest()[:16]}


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    out["python"] = sys.version.split()[0]
    return out


def package_version() -> str | None:
    try:
        return md.version(DIST)
    except md.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def machine() -> dict:
    """{cpu, vector extensions, os}: what can change float results between machines running the same code."""
    import platform

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:  # not Linux: the platform's own names
        pass
    simd = sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    return {"cpu": cpu, "simd": simd, "os": f"{platform.system()} {platform.release()}"}


def fingerprint(plugins: list[str] | None = None) -> dict:
    """The code and library part of a run's provenance record (module docstring)."""
    return {"code": code_id(plugins), "source": source_hash(), "plugins": plugin_hashes(plugins),
            **git_state(), "version": package_version(), "versions": library_versions(), "machine": machine()}


def short(record: dict | None) -> str:
    """One label for a provenance record: 'commit 2c66064 (code 1a2b3c4d)', '+ local changes' when dirty."""
    if not record or not record.get("code"):
        return "unknown code (made before runs recorded their provenance)"
    commit = record.get("commit")
    where = f"commit {commit[:7]}" if commit else f"version {record.get('version') or '?'}"
    dirty = " + uncommitted changes" if record.get("dirty") else ""
    return f"{where}{dirty} (code {record['code'][:8]})"


def versions_label(record: dict | None) -> str:
    """'torch 2.13.0, transformers 5.10.4, ...' of the installed libraries a record names."""
    vs = (record or {}).get("versions") or {}
    order = [*LIBRARIES, "python", *sorted(set(vs) - {*LIBRARIES, "python"})]
    return ", ".join(f"{k} {vs[k]}" for k in order if vs.get(k)) or "library versions unknown"


def state_dict_sha256(state: dict) -> str:
    """sha256 of a torch state dict's tensors (names, dtypes, shapes, bytes), independent of the file format."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().view(-1)
        h.update(f"{name}|{t.dtype}|{tuple(state[name].shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
