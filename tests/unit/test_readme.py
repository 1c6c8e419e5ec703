"""The README's commands, flags and example error cannot drift from the CLI.

Every `harness ...` line in the README (code blocks, and inline code such as the `harness run FILE
[--results DIR]` synopsis) must name a real command and only options that command has; the option
tables under a `harness X` heading likewise; every option of run, sweep, report and validate must
be mentioned; the two set-up commands are `make` targets; the example error is the real output.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.cli.app import COMMANDS, load_command, main

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
DOCUMENTED = ("run", "sweep", "report", "validate")  # commands whose every option the README lists


def _options(name: str) -> set[str]:
    cmd = load_command(name)
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")} | {"--help"}


def harness_lines() -> list[tuple[int, str]]:
    """(line number, command) for each README command line that starts with `harness`."""
    out, joined = [], README.replace("\\\n", " ")
    for i, line in enumerate(joined.splitlines(), 1):
        text = line.strip().removeprefix("$ ")
        if text.startswith("harness "):
            out.append((i, text.split("  #")[0].split(" # ")[0]))
        out.extend((i, m) for m in re.findall(r"`(harness [^`]+)`", line))
    return out


def _flags(command: str) -> tuple[str, list[str]]:
    tokens = shlex.split(command.replace("[", " ").replace("]", " ").replace("|", " "))
    return tokens[1], [t.split("=")[0] for t in tokens[2:] if t.startswith("-")]


def test_readme_harness_commands_use_real_commands_and_options():
    lines = harness_lines()
    assert len(lines) > 15
    for lineno, command in lines:
        sub, flags = _flags(command)
        if sub.startswith("-"):
            assert sub == "--help", (lineno, command)
            continue
        assert sub in COMMANDS, f"README line {lineno}: no command {sub!r} in `{command}`"
        unknown = [f for f in flags if f not in _options(sub)]
        assert not unknown, f"README line {lineno}: `{command}`: {unknown} not options of `harness {sub}`"


def test_readme_option_tables_match_their_command():
    current, checked = None, 0
    for line in README.splitlines():
        if line.startswith("#"):
            m = re.search(r"`harness (\w+)`", line)
            current = m.group(1) if m else None
        elif current and line.startswith("| `-"):
            cell = line.split("|")[1]
            for flag in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", cell):
                assert flag in _options(current), f"README table under `harness {current}`: {flag}"
                checked += 1
    assert checked >= 6


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_option_of_the_main_commands_is_in_the_readme(name):
    mentioned = {f for _, c in harness_lines() if _flags(c)[0] == name for f in _flags(c)[1]}
    mentioned |= set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", README)) if name == "report" else set()
    missing = sorted(o for o in _options(name) - {"--help"} if o.startswith("--") and o not in mentioned)
    assert not missing, f"`harness {name}` options missing from the README: {missing}"


def test_setup_commands_are_make_targets():
    first = README.splitlines()[:2]
    assert [line.split("#")[0].strip() for line in first] == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_readme_example_error_is_what_the_cli_prints(tmp_path, capsys, monkeypatch):
    m = re.search(r"\$ harness run bad\.yaml\n\s+(error: .+)", README)
    assert m, "README example error block not found"
    (tmp_path / "bad.yaml").write_text("name: bad\ntrain: {group_size: 1}\nvariants:\n  - {name: grpo, preset: grpo}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["run", "bad.yaml", "--results", "res"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == m.group(1).strip()
