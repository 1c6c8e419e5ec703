"""The math-verify side of ``harness.grading.grader``: what runs inside a grading worker subprocess.

``Verifier.handle(task) -> dict`` grades one task (also usable in-process, e.g. by tests);
``worker_main()`` is the subprocess loop (JSON lines on stdin/stdout) with the soft timer. See
``harness.grading.grader`` for the protocol's other side and the statuses.
"""

from __future__ import annotations

import base64
import json
import pickle
import sys

from harness.grading import rules as rules


class SoftTimeout(BaseException):
    """Raised by the worker's timer. A BaseException, so math-verify's ``except Exception`` cannot catch it."""


class Verifier:
    """The worker's grading logic (math-verify imported lazily); usable in-process by tests.

    ``handle(task) -> dict`` for ``{"op": "gold", "gold"}`` (parse a gold once: status, parsed, a
    pickled blob) and ``{"op": "grade", "pred", "gold", "gold_blob"?}`` (verify one answer).
    ``self.fired`` is set by the timer; a task during which it fired ends as "timeout".
    """

    MAX_CACHED_GOLDS = 100_000

    def __init__(self) -> None:
        from math_verify import LatexExtractionConfig, parse, verify

        # the first \\boxed match only: a gold or answer that does not parse as a whole never
        # collapses to a number pulled out of it (math-verify's expression fallbacks are off)
        self._configs = [LatexExtractionConfig(boxed_match_priority=0)]
        self._parse, self._verify = parse, verify
        self.golds: dict[str, list] = {}
        self.fired = False

    def parse_forms(self, text: str) -> list:
        """math-verify parses of every reading of `text` (percent forms, scientific notation)."""
        out: list = []
        for form in rules.percent_forms(rules.normalize_scientific(text)):
            out += self._parse("\\boxed{" + form + "}", self._configs, fallback_mode="first_match",
                               extraction_mode="first_match", parsing_timeout=None, raise_on_error=True)
        return out

    @staticmethod
    def is_parsed(parsed: list) -> bool:
        return any(not isinstance(x, str) for x in parsed)

    @staticmethod
    def numbers(parsed: list) -> list[int | complex]:
        """The values of the parses that are single numbers (an int for an integer): one per reading."""
        out: list[int | complex] = []
        for x in parsed:
            if isinstance(x, str) or not getattr(x, "is_number", False):
                continue
            try:
                out.append(int(x) if x.is_integer else complex(x.evalf(30)))
            except (TypeError, ValueError, OverflowError):  # e.g. beyond a float's range: no value to compare
                continue
        return out

    def numbers_agree(self, gold: list, pred: list) -> bool:
        """rules.numbers_agree for some reading of each side when both are numbers; True otherwise
        (the rule only rejects)."""
        g, p = self.numbers(gold), self.numbers(pred)
        return not g or not p or any(rules.numbers_agree(b, a) for a in g for b in p)

    def gold(self, gold: str, blob: str | None) -> list:
        if gold not in self.golds:
            if len(self.golds) >= self.MAX_CACHED_GOLDS:
                self.golds.clear()
            self.golds[gold] = pickle.loads(base64.b64decode(blob)) if blob else self.parse_forms(gold)
        return self.golds[gold]

    def handle(self, task: dict) -> dict:
        self.fired = False
        try:
            if task["op"] == "gold":
                parsed = self.parse_forms(task["gold"])
                try:
                    blob = base64.b64encode(pickle.dumps(parsed)).decode()
                except Exception:  # noqa: BLE001 - unpicklable: each worker parses it itself
                    blob = None
                res = {"status": "ok" if self.is_parsed(parsed) else "unparsed", "blob": blob,
                       "parsed": next((str(x) for x in parsed if not isinstance(x, str)), None)}
            else:
                gold = self.gold(task["gold"], task.get("gold_blob"))
                pred = self.parse_forms(task["pred"])
                ok = bool(gold) and bool(pred) and bool(self._verify(gold, pred, timeout_seconds=None))
                ok = ok and self.numbers_agree(gold, pred)
                ok = ok or rules.normalize_text(task["pred"]) == rules.normalize_text(task["gold"])
                res = {
                    "correct": ok,
                    "parsed": next((str(x) for x in pred if not isinstance(x, str)), None),
                    "status": "ok",
                }
        except SoftTimeout:
            res = {"status": "timeout"}
        except BaseException as e:  # noqa: BLE001 - any failure is an incorrect answer
            res = {"status": f"error: {type(e).__name__}"}
        if self.fired:  # whatever was computed after the timer fired (a swallowed timeout) is void
            res = {"status": "timeout"}
        res.setdefault("correct", False)
        return res


def worker_main() -> None:  # pragma: no cover - runs in the worker subprocess
    """Worker loop: read JSON tasks from stdin, write JSON verdicts to stdout, one per line."""
    import logging
    import signal

    logging.disable(logging.WARNING)
    verifier = Verifier()

    def on_alarm(signum, frame):
        verifier.fired = True
        raise SoftTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        task = json.loads(line)
        try:
            signal.setitimer(signal.ITIMER_REAL, max(0.05, 0.9 * task["timeout"]))
            res = verifier.handle(task)
        except SoftTimeout:  # fired between handle's own handlers
            res = {"status": "timeout", "correct": False}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            text = json.dumps(res)
        except Exception:  # noqa: BLE001
            text = json.dumps({"correct": False, "status": "error: unserialisable"})
        out.write(text + "\n")
        out.flush()
