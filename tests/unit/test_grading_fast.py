"""The grader's fast tier (harness.grading.fast): each form it settles, what it leaves to math-verify, and
that it never gives a verdict the math-verify path (MathGrader(fast=False)) would not."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import pytest

from harness.grading import fast
from harness.grading.grader import MathGrader

DATA = Path(__file__).resolve().parents[1] / "data" / "grading"


# ----------------------------------------------------------------------------- pure functions
@pytest.mark.parametrize(
    "text, value",
    [
        ("5", (Fraction(5), True)),
        ("-5", (Fraction(-5), True)),
        ("0", (Fraction(0), True)),
        (" $5$ ", (Fraction(5), True)),
        (r"\boxed{5}", (Fraction(5), True)),
        (r"$\boxed{ \boxed{5} }$", (Fraction(5), True)),
        ("5.0", (Fraction(5), False)),
        ("0.75", (Fraction(3, 4), False)),
        ("-0.125", (Fraction(-1, 8), False)),
        ("3/4", (Fraction(3, 4), False)),
        ("-3/4", (Fraction(-3, 4), False)),
        (r"\frac{3}{4}", (Fraction(3, 4), False)),
        (r"\dfrac{6}{8}", (Fraction(3, 4), False)),
        (r"-\tfrac{3}{4}", (Fraction(-3, 4), False)),
        ("100000000000000001", (Fraction(100000000000000001), True)),
    ],
)
def test_plain_numbers(text: str, value: tuple) -> None:
    assert fast.number(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "05",
        ".75",
        "1,000",
        "1{,}000",
        "1 000",
        "1e3",
        r"10^{3}",
        r"5\%",
        r"2\sqrt{2}",
        r"\frac34",
        r"\frac{3}{0}",
        "3/0",
        r"\frac{-3}{4}",
        "x=5",
        r"5\text{ cm}",
        r"\$5",
        "+5",
        "--5",
        "1234567890123456789",
        r"\boxed{5}+\boxed{6}",
        r"\pi",
        "",
        # math-verify does not read these as the number: left to it (the string rule if the text is equal)
        "5.",
        r"\text{5}",
        r"\mathrm{5}",
        r"\textbf{5}",
    ],
)
def test_not_plain_numbers(text: str) -> None:
    assert fast.number(text) is None


@pytest.mark.parametrize(
    "pred, gold, verdict",
    [
        ("0.75", r"\frac{3}{4}", True),
        (r"\frac{6}{8}", "3/4", True),
        ("5.0", "5", True),
        ("-0", "0", True),
        (r"\boxed{420}", "420", True),
        ("1001", "1000", False),
        ("100000000000000001", "100000000000000000", False),
        ("0.5", "0.75", False),
        ("0.001", "0", False),
        ("-5", "5", False),
        ("1025", "1000", False),
        # within twice the 1% tolerance and unequal: math-verify decides (it rounds)
        ("0.3311", "0.33", None),
        ("0.1", "0.10000001", None),
        ("1000.5", "1000", None),
        ("1010", "1000.0", None),
        ("0.333333", r"\frac{1}{3}", None),
        # not both plain numbers
        ("x=5", "5", None),
        ("5", r"5\text{ cm}", None),
        (r"2\sqrt{2}", r"\sqrt{8}", None),
        ("10{,}000", "10000", None),
        ("A", "B", None),
    ],
)
def test_verdict(pred: str, gold: str, verdict: bool | None) -> None:
    assert fast.verdict(pred, gold) is verdict


def test_same_text_is_the_workers_string_rule() -> None:
    assert fast.same_text(r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})")
    assert fast.same_text(r"\text{Evelyn}", "Evelyn") and fast.same_text(r"E_{1}, E_{2}", "E_1,E_2")
    assert not fast.same_text("(3,4)", "(4,3)")


# ----------------------------------------------------------------------------- against math-verify
WRITINGS = [  # numbers in many writings, values equal, within 1%, and far apart
    "5",
    "5.0",
    "5.",
    r"\text{5}",
    r"\mathrm{5}",
    r"\boxed{5}",
    "$5$",
    r"\boxed{ 5 }",
    r"\frac{10}{2}",
    "10/2",
    "-5",
    "05",
    "6",
    "$6$",
    r"\frac{3}{4}",
    r"\dfrac{6}{8}",
    "3/4",
    "0.75",
    "-0.75",
    r"-\frac{3}{4}",
    "0.7501",
    "0.33",
    "0.3311",
    "0.34",
    r"\frac{1}{3}",
    "0.333333",
    "0.1",
    "0.10000001",
    "1000",
    "1000.0",
    "1000.5",
    "1001",
    "1010",
    "1025",
    "0",
    "-0",
    "0.001",
    "100000000000000001",
    "100000000000000000",
]


@pytest.fixture(scope="module")
def graders():
    with (
        MathGrader(processes=2, timeout=10, fast=False) as slow,
        MathGrader(processes=1, timeout=10) as quick,
    ):
        yield slow, quick


def disagreements(graders, responses: list[str], golds: list[str]) -> list[tuple]:
    """(response, gold, math-verify path, fast path) wherever the two graders' (verdict, status) differ."""
    slow, quick = graders
    a, b = slow.grade_many(responses, golds), quick.grade_many(responses, golds)
    return [
        (r, g, (x.correct, x.status), (y.correct, y.status))
        for r, g, x, y in zip(responses, golds, a, b)
        if (x.correct, x.status) != (y.correct, y.status)
    ]


