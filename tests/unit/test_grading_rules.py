"""harness.grading.rules: the answer-form conventions, on hand-written strings."""

from __future__ import annotations

import pytest

from harness.grading import rules as rules


@pytest.mark.parametrize("text, expected", [
    (r"Thus the answer is $2017^{98}$. Check: 2017 = 3 \cdot 672 + 1.", "2017^{98}"),
    ("So the final answer is: 12. I hope it is correct.", "12"),
    (r"the answer is \(\frac{1}{2}\), and 3 more", r"\frac{1}{2}"),
    ("The answer is 7, since 3 + 4 = 7 and 2 steps", "7"),
    ("The answer is $$x=5$$", "x=5"),
    ("no phrase here 3", None),
])
def test_answer_phrase(text: str, expected: str | None) -> None:
    assert rules.answer_phrase(text) == expected


@pytest.mark.parametrize("gold, letter", [("D", "D"), ("(D)", "D"), (r"\text{(D)}", "D"), ("$B$", "B"), ("F", None), ("DE", None), ("2", None)])
def test_choice_gold(gold: str, letter: str | None) -> None:
    assert rules.choice_gold(gold) == letter


@pytest.mark.parametrize("pred, letter", [
    ("(D) (2,0)", "D"), (r"\text{(D) } 2", "D"), ("D", "D"), (r"\text{B}", "B"), ("C.", "C"),
    ("option E is right", "E"), ("7", None),
])
def test_choice_letter(pred: str, letter: str | None) -> None:
    assert rules.choice_letter(pred) == letter


def test_percent_forms_and_scientific() -> None:
    assert rules.percent_forms(r"17.5\%") == ["17.5", r"\frac{17.5}{100}"] and rules.percent_forms("17.5") == ["17.5"]
    assert rules.percent_forms(r"40\text{ percent}") == ["40", r"\frac{40}{100}"] and rules.percent_forms("%") == ["%"]
    assert rules.normalize_scientific("1e-3") == r"1\times10^{-3}" and rules.normalize_scientific("2.5E+4") == r"2.5\times10^{4}"
    assert [rules.normalize_scientific(s) for s in ("2e", "e^{-3}", "x2e3", "3e")] == ["2e", "e^{-3}", "x2e3", "3e"]


@pytest.mark.parametrize("answer, suffix", [
    ("5pm", "pm"), (r"5\text{ a.m.}", "am"), ("5:30 PM", "pm"), (r"3 \pm 1", None), ("5", None), (r"\text{am}", None),
])
def test_time_suffix(answer: str, suffix: str | None) -> None:
    assert rules.time_suffix(answer) == suffix


def test_time_mismatch_and_normalize_text() -> None:
    assert rules.time_mismatch("5pm", "5am") and rules.time_mismatch("5", "5am") and not rules.time_mismatch("5 a.m.", "5am")
    assert not rules.time_mismatch("5pm", "5")
    assert rules.normalize_text("E_{1}, E_{2}") == rules.normalize_text("E_1,E_2") == "E_1,E_2"
    assert rules.normalize_text(r"\left( \dfrac{1}{2}, \text{yes} \right).") == r"(\frac{1}{2},yes)"
    assert rules.normalize_text("E_1,E_3") != rules.normalize_text("E_1,E_2")


def test_numbers_agree_relatively_and_integers_exactly():
    from harness.grading.rules import numbers_agree

    assert numbers_agree(6.1e-12, 6.1e-12) and numbers_agree(1.0099, 1.0) and not numbers_agree(1.0101, 1.0)
    assert not numbers_agree(4.2e-9, 6.1e-12) and not numbers_agree(6.1e-12, 4.2e-9)  # any magnitude
    assert numbers_agree(-4.0e-3, -4e-3) and not numbers_agree(4e-3, -4e-3)
    assert numbers_agree(10**17, 10**17) and not numbers_agree(10**17 + 1, 10**17)  # ints: exact, beyond floats
    assert numbers_agree(0, 0) and not numbers_agree(1e-30, 0)  # a gold of 0 needs 0
    assert numbers_agree(complex(1, 1), complex(1, 1.001)) and not numbers_agree(complex(1, 1), complex(1, -1))
