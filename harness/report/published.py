"""Published numbers: the README's and docs' result tables, regenerated from `results/published/`.

A document marks each generated block:

    <!-- published main_comparison auc -->
    | variant | easy | medium | hard |
    ...
    <!-- /published -->

`blocks(root)` renders every experiment under root with the report's own functions
(harness.report.build) and returns {(experiment, kind): markdown}; `sync(path, rendered)` rewrites a
document's blocks from it, and `drift(path, rendered)` lists the blocks whose text differs (the test
that keeps the README true, tests/unit/test_published.py). Kinds:

    auc          Pass@k AUC table (mean [interval] per variant and benchmark, before RL included)
    comparison   differences vs the reference variant, with resolved / not resolved, P(better), p
    vs_start     every variant vs the policy before RL
    passk        pass@1 and pass@k_max before and after RL
    budget_auc   Pass@k AUC at the common rollout budget (comparison_at_budget.md, harness.report.budget)
    budget_comparison   differences vs the reference at that budget
    budget       the common budget and each run's spend there (its caption)
    code         the commit, code id and library versions behind the numbers
    seeds        "N runs: V variants x S seeds" as reported

An experiment whose runs are a sweep's (harness sweep's folder) is published as its sweep report instead
(harness.report.sweep), under the folder's name: `sweep_best` (the best trials, with the clip fraction) and
`sweep_summary` (best trial, best region after Holm's correction, importances).

`python scripts/published_docs.py [--check]` updates (or checks) README.md and docs/*.md.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from harness.core.errors import UserError

MARK = re.compile(r"<!-- published (\S+) (\S+) -->\n(.*?)<!-- /published -->", re.S)
# The comparison's reference where it is not GRPO (the report's default): the one each experiment file's header
# names in its `harness report ... --reference` line.
REFERENCES = {"virtual_reward_value": "ngrpo_r1.0_k1", "clip_sensitivity": "ngrpo"}
KINDS = {"auc": "auc_table.md", "comparison": "comparison.md", "vs_start": "vs_before_rl.md",
         "passk": "passk_table.md"}


def _table(md_text: str) -> str:
    """The markdown table of a report .md file (its rows), without the heading and caption."""
    return "\n".join(line for line in md_text.splitlines() if line.startswith("|")) + "\n"


def _tables(md_text: str) -> list[str]:
    """Every markdown table of a report .md file, in order."""
    out, cur = [], []
    for line in md_text.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            out.append("\n".join(cur) + "\n")
            cur = []
    return out


def blocks(root: Path) -> dict[tuple[str, str], str]:
    """{(experiment, kind): markdown} for every experiment with reported runs under root."""
    from harness.report.build import build_experiment
    from harness.report.load import load_results
    from harness.report.sweep import build_sweep_report, sweep_folders

    experiments, _ = load_results(root)
    out: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for exp in experiments:
            if not (exp.reported.shape[0] and len(exp.aucs)):
                continue
            sweeps = sweep_folders(exp.runs)
            if sweeps:
                for folder in sweeps:
                    _, lines = build_sweep_report(folder, Path(tmp) / folder.name)
                    out[(folder.name, "sweep_best")] = _table((Path(tmp) / folder.name / "sweep_best.md").read_text())
                    out[(folder.name, "sweep_summary")] = "".join(
                        f"- {line}\n" for line in lines if not line.startswith("open the study"))
                continue
            rep = build_experiment(exp, Path(tmp) / exp.name, reference=REFERENCES.get(exp.name), source=str(root))
            for kind, name in KINDS.items():
                f = Path(tmp) / exp.name / name
                if f.exists():
                    out[(exp.name, kind)] = _table(f.read_text())
            out[(exp.name, "code")] = rep.code + "\n"
            at_budget = Path(tmp) / exp.name / "comparison_at_budget.md"
            if at_budget.exists():
                text = at_budget.read_text()
                for kind, table in zip(("budget_auc", "budget_comparison"), _tables(text)):
                    out[(exp.name, kind)] = table
                caption = next(line for line in text.splitlines() if line.startswith("Pass@k AUC at"))
                out[(exp.name, "budget")] = caption.split(": mean [")[0].removeprefix("Pass@k AUC at ") + "\n"
            n_seeds = exp.reported.groupby("variant")["seed"].nunique()
            out[(exp.name, "seeds")] = (f"{len(exp.reported)} runs: {len(n_seeds)} variants x "
                                        f"{int(n_seeds.min())}" + (f"-{int(n_seeds.max())}" if n_seeds.max() !=
                                                                   n_seeds.min() else "") + " seeds\n")
    return out


def _replace(text: str, rendered: dict[tuple[str, str], str], path: Path) -> tuple[str, list[str]]:
    changed: list[str] = []

    def sub(m: re.Match) -> str:
        key = (m.group(1), m.group(2))
        if key not in rendered:
            raise UserError(f"{path}: block 'published {key[0]} {key[1]}' has no results under results/published "
                            f"(run the experiment into results/published, or remove the block)")
        if m.group(3) != rendered[key]:
            changed.append(f"{key[0]} {key[1]}")
        return f"<!-- published {key[0]} {key[1]} -->\n{rendered[key]}<!-- /published -->"

    return MARK.sub(sub, text), changed


def drift(path: Path, rendered: dict[tuple[str, str], str]) -> list[str]:
    """The blocks of a document whose text differs from what the published results give."""
    return _replace(Path(path).read_text(), rendered, Path(path))[1]


def sync(path: Path, rendered: dict[tuple[str, str], str]) -> list[str]:
    """Rewrite a document's blocks from the published results; returns the blocks that changed."""
    new, changed = _replace(Path(path).read_text(), rendered, Path(path))
    if changed:
        Path(path).write_text(new)
    return changed
