"""Answer-form conventions applied around math-verify: pure string functions, each unit-tested.

math-verify decides mathematical equivalence; these rules decide what is compared. Where a rule
is a convention, it follows Qwen2.5-Math's evaluation code (``evaluation/parser.py`` and
``evaluation/grader.py``, the math-evaluation-harness lineage) and says where it is narrower.

1. **Answer phrase** (``answer_phrase``): without a ``\\boxed{}``, the answer is what follows the
   last "the answer is" / "final answer is" (Qwen: ``pred_str.split("he answer is")[-1]``), taken
   up to its closing ``$``/``\\)``/``\\]`` or the end of the sentence, so numbers in text after it
   are not mistaken for the answer. The last-number fallback comes only after this.
2. **Multiple choice** (``choice_letter``): when the gold is a single letter A-E (optionally
   ``(D)``, ``\\text{(D)}``), the prediction is reduced to its option letter: the first
   parenthesised ``(X)``, else a lone letter, else (Qwen's ``choice_answer_clean``) the last
   stand-alone capital A-E. ``(D) (2,0)`` and ``\\text{(D) } 2`` both give D.
3. **Percent** (``percent_forms``): a ``%`` on either side makes two readings of that side, the
   number itself and the number / 100 (both written without the sign), so ``17.5\\%`` matches ``17.5`` and ``0.175``. Qwen's
   ``math_equal(include_percentage=True)`` accepts g/100, g and 100 g for every numeric gold, with
   or without a percent sign; we apply it only when a ``%`` is written (a bare 0.05 is not 5).
4. **Scientific notation** (``normalize_scientific``): ``1e-3``, ``2.5E+4`` written with digits on
   both sides of the ``e`` mean 10^k (as in Python and Qwen's ``float()`` path), not Euler's e.
5. **Time of day** (``time_suffix``): a gold with a.m./p.m. needs the same suffix in the
   prediction (math-verify drops both, so ``5pm`` matched ``5am``).
6. **String comparison** (``normalize_text``): when either side is not parsed into a math
   object, the two strings are compared after removing whitespace, ``\\left``/``\\right``, spacing
   commands, ``\\text{}`` wrappers and single-character braces (``E_{1}, E_{2}`` = ``E_1,E_2``);
   a subset of Qwen's ``strip_string``.
7. **Numbers agree relatively** (``numbers_agree``): when both sides are single numbers, math-verify's
   verdict stands only if they also agree to 1% of the gold, at any magnitude (math-verify rounds
   to a fixed number of decimals, so ``4.2\times10^{-9}`` matched a gold of ``6.1e-12``); two
   integers must be equal. This only ever rejects. A gold written with few significant figures is
   matched to within 1% of what it says: ``0.33`` accepts ``0.3311`` but not ``1/3`` (1.01% off) and
   not ``0.34``; write such golds with the digits they mean.
"""

from __future__ import annotations

import re

# ----------------------------------------------------------------------------- 1. answer phrase
_PHRASE_RE = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*", re.IGNORECASE)
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def answer_phrase(text: str) -> str | None:
    """The answer after the last "the answer is" / "final answer is", or None.

    ``... the answer is $2017^{98}$. Check: 3 + 4 = 7`` -> ``2017^{98}``.
    """
    last = None
    for last in _PHRASE_RE.finditer(text):
        pass
    if last is None:
        return None
    rest = text[last.end() : last.end() + 400]
    for opening, closing in _DELIMS:
        if rest.startswith(opening):
            end = rest.find(closing, len(opening))
            inner = rest[len(opening) : end] if end > 0 else ""
            return inner.strip() or None
    m = re.match(r"(.{1,200}?)(?:\.\s|\.$|$|\n|,\s|;|\s+I hope)", rest, re.DOTALL)
    answer = (m.group(1) if m else rest[:200]).strip().rstrip(".").strip("$ ")
    return answer or None


# ----------------------------------------------------------------------------- 2. multiple choice
_CHOICE_GOLD_RE = re.compile(
    r"^\s*\$?\s*(?:\\(?:text|mathrm|textbf)\s*\{\s*)?\(?\s*([A-E])\s*\)?\s*\}?\s*\$?\s*$"
)
_CHOICE_PAREN_RE = re.compile(r"\(\s*([A-E])\s*\)")
_CHOICE_LONE_RE = re.compile(
    r"^[\s${(]*(?:\\(?:text|mathrm|textbf)\s*\{)?\s*\(?\s*([A-E])\s*\)?\s*[.:]?\s*\}?[\s$]*$"
)
_CHOICE_LAST_RE = re.compile(r"\b([A-E])\b")


