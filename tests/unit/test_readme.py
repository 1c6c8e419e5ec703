"""The docs' commands, flags, example error and links cannot drift from the CLI and the tree.

The pages are README.md and every docs/*.md. In each, every `harness ...` line (code blocks, and
inline code such as the `harness run FILE [--results DIR]` synopsis; `a && b` counts as two) must
name a real command and only options that command has; the option tables under a `harness X`
heading likewise; every option of run, sweep, report and validate must be mentioned in some page;
the two set-up commands are the README's first lines and `make` targets; the example error is the
real output; every relative link points to a file that exists (and to a heading of it, when it
names one), and the README links every docs page.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.cli.app import COMMANDS, load_command, main

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
PAGES = {p.relative_to(REPO).as_posix(): p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]}
DOCUMENTED = ("run", "sweep", "report", "validate")  # commands whose every option the docs list
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _options(name: str) -> set[str]:
    cmd = load_command(name)
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")} | {"--help"}


def harness_lines(text: str = README) -> list[tuple[int, str]]:
    """(line number, command) for each command line of `text` that starts with `harness`."""
    out, joined = [], text.replace("\\\n", " ")
    for i, line in enumerate(joined.splitlines(), 1):
        stripped = line.strip().removeprefix("$ ")
        found = [stripped.split("  #")[0].split(" # ")[0]] if stripped.startswith("harness ") else []
        found += re.findall(r"`(harness [^`]+)`", line)
        out.extend((i, part.strip()) for cmd in found for part in cmd.split("&&") if part.strip().startswith("harness"))
    return out


def all_harness_lines() -> list[tuple[str, int, str]]:
    """(page, line number, command) over every page."""
    return [(page, i, c) for page, text in PAGES.items() for i, c in harness_lines(text)]


def _flags(command: str) -> tuple[str, list[str]]:
    tokens = shlex.split(command.replace("[", " ").replace("]", " ").replace("|", " "))
    return tokens[1], [t.split("=")[0] for t in tokens[2:] if t.startswith("-")]


def test_the_pages_are_the_readme_and_docs():
    assert "README.md" in PAGES and len(PAGES) >= 10, sorted(PAGES)


def test_readme_harness_commands_use_real_commands_and_options():
    lines = all_harness_lines()
    assert len(lines) > 15
    assert len(harness_lines(README)) >= 8  # the tour
    for page, lineno, command in lines:
        sub, flags = _flags(command)
        if sub.startswith("-"):
            assert sub == "--help", (page, lineno, command)
            continue
        assert sub in COMMANDS, f"{page} line {lineno}: no command {sub!r} in `{command}`"
        unknown = [f for f in flags if f not in _options(sub)]
        assert not unknown, f"{page} line {lineno}: `{command}`: {unknown} not options of `harness {sub}`"


def test_readme_option_tables_match_their_command():
    checked = 0
    for page, text in PAGES.items():
        current = None
        for line in text.splitlines():
            if line.startswith("#"):
                m = re.search(r"`harness (\w+)`", line)
                current = m.group(1) if m else None
            elif current and line.startswith("| `-"):
                cell = line.split("|")[1]
                for flag in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", cell):
                    assert flag in _options(current), f"{page}: table under `harness {current}`: {flag}"
                    checked += 1
    assert checked >= 6


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_option_of_the_main_commands_is_in_the_readme(name):
    mentioned = {f for _, _, c in all_harness_lines() if _flags(c)[0] == name for f in _flags(c)[1]}
    if name == "report":
        mentioned |= {f for text in PAGES.values() for f in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", text)}
    missing = sorted(o for o in _options(name) - {"--help"} if o.startswith("--") and o not in mentioned)
    assert not missing, f"`harness {name}` options missing from README.md and docs/: {missing}"


def test_setup_commands_are_make_targets():
    first = README.splitlines()[:2]
    assert [line.split("#")[0].strip() for line in first] == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_readme_example_error_is_what_the_cli_prints(tmp_path, capsys, monkeypatch):
    found = [m for text in PAGES.values() if (m := re.search(r"\$ harness run bad\.yaml\n\s+(error: .+)", text))]
    assert found, "example error block (`$ harness run bad.yaml`) not found in README.md or docs/"
    (tmp_path / "bad.yaml").write_text("name: bad\ntrain: {group_size: 1}\nvariants:\n  - {name: grpo, preset: grpo}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["run", "bad.yaml", "--results", "res"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == found[0].group(1).strip()


def _unfenced(text: str) -> str:
    """text without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def _prose(text: str) -> str:
    """text without fenced code blocks and inline code spans (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", _unfenced(text))


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but `-` and `_` dropped, spaces -> `-`."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", _unfenced(text), re.M)}


def relative_links(page: str) -> list[str]:
    return [t for t in LINK.findall(_prose(PAGES[page])) if not re.match(r"[a-z][a-z+.-]*:", t)]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_relative_links_point_to_files_that_exist(page):
    base = (REPO / page).parent
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (base / path).resolve() if path else REPO / page
        assert dest.exists(), f"{page}: link {target!r}: {dest.relative_to(REPO)} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest.read_text()), f"{page}: link {target!r}: no heading #{anchor}"


def test_readme_links_every_docs_page():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in relative_links("README.md")}
    unlinked = sorted(p for p in PAGES if p != "README.md" and (REPO / p).resolve() not in linked)
    assert not unlinked, f"README.md does not link {unlinked}"
