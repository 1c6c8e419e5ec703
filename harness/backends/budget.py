"""When a run evaluates and stops: after train.steps optimizer steps, or once train.budget is spent (issue 20).

Every step logs what it generated, every sampling round included (harness.backends.batching):

    budget/step_rollouts, budget/step_tokens   this step's responses and response tokens
    budget/rollouts, budget/tokens             cumulative, from step 1 (a resumed run continues the sums)
    budget/overshoot                           on a budgeted run's last step: spent - budget (>= 0)

With a budget, the run stops after the first step whose cumulative spend reaches it (that step
completes, so it may overshoot by less than one step's spend) or at the step cap train.steps
(budget / (B x G): no step spends less than one round); it evaluates before RL, at the first step whose
spend reaches each of eval.budget_points equal fractions of the budget, and at its last step. Without
one: every eval.every steps and at train.steps, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLLOUTS, TOKENS = "budget/rollouts", "budget/tokens"
STEP_ROLLOUTS, STEP_TOKENS = "budget/step_rollouts", "budget/step_tokens"
OVERSHOOT = "budget/overshoot"
DEFAULT_POINTS = 3


def spent_through(records: list[dict], step: int) -> tuple[int, int]:
    """(rollouts, tokens) spent by the end of `step`, from a run's metrics records (0, 0 before step 1)."""
    train = [r for r in records if r.get("kind") == "train" and 0 < r.get("step", 0) <= step and ROLLOUTS in r]
    if not train:
        return 0, 0
    last = max(train, key=lambda r: r["step"])
    return int(last[ROLLOUTS]), int(last[TOKENS])


def thresholds(amount: int, points: int) -> list[int]:
    """The spends at which a budgeted run evaluates: ceil(j * amount / points), j = 1..points."""
    return [-(-j * amount // points) for j in range(1, points + 1)]


@dataclass
class Schedule:
    """One run's evaluation and stopping rule (module docstring). Feed it every step's record with `after`."""

    steps: int                       # train.steps: the step cap (derived from the budget when there is one)
    every: int                       # eval.every (steps mode)
    unit: str | None = None          # "rollouts" | "tokens" with a budget
    amount: int | None = None
    points: list[int] = field(default_factory=list)  # spends still to evaluate at, ascending
    rollouts: int = 0
    tokens: int = 0

    @classmethod
    def of(cls, spec, start: int = 0, records: list[dict] | None = None) -> "Schedule":
        """The schedule of `spec` resumed after `start` (records: the run's metrics, for the spend so far)."""
        tr, ev = spec.train, spec.eval
        s = cls(tr.steps, ev.every)
        s.rollouts, s.tokens = spent_through(records or [], start)
        if tr.budget is not None:
            s.unit, s.amount = tr.budget.unit, tr.budget.amount
            s.points = [t for t in thresholds(s.amount, ev.budget_points or DEFAULT_POINTS) if t > s.spent]
        return s

    @property
    def spent(self) -> int:
        return self.rollouts if self.unit == "rollouts" else self.tokens

    def after(self, step: int, rec: dict) -> tuple[bool, bool]:
        """Add the step's spend to rec (cumulative budget/*); -> (evaluate now, this is the last step)."""
        self.rollouts += int(rec.get(STEP_ROLLOUTS, 0))
        self.tokens += int(rec.get(STEP_TOKENS, 0))
        rec[ROLLOUTS], rec[TOKENS] = self.rollouts, self.tokens
        if self.unit is None:
            last = step >= self.steps
            return step % self.every == 0 or last, last
        last = self.spent >= self.amount or step >= self.steps
        crossed = bool(self.points) and self.spent >= self.points[0]
        while self.points and self.spent >= self.points[0]:
            self.points.pop(0)
        if last:
            rec[OVERSHOOT] = max(0, self.spent - self.amount)
        return crossed or last, last

    def status(self) -> dict:
        """status.json's `budget` entry of a budgeted run (empty without a budget)."""
        if self.unit is None:
            return {}
        return {"budget": {"unit": self.unit, "amount": self.amount, "spent": self.spent,
                           "overshoot": max(0, self.spent - self.amount), "rollouts": self.rollouts,
                           "tokens": self.tokens}}
