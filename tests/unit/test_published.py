"""The published numbers (issue 19 item 7): README.md and docs/*.md say what results/published/ gives.

Every `<!-- published EXPERIMENT KIND -->` block is recomputed from the committed run folders with
the report's own functions; any drift fails. `python scripts/published_docs.py` rewrites the blocks.
"""

import json
from pathlib import Path

import pytest

from harness.core import results
from harness.report import published

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "results" / "published"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.fixture(scope="module")
def rendered():
    return published.blocks(PUBLISHED)


def test_the_docs_tables_are_what_the_published_runs_give(rendered):
    drifted = {doc.name: published.drift(doc, rendered) for doc in DOCS}
    assert not {k: v for k, v in drifted.items() if v}, f"regenerate: python scripts/published_docs.py ({drifted})"
    marked = sum(len(published.MARK.findall(doc.read_text())) for doc in DOCS)
    assert marked >= 3 and "published main_comparison auc" in (ROOT / "README.md").read_text()


def test_published_runs_are_finished_checkpoint_free_and_from_one_code():
    dirs = results.find_run_dirs(PUBLISHED)
    assert len(dirs) >= 25
    by_exp: dict[str, set] = {}
    for rd in dirs:
        st = json.loads((rd / "status.json").read_text())
        assert st["state"] == "done", rd
        assert not (rd / results.CKPT_DIR).exists(), f"{rd}: checkpoints are not published"
        by_exp.setdefault(rd.parent.name, set()).add(st["provenance"]["code"])
    assert all(len(codes) == 1 for codes in by_exp.values()), by_exp


def test_a_changed_number_is_drift(tmp_path):
    from harness.report.fake import make_fake_results

    make_fake_results(tmp_path / "res", variants=("grpo", "ngrpo"), seeds=2, steps=2, eval_every=1,
                      n_problems=6, n_samples=4)
    got = published.blocks(tmp_path / "res")
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- published fake auc -->\nold\n<!-- /published -->\ntail\n")
    assert published.drift(doc, got) == ["fake auc"]
    assert published.sync(doc, got) == ["fake auc"] and published.drift(doc, got) == []
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("tail\n") and "| grpo |" in text
    first_number = next(t for t in text.split() if t[:1].isdigit())
    doc.write_text(text.replace(first_number, "99.99", 1))
    assert published.drift(doc, got) == ["fake auc"]
    doc.write_text("<!-- published nosuch auc -->\nx\n<!-- /published -->\n")
    with pytest.raises(Exception, match="nosuch auc"):
        published.drift(doc, got)
