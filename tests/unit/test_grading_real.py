"""harness.grading.grader against 800 real labelled responses (Qwen2.5-Math outputs with Qwen's own labels).

Every row must agree with its label, except the rows listed in label_review.json, where the label
was checked by hand and found wrong; there the reviewed verdict must hold.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.grading.grader import MathGrader

DATA = Path(__file__).resolve().parents[1] / "data" / "grading"


def test_real_labelled_responses() -> None:
    rows = [json.loads(x) for x in (DATA / "qwen25_math_cot_100.jsonl").read_text().splitlines()]
    review = json.loads((DATA / "label_review.json").read_text())
    assert len(rows) == 800 and set(review) <= {r["id"] for r in rows}
    with MathGrader(processes=2, timeout=10) as g:
        res = g.grade_many([r["response"] for r in rows], [r["gold"] for r in rows])
    expected = {r["id"]: review[r["id"]]["verdict"] if r["id"] in review else r["label"] for r in rows}
    wrong = [(r["id"], r["gold"], x.extracted, x.status, expected[r["id"]]) for r, x in zip(rows, res) if x.correct != expected[r["id"]]]
    assert not wrong, wrong
    assert sum(x.correct for x in res) == sum(r["label"] for r in rows) + len(review)  # all reviews flip False -> True
