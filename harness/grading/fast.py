"""The grader's fast tier: the answers a cheap comparison decides for certain, without math-verify.

``harness.grading.grader`` asks ``verdict(pred, gold)`` before it sends an answer to a math-verify
worker; ``None`` means "not sure", and the answer goes on to math-verify as before. The tier may only
ever give the verdict math-verify's path would give, so it decides two cases only:

1. **Both sides are plain numbers** (``canonical`` then ``number``): an integer, a decimal, ``a/b`` or
   ``\\frac{a}{b}`` (also ``\\dfrac``/``\\tfrac``), optionally negative, at most 18 digits a part, no
   leading zeros, no thousands separators, percent signs or exponents. Equal values (exact rationals)
   are correct. Two unequal integers are wrong, and so are values more than twice ``rules.REL_TOL``
   of the gold apart: ``rules.numbers_agree`` rejects those after math-verify whatever it says (the
   factor 2 is a margin for its floating-point arithmetic). Anything in between (``0.3311`` against
   ``0.33``) is math-verify's to decide, with its rounding.
2. **The two strings are equal after** ``rules.normalize_text``: correct, the comparison math-verify's
   worker ends with. The grader applies it only once the gold's parse is cached (its status, ``ok`` or
   ``gold_unparsed``, is the answer's), so it lives in ``MathGrader.grade_many``, not here.

Option letters against a letter gold and the a.m./p.m. rule are settled earlier, in
``MathGrader.prepare``, without any parser. ``canonical`` strips what math-verify reads the same way:
surrounding whitespace and ``$``, and a ``\\boxed{}`` around the whole answer. It keeps what math-verify
does not read as a number, so that it goes to math-verify (measured, tests/unit/test_grading_fast.py):
a trailing period (``5.`` is not parsed: it only equals ``5`` as text) and ``\\text{}``/``\\mathrm{}``
(``\\text{5}`` equals ``5`` but not ``5.0``); the string rule settles those when the text is equal.
Everything here is linear-time string work on answers that passed ``precheck``.
"""

from __future__ import annotations

import re
from fractions import Fraction

from harness.grading import rules

_WRAPPED_RE = re.compile(r"\\boxed\s*\{(.*)\}", re.DOTALL)
_N = r"(?:0|[1-9]\d{0,17})"  # a part: no leading zeros, at most 18 digits
_INT_RE = re.compile(rf"-?{_N}")
_DEC_RE = re.compile(rf"-?{_N}\.\d{{1,18}}")
_SLASH_RE = re.compile(rf"(-?)({_N})/([1-9]\d{{0,17}})")
_FRAC_RE = re.compile(rf"(-?)\\frac\{{({_N})\}}\{{([1-9]\d{{0,17}})\}}")
_MARGIN = 2 * Fraction(rules.REL_TOL)  # wrong only when clearly beyond numbers_agree's tolerance


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


def canonical(answer: str) -> str:
    """The answer without surrounding whitespace/``$`` and whole-answer ``\\boxed{}``; ``\\dfrac``/``\\tfrac``
    read as ``\\frac``."""
    s = answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    while True:
        t = s.strip().strip("$").strip()
        m = _WRAPPED_RE.fullmatch(t)
        if m and _balanced(m.group(1)):
            t = m.group(1)
        if t == s:
            return s
        s = t


def number(text: str) -> tuple[Fraction, bool] | None:
    """(exact value, written as an integer) if text, as ``canonical`` leaves it, is a plain number."""
    s = canonical(text)
    if _INT_RE.fullmatch(s):
        return Fraction(int(s)), True
    if _DEC_RE.fullmatch(s):
        return Fraction(s), False
    m = _SLASH_RE.fullmatch(s) or _FRAC_RE.fullmatch(s)
    if m:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        return (-value if m.group(1) else value), False
    return None


def verdict(pred: str, gold: str) -> bool | None:
    """True / False when both sides are plain numbers and the verdict is certain, else None (unsure)."""
    p, g = number(pred), number(gold)
    if p is None or g is None:
        return None
    (pv, p_int), (gv, g_int) = p, g
    if pv == gv:
        return True
    if (p_int and g_int) or abs(pv - gv) > _MARGIN * abs(gv):
        return False
    return None


def same_text(pred: str, gold: str) -> bool:
    """The worker's last comparison (``rules.normalize_text`` equal): correct once the gold parse is known."""
    return rules.normalize_text(pred) == rules.normalize_text(gold)