def choice_gold(gold: str) -> str | None:
    """The option letter if the gold is a multiple-choice letter (``D``, ``(D)``, ``\\text{(D)}``)."""
    m = _CHOICE_GOLD_RE.match(gold)
    return m.group(1) if m else None


def choice_letter(pred: str) -> str | None:
    """The option letter a prediction picks: first ``(X)``, else a lone letter, else the last stand-alone A-E."""
    for rx in (_CHOICE_PAREN_RE, _CHOICE_LONE_RE):
        m = rx.search(pred)
        if m:
            return m.group(1)
    found = _CHOICE_LAST_RE.findall(pred)
    return found[-1] if found else None


# ----------------------------------------------------------------------------- 3. percent
_PERCENT_RE = re.compile(r"\s*(?:\\%|%|\\text\{\s*\\?%\s*\}|(?:\\,)?\\text\{\s*percent\s*\})\s*$")


def percent_forms(answer: str) -> list[str]:
    """[answer] or, when it ends in a percent sign, [x, x/100] written without the sign.

    The sign never reaches math-verify: its reading of ``\\%`` depends on the installed
    latex2sympy2_extended/antlr4 (with verl's antlr4 4.9.3, ``17.5\\%`` stays an unparsed string).
    """
    stripped = _PERCENT_RE.sub("", answer).strip()
    return [stripped, f"\\frac{{{stripped}}}{{100}}"] if stripped and stripped != answer.strip() else [answer]


# ----------------------------------------------------------------------------- 4. scientific notation
_SCI_RE = re.compile(r"(?<![\w\\.])(\d+(?:\.\d+)?)[eE]([+-]?\d+)(?![\w.])")


def normalize_scientific(answer: str) -> str:
    """``1e-3`` -> ``1\\times10^{-3}`` (digits on both sides of the e); ``2e`` and ``e^{-3}`` unchanged."""
    return _SCI_RE.sub(lambda m: f"{m.group(1)}\\times10^{{{int(m.group(2))}}}", answer)


# ----------------------------------------------------------------------------- 5. time of day
_TIME_RE = re.compile(r"(?<![A-Za-z\\])([ap])\.?\s*m\b\.?", re.IGNORECASE)


def time_suffix(answer: str) -> str | None:
    """"am" or "pm" if the answer is a clock time with a suffix (``5pm``, ``5\\text{ a.m.}``), else None."""
    if not re.search(r"\d", answer):
        return None
    found = _TIME_RE.findall(answer)
    return found[-1].lower() + "m" if found else None


def time_mismatch(pred: str, gold: str) -> bool:
    """True if the gold has an a.m./p.m. suffix and the prediction does not have the same one."""
    g = time_suffix(gold)
    return g is not None and time_suffix(pred) != g


# ----------------------------------------------------------------------------- 6. string comparison
_DROP_RE = re.compile(r"\\left|\\right|\\[!,;:> ]|\\quad|\\qquad|\\displaystyle|\s+|\$")
_WRAP_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_ONE_BRACE_RE = re.compile(r"([_^])\{(\w)\}")


def normalize_text(answer: str) -> str:
    """A whitespace- and markup-insensitive form for comparing answers that are not parsed as math."""
    s = answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",")
    s = _WRAP_RE.sub(r"\1", s)
    s = _DROP_RE.sub("", s)
    s = _ONE_BRACE_RE.sub(r"\1\2", s)
    return s.rstrip(".")


# ----------------------------------------------------------------------------- 7. numbers agree relatively
REL_TOL = 0.01


def numbers_agree(pred: int | float | complex, gold: int | float | complex, rel_tol: float = REL_TOL) -> bool:
    """Two integers: equal. Otherwise |pred - gold| <= rel_tol * |gold| (gold 0: pred exactly 0)."""
    if isinstance(pred, int) and isinstance(gold, int):
        return pred == gold
    return abs(pred - gold) <= rel_tol * abs(gold)
