"""The command line itself: lazy help, error texts (YAML line numbers, sweep files, unknown fields), the schema."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cli.app import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "pandas", "matplotlib", "optuna", "scipy", "pyarrow", "transformers")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return (e.value.code or 0), out.out, out.err


def test_top_level_help_imports_no_heavy_library():
    code = ("import sys\nfrom harness.cli.app import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code in (0, None)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert "run" in proc.stdout and "sweep" in proc.stdout and "validate" in proc.stdout


def test_listed_help_is_each_commands_docstring():
    for name, (target, short) in COMMANDS.items():
        module, _, func = target.partition(":")
        doc = inspect.getdoc(getattr(importlib.import_module(module), func))
        assert doc.split("\n")[0] == short, f"update harness/cli/app.py COMMANDS[{name!r}] to the first docstring line"


def test_subcommand_help_and_unknown_command(capsys):
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0 and "--no-wait" in out and "--summary-every" in out and "Ctrl-C" in out
    code, _, err = run_cli(capsys, "rnu")
    assert code == 2 and "No such command" in err and "run" in err


def test_yaml_syntax_error_names_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nvariants:\n  - {name: grpo, preset: grpo\ntrain: {steps: 2}\n")
    code, _, err = run_cli(capsys, "validate", str(bad))
    assert code == 2 and err.count("\n") == 1
    assert f"error: {bad}: line 4, column 6: not valid YAML" in err


def test_unknown_field_suggests_the_closest_and_points_to_schema(tmp_path, capsys):
    bad = tmp_path / "typo.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "train": {"grup_size": 4}, "variants": [{"name": "g", "preset": "grpo"}]}))
    code, _, err = run_cli(capsys, "validate", str(bad))
    assert code == 2
    assert "train.grup_size: unknown field (did you mean 'group_size'?); `harness validate --schema` lists every field" in err


def test_validate_recognises_sweep_files_and_run_refuses_them(tmp_path, capsys):
    exp = {"name": "s", "train": {"steps": 2, "prompts_per_step": 4, "group_size": 4, "mini_batches": 2},
           "eval": {"benchmarks": {"easy": {"min_ops": 2, "max_ops": 3}}}, "variants": [{"name": "ngrpo", "preset": "ngrpo"}]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"experiment": "exp.yaml", "variant": "ngrpo", "benchmark": "easy", "trials": 3,
                                     "params": {"eps_pos": {"low": 0.1, "high": 0.3}}}))
    code, out, err = run_cli(capsys, "validate", str(sweep))
    assert code == 0, err
    assert "sweep over variant 'ngrpo'" in out and "eps_pos in [0.1, 0.3]" in out and "3 trials" in out
    code, _, err = run_cli(capsys, "run", str(sweep), "--results", str(tmp_path / "res"))
    assert code == 2 and "this is a sweep file" in err and f"harness sweep {sweep}" in err
    code, _, err = run_cli(capsys, "sweep", str(tmp_path / "exp.yaml"), "--results", str(tmp_path / "res"))
    assert code == 2 and "this is an experiment file" in err
    sweep.write_text(yaml.safe_dump({"experiment": "exp.yaml", "variant": "ngrpo", "benchmark": "easy",
                                     "params": {"eps_pos": {"low": 0.1, "hihg": 0.3}}}))
    code, _, err = run_cli(capsys, "validate", str(sweep))
    assert code == 2 and "params.eps_pos.hihg: unknown field (did you mean 'high'?)" in err
    assert not (tmp_path / "res").exists()


def test_validate_schema_describes_every_field(capsys):
    code, out, _ = run_cli(capsys, "validate", "--schema")
    assert code == 0
    from harness.config.experiment import Experiment
    from harness.config.fields import schema_rows
    from harness.sweep.config import SweepConfig

    for model in (Experiment, SweepConfig):
        for path, _typ, _default, desc in schema_rows(model):
            assert desc, f"{model.__name__}: field {path} has no description"
            assert f"\n{path}: " in out
    assert "train.group_size: integer (> 0); default 8\n    G: responses per prompt" in out
    assert "eval.benchmarks.<name>.max_ops: integer (> 0, <= 12); default required" in out
    assert "variants[].preset: string; default required" in out
    code, _, err = run_cli(capsys, "validate")
    assert code == 2 and "--schema" in err


def test_eval_defaults_are_the_papers_evaluation_protocol():
    """temperature 0.6, top-p 0.95 and 4096 new tokens: the NGRPO authors' evaluation (not training's 3072)."""
    import inspect

    from harness.cli.eval import eval_command

    params = inspect.signature(eval_command).parameters
    assert [params[k].default.default for k in ("temperature", "top_p", "max_new_tokens")] == [0.6, 0.95, 4096]
