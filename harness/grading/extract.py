"""Answer extraction, the pre-check on hostile answers, and exact-match grading (all pure, linear time).

``extract_answer`` takes the last ``\\boxed{}``/``\\fbox{}`` of the response, else the answer after
the last "the answer is"/"final answer is", else the last number in the response's tail
(Qwen2.5-Math's order). ``precheck`` rejects answers over ``max_answer_chars``, nested deeper than
``max_depth`` or holding a numeric power tower, without starting any parser. ``grade_exact`` is the
grader of the synthetic tasks. Math grading (math-verify) is ``harness.grading.grader``.
"""

from __future__ import annotations

import re

import numpy as np

from harness.grading import rules as rules

MAX_ANSWER_CHARS = 1000
MAX_DEPTH = 50
TAIL_CHARS = 4000  # fallbacks (final-answer phrase, last number) only look at the response's tail

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")
# a numeric power tower (9^{9^9}, 10^{-10^{10}}) or an exponent with 5+ digits: sympy would try to
# evaluate it exactly. None of the 13,100 MATH/AMC/AIME gold answers matches.
_HUGE_POWER_RE = re.compile(r"\d\s*\^\s*\{?\s*-?\s*\d+\s*\^|\^\s*\{?\s*-?\s*\d{5,}")
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _braced(text: str, start: int) -> str | None:
    """The content of the balanced ``{...}`` group opening at text[start], or None if unbalanced.

    Vectorised (numpy cumsum over brace marks), so a megabyte of braces costs milliseconds.
    """
    codes = np.frombuffer(text[start:].encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    step = (codes == 123).astype(np.int64) - (codes == 125)
    step[1:][codes[:-1] == 92] = 0  # escaped \{ and \} do not count
    closes = np.flatnonzero(np.cumsum(step) == 0)
    return text[start + 1 : start + int(closes[0])] if closes.size else None


def extract_boxed(text: str, attempts: int = 3) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (also ``\\boxed 5``), else None.

    Only the last ``attempts`` markers are tried, which keeps hostile inputs linear.
    """
    for m in list(_BOX_RE.finditer(text))[::-1][:attempts]:
        end = m.end()
        if text[end : end + 1] == "{":
            inner = _braced(text, end)
            if inner is not None:
                return inner.strip()
        else:
            tail = re.match(r"[^\s$]+", text[end : end + 200])
            if tail:
                return tail.group(0)
    return None


def extract_answer(response: str, last_number_fallback: bool = True) -> str | None:
    """The final answer in a response: last boxed, else the "the answer is X" phrase, else the last number."""
    boxed = extract_boxed(response)
    if boxed is not None:
        return boxed
    tail = response[-TAIL_CHARS:]
    phrase = rules.answer_phrase(tail)
    if phrase is not None:
        return phrase
    if last_number_fallback:
        numbers = _NUMBER_RE.findall(tail)
        if numbers:
            return numbers[-1].replace(",", "")
    return None


def max_nesting(text: str) -> int:
    """Deepest nesting of (), [], {} in text (linear time)."""
    depth = best = 0
    for ch in text:
        if ch in "({[":
            depth += 1
            best = max(best, depth)
        elif ch in ")}]":
            depth = max(0, depth - 1)
    return best


def precheck(answer: str, max_answer_chars: int = MAX_ANSWER_CHARS, max_depth: int = MAX_DEPTH) -> bool:
    """True if the answer is small, shallow and free of numeric power towers (safe for math-verify)."""
    if len(answer) > max_answer_chars or _HUGE_POWER_RE.search(answer):
        return False
    return max_nesting(answer) <= max_depth


# ----------------------------------------------------------------------------- exact match
def normalize_exact(answer: str) -> str:
    """Whitespace-free, ``$``-free, trailing-period-free form; numbers like 27.0 become 27."""
    s = re.sub(r"\s+", "", answer).strip("$").rstrip(".")
    try:
        f = float(s.replace(",", ""))
        return str(int(f)) if f.is_integer() and abs(f) < 1e18 else repr(f)
    except ValueError:
        return s


def grade_exact(response: str, gold: str, extract: bool = True) -> bool:
    """Exact-match grading for synthetic tasks (after extraction and light normalisation)."""
    pred = extract_answer(response) if extract else response
    return pred is not None and normalize_exact(pred) == normalize_exact(str(gold))

