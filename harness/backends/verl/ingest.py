"""verl's own outputs -> the harness results layout, so reports, AUC tables and sweeps read verl runs.

Two sources, written by verl in both modes:

    verl/val/{step}.jsonl        validation dumps (verl's `_write_generations`): input, output, gts,
                                 score, step, the reward function's extra keys and `uid` =
                                 `{prompt uid}_{session}_{index}`. No data_source: the harness reward
                                 function carries `harness_benchmark` / `harness_problem` from the
                                 row's extra_info, and the session number is the sample index.
    verl/metrics/attempt-*.jsonl verl's `file` logger ({"step", "data"} per line), one file per launch
                                 (`attempt-{k}-from-{S}`: launch k resumed from checkpoint step S).

`sync(run_dir, spec)` rebuilds samples.parquet (one row per sample; `correct` is the reward's boolean
`acc`, never the shaped score) and metrics.jsonl (a `train` record per step with verl's keys, the
common ones renamed to the harness's namespaces, and an `eval` record per evaluated step computed by
harness.core.metrics from the samples). Steps an interrupted launch logged after the checkpoint its
successor resumed from are dropped, so a resumed run has each step once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from harness.config.runspec import RunSpec
from harness.core import metrics as hm
from harness.core import results

KEY_MAP = {  # verl metric -> harness metric of the same meaning (actor/ppo_kl, k1, is the same name on both)
    "actor/kl_loss": "actor/kl_ref", "actor/pg_clipfrac": "actor/clipfrac",
    "critic/vf_loss": "critic/value_loss", "critic/vf_clipfrac": "critic/value_clipfrac",
    "critic/score/mean": "train/reward", "response_length/mean": "train/response_length",
    "response_length/clip_ratio": "train/truncated_frac", "timing_s/testing": "time/eval_s",
}
_ATTEMPT = re.compile(r"attempt-(\d+)-from-(\d+)\.jsonl$")


def verl_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "verl"


def new_metrics_file(run_dir: Path, start_step: int) -> Path:
    """Path for the file logger of a new launch that starts after checkpoint `start_step`."""
    d = verl_dir(run_dir) / "metrics"
    d.mkdir(parents=True, exist_ok=True)
    k = len([p for p in d.iterdir() if _ATTEMPT.search(p.name)])
    return d / f"attempt-{k:03d}-from-{start_step}.jsonl"


def _lines(path: Path) -> list[dict]:
    out = []
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                if i < len(lines) - 1 and lines[i + 1].strip():
                    raise results.ResultsError(f"{path}: line {i + 1} is not valid JSON ({e})") from e
    return out


def metric_records(run_dir: Path) -> dict[int, dict]:
    """step -> merged verl metrics across launches (later launches win; steps a killed launch logged past
    its successor's checkpoint are dropped)."""
    d = verl_dir(run_dir) / "metrics"
    files = sorted(
        (int(m.group(1)), int(m.group(2)), p)
        for p in (d.iterdir() if d.is_dir() else [])
        if (m := _ATTEMPT.search(p.name))
    )
    by_step: dict[int, dict] = {}
    for i, (_, _, path) in enumerate(files):
        limit = files[i + 1][1] if i + 1 < len(files) else None
        for rec in _lines(path):
            step = int(rec["step"])
            if limit is None or step <= limit:
                by_step.setdefault(step, {}).update(rec["data"])
        if limit is not None:
            by_step = {s: r for s, r in by_step.items() if s <= limit}
    return by_step


def _session(uid: str) -> tuple[str, int, int]:
    prompt, session, index = str(uid).rsplit("_", 2)
    return prompt, int(session), int(index)


def _dump_rows(path: Path, spec: RunSpec, token_count) -> pd.DataFrame | None:
    """samples.parquet rows of one validation dump (the final output of each session); None if it is empty."""
    recs = _lines(path)
    if not recs:
        return None
    df = pd.DataFrame(recs)
    missing = [c for c in ("acc", "harness_benchmark", "harness_problem", "uid") if c not in df.columns]
    if missing:
        raise results.ResultsError(f"{path}: dump lacks {missing}; was the reward function replaced? "
                                   "(reward.custom_reward_function must be the harness's)")
    parts = pd.DataFrame([_session(u) for u in df["uid"]], columns=["prompt", "session", "index"])
    df = pd.concat([df.reset_index(drop=True), parts], axis=1)
    df = df[df["index"] == df.groupby(["prompt", "session"])["index"].transform("max")]
    if "harness_length" in df.columns:
        length, truncated = df["harness_length"].astype(int), df["harness_truncated"].astype(bool)
    else:  # cluster dumps carry text only: count tokens of the decoded response
        if token_count is None:
            raise results.ResultsError(f"{path}: no response lengths and no tokenizer to count them")
        n = pd.Series([token_count(o) for o in df["output"]], index=df.index)
        truncated = n >= spec.train.max_new_tokens
        length = n.where(truncated, n + 1)  # + the EOS the decoded text no longer shows
    return pd.DataFrame({
        "step": int(path.stem), "benchmark": df["harness_benchmark"].astype(str),
        "problem_id": df["harness_problem"].astype(str), "sample_idx": df["session"].astype(int),
        "correct": df["acc"].astype(bool), "length": length, "truncated": truncated,
    })


def _cached_dump_rows(path: Path, spec: RunSpec, token_count) -> pd.DataFrame | None:
    """_dump_rows, parsed once per version of the dump: sync runs every minute beside main_ppo, and
    re-reading and re-tokenizing every dump each time grew with the run (~180 us a response,
    benchmarks/verl_overhead.py: 36 s a sync at the paper file's 11 dumps x 18,240 responses).
    The cache (verl/val/.ingest/STEP.parquet) is keyed by the dump's size and mtime and the run's token
    limit, so a dump rewritten by a resumed launch is parsed again."""
    st = path.stat()
    key = f"{st.st_size}-{st.st_mtime_ns}-{spec.train.max_new_tokens}"
    cache = path.parent / ".ingest" / f"{path.stem}.parquet"
    stamp = cache.with_suffix(".key")
    if cache.exists() and stamp.exists() and stamp.read_text() == key:
        return pd.read_parquet(cache)
    rows = _dump_rows(path, spec, token_count)
    if rows is not None:
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        rows.to_parquet(tmp, index=False)
        tmp.replace(cache)
        results.atomic_write_text(stamp, key)
    return rows


def samples(run_dir: Path, spec: RunSpec, token_count=None) -> pd.DataFrame:
    """samples.parquet rows from every validation dump (the final output of each session)."""
    val_dir = verl_dir(run_dir) / "val"
    paths = sorted(val_dir.glob("*.jsonl")) if val_dir.is_dir() else []
    frames = [f for f in (_cached_dump_rows(p, spec, token_count) for p in paths) if f is not None]
    if not frames:
        return results.samples_frame({c: [] for c in results.SAMPLE_COLUMNS})
    return results.samples_frame(
        pd.concat(frames, ignore_index=True).sort_values(["step", "benchmark", "problem_id", "sample_idx"])
    )


def sync(run_dir: Path, spec: RunSpec, token_count=None) -> None:
    """Rewrite samples.parquet and metrics.jsonl from verl's dumps and logs (atomic, idempotent)."""
    run_dir = Path(run_dir)
    rows = samples(run_dir, spec, token_count)
    results.write_samples(run_dir, rows)
    by_step = metric_records(run_dir)
    out = []
    for step in sorted(set(by_step) | set(rows["step"].unique().tolist())):
        data = {KEY_MAP.get(k, k): v for k, v in by_step.get(step, {}).items()}
        if step > 0 and data:
            out.append(
                {"kind": "train", "step": step, **{k: v for k, v in data.items() if not k.startswith("val-")}}
            )
        at = rows[rows["step"] == step]
        if len(at):
            ev = {"kind": "eval", "step": step, **hm.eval_summary(at, spec.eval.k_max)}
            ev.update({k: v for k, v in data.items() if k.startswith("val-") or k == "time/eval_s"})
            out.append(ev)
    results.atomic_write_text(
        run_dir / results.METRICS_FILE,
        "".join(json.dumps(r, sort_keys=True, default=float) + "\n" for r in out),
    )