def test_number_forms_agree_with_math_verify(graders) -> None:
    pairs = [(p, g) for p, g in itertools.product(WRITINGS, WRITINGS) if fast.verdict(p, g) is not None]
    assert len(pairs) > 600 and {fast.verdict(p, g) for p, g in pairs} == {True, False}
    bad = disagreements(graders, [rf"So \boxed{{{p}}}." for p, _ in pairs], [g for _, g in pairs])
    assert not bad, json.dumps(bad, indent=1)


def test_the_check_fails_for_a_fast_tier_that_accepts_what_math_verify_rejects(graders, monkeypatch) -> None:
    def lenient(pred: str, gold: str) -> bool | None:  # "within 1% is correct": math-verify rounds otherwise
        p, g = fast.number(pred), fast.number(gold)
        return None if p is None or g is None else abs(p[0] - g[0]) <= Fraction(1, 100) * abs(g[0])

    monkeypatch.setattr(fast, "verdict", lenient)
    bad = disagreements(graders, [r"\boxed{0.3311}", r"\boxed{1000.5}", r"\boxed{5}"], ["0.33", "1000", "5"])
    assert [b[:2] for b in bad] == [(r"\boxed{0.3311}", "0.33"), (r"\boxed{1000.5}", "1000")]


def test_string_tier_keeps_the_gold_status(graders) -> None:
    unparsed = r"\begin{pmatrix}6\3\0\end{pmatrix}"  # a MATH gold that does not parse as a whole
    responses = [
        rf"\boxed{{{unparsed}}}",
        r"\boxed{\text{Evelyn}}",
        r"\boxed{\left( 3, \frac{\pi}{2} \right)}",
        r"\boxed{(4,3)}",
    ]
    golds = [unparsed, "Evelyn", r"(3,\frac{\pi}{2})", "(3,4)"]
    assert not disagreements(graders, responses, golds)
    res = graders[1].grade_many(responses, golds)
    assert [(r.correct, r.status) for r in res] == [
        (True, "gold_unparsed"),
        (True, "ok"),
        (True, "ok"),
        (False, "ok"),
    ]


def test_numbers_and_option_letters_start_no_worker() -> None:
    with MathGrader(processes=1, timeout=5) as g:
        res = g.grade_many(
            [r"\boxed{0.75}", r"\boxed{7}", r"\boxed{(B)}", "The answer is (C)."],
            [r"\frac{3}{4}", "8", "B", "B"],
        )
        assert [r.correct for r in res] == [True, False, True, False] and g.workers == [] and g.golds == {}
        assert res[0].parsed == "3/4" and {r.status for r in res} == {"ok"}


def test_real_labelled_responses_same_verdicts_and_most_settled_fast(graders) -> None:
    rows = [json.loads(x) for x in (DATA / "qwen25_math_cot_100.jsonl").read_text().splitlines()]
    responses, golds = [r["response"] for r in rows], [r["gold"] for r in rows]
    assert not disagreements(graders, responses, golds)
    quick = graders[1]
    prepared = [quick.prepare(r, g) for r, g in zip(responses, golds)]
    left = [p for p in prepared if isinstance(p, tuple) and not fast.same_text(*p)]
    assert len(left) < 0.1 * len(rows)  # math-verify sees under 10% of them (43 of 800 when written)
