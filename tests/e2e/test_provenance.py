"""Provenance (issue 19): every run records the code that made it; stale runs are never silently reused."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.app import main
from harness.core import provenance, results

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    return 0 if e.value.code is None else e.value.code


def _status(rd: Path) -> dict:
    return json.loads((rd / "status.json").read_text())


def _set_code(rd: Path, code: str, commit: str) -> None:
    """Pretend another version of the code made this run (what a commit that edits algorithms/ does)."""
    st = _status(rd)
    st["provenance"] = {**st["provenance"], "code": code, "commit": commit, "dirty": False, "accepted_by": []}
    (rd / "status.json").write_text(json.dumps(st))


def test_a_run_records_its_code_libraries_warm_start_and_step0(tmp_path, tiny_experiment):
    exp = tiny_experiment()
    assert cli("run", str(exp), "--results", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache")) == 0
    (rd,) = results.find_run_dirs(tmp_path / "res")
    rec = _status(rd)["provenance"]
    assert rec["code"] == provenance.code_id() and len(rec["code"]) == 16
    assert rec["commit"] == provenance.git_state()["commit"]
    assert set(rec["versions"]) >= {"torch", "transformers", "verl", "vllm", "math-verify"}
    assert rec["versions"]["torch"].startswith("2.")
    assert rec["threads"] == 1
    assert rec["machine"]["cpu"] and isinstance(rec["machine"]["simd"], list)
    assert len(rec["warm_start"]["sha256"]) == 16
    samples = results.read_samples(rd)
    first = samples[samples["step"] == 0]
    assert rec["step0"]["step"] == 0
    assert rec["step0"]["easy"]["pass@1"] == pytest.approx(first["correct"].mean(), abs=1e-6)
    assert _status(rd)["state"] == "done"  # later status writes kept the record


def test_stale_runs_are_named_and_need_a_decision(tmp_path, tiny_experiment, capsys):
    exp = tiny_experiment()
    args = ("run", str(exp), "--results", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"))
    assert cli(*args) == 0
    (rd,) = results.find_run_dirs(tmp_path / "res")
    mtime = (rd / "samples.parquet").stat().st_mtime_ns
    _set_code(rd, "0" * 16, "abc1234" + "0" * 33)
    capsys.readouterr()
    assert cli(*args) == 2  # neither flag: nothing runs, one line names the stale runs and the ways on
    err = capsys.readouterr().err
    assert "tiny: 1 run(s) are stale (from commit abc1234 (code 00000000)" in err
    assert "--rerun-stale" in err and "--accept-stale" in err
    assert (rd / "samples.parquet").stat().st_mtime_ns == mtime
    assert cli(*args, "--rerun-stale", "--accept-stale") == 2
    assert "give at most one" in capsys.readouterr().err

    assert cli(*args, "--accept-stale") == 0  # kept, and from now on accepted by this code
    assert (rd / "samples.parquet").stat().st_mtime_ns == mtime
    assert _status(rd)["provenance"]["accepted_by"] == [provenance.code_id()]
    assert cli(*args) == 0

    _set_code(rd, "1" * 16, "def5678" + "0" * 33)
    assert cli(*args, "--rerun-stale") == 0  # retrained from scratch by this code
    assert (rd / "samples.parquet").stat().st_mtime_ns != mtime
    assert _status(rd)["provenance"]["code"] == provenance.code_id()
    assert "accepted_by" not in _status(rd)["provenance"]


def test_warm_start_key_includes_the_code(monkeypatch, tiny_experiment):
    from harness.config.experiment import load_experiment
    from harness.config.runspec import expand
    from harness.embedded import warmstart

    (spec,) = expand(load_experiment(tiny_experiment()))
    before = warmstart.warm_start_key(spec)
    monkeypatch.setattr(provenance, "source_hash", lambda root=None: "f" * 16)
    assert warmstart.warm_start_key(spec) != before


def test_source_hash_covers_result_code_only(tmp_path):
    for rel in ("algorithms/a.py", "harness/x/b.py", "harness/report/c.py", "harness/cli/d.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    base = provenance.hash_files(tmp_path, provenance.source_files(tmp_path))
    assert [p.as_posix() for p in provenance.source_files(tmp_path)] == ["algorithms/a.py", "harness/x/b.py"]
    (tmp_path / "harness/report/c.py").write_text("x = 2\n")  # a report change makes no run stale
    assert provenance.hash_files(tmp_path, provenance.source_files(tmp_path)) == base
    (tmp_path / "algorithms/a.py").write_text("x = 2\n")
    assert provenance.hash_files(tmp_path, provenance.source_files(tmp_path)) != base


def test_a_commit_that_changes_algorithms_makes_finished_runs_stale(tmp_path, tiny_experiment):
    """The real thing: a git checkout of the project, a run, a commit that edits algorithms/, a rerun."""
    src = tmp_path / "checkout"
    src.mkdir()
    for name in ("algorithms", "harness"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", src / "pyproject.toml")
    git = lambda *a: subprocess.run(["git", "-C", str(src), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "first")
    exp = tiny_experiment()
    cmd = [sys.executable, "-m", "harness", "run", str(exp), "--results", str(tmp_path / "res"),
           "--cache-dir", str(tmp_path / "cache")]
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (rd,) = results.find_run_dirs(tmp_path / "res")
    commit1 = _status(rd)["provenance"]["commit"]
    assert commit1 == git("rev-parse", "HEAD").stdout.decode().strip()
    with open(src / "algorithms" / "advantages.py", "a") as f:
        f.write("\n# a change to an algorithm\n")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "edit algorithms")
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 2, again.stderr[-2000:]
    assert f"1 run(s) are stale (from commit {commit1[:7]}" in again.stderr
    assert "1 done (skipped)" not in again.stderr


def test_report_names_the_code_and_refuses_mixed_code(tmp_path, capsys):
    from harness.report.fake import make_fake_results

    dirs = make_fake_results(tmp_path / "res", variants=("grpo", "ngrpo"), seeds=2, steps=2, eval_every=1,
                             n_problems=6, n_samples=4)
    assert cli("report", str(tmp_path / "res"), "--out", str(tmp_path / "rep")) == 0
    caption = (tmp_path / "rep" / "fake" / "auc_table.md").read_text()
    label = provenance.short(provenance.fingerprint())
    assert f"Made by {label}; torch " in caption
    assert label in (tmp_path / "rep" / "fake" / "comparison.md").read_text()
    assert label in (tmp_path / "rep" / "fake" / "index.html").read_text()
    _set_code(dirs[0], "2" * 16, "fedcba9" + "0" * 33)  # one run made by other code
    capsys.readouterr()
    assert cli("report", str(tmp_path / "res"), "--out", str(tmp_path / "rep2")) == 2
    err = capsys.readouterr().err
    assert "fake: its runs come from 2 versions of the code" in err and "commit fedcba9 (code 22222222): 1 run(s)" in err
    assert "--mix-code" in err and not (tmp_path / "rep2" / "fake" / "auc_table.md").exists()
    assert cli("report", str(tmp_path / "res"), "--out", str(tmp_path / "rep3"), "--mix-code") == 0
    assert "MIXED CODE (--mix-code): 3 run(s) by" in (tmp_path / "rep3" / "fake" / "auc_table.md").read_text()


def test_dirty_means_uncommitted_result_code(tmp_path):
    """A new report or CLI file leaves the checkout clean for provenance; one in algorithms/ does not."""
    src = tmp_path / "checkout"
    src.mkdir()
    for name in ("algorithms", "harness"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    (src / ".gitignore").write_text("__pycache__/\n")  # as the project's: compiled files are not changes
    git = lambda *a: subprocess.run(["git", "-C", str(src), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "first")
    state = lambda: json.loads(subprocess.run(  # noqa: E731
        [sys.executable, "-c", "import json; from harness.core import provenance as p; print(json.dumps(p.git_state()))"],
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}, cwd=tmp_path, capture_output=True, text=True,
        check=True).stdout)
    assert state()["dirty"] is False
    (src / "harness" / "report" / "new_figure.py").write_text("x = 1\n")
    assert state()["dirty"] is False
    (src / "algorithms" / "new_piece.py").write_text("x = 1\n")
    dirty = state()
    assert dirty["dirty"] is True and len(dirty["diff_sha256"]) == 16
