"""Before a verl run starts: is every estimator and loss it names registered in a *fresh* verl process?

verl imports plugins through the `verl.plugins` entry point and swallows their import errors (a
broken plugin only surfaces at the first training step as "Unknown advantage estimator"). This
check starts a new interpreter with the run's environment, imports verl exactly as a Ray worker
would, and reports what is missing together with the plugin's own import error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from harness.backends.verl.plugin import PLUGINS_ENV
from harness.core.errors import UserError

_PROBE = r"""
import json, sys, traceback
need_adv, need_loss = json.loads(sys.argv[1]), json.loads(sys.argv[2])
import verl.trainer.ppo.core_algos as ca
out = {"missing_adv": [n for n in need_adv if n not in ca.ADV_ESTIMATOR_REGISTRY and n not in {e.value for e in ca.AdvantageEstimator}],
       "missing_loss": [n for n in need_loss if n not in ca.POLICY_LOSS_REGISTRY], "plugin_error": None}
if out["missing_adv"] or out["missing_loss"]:
    try:
        import harness.backends.verl.plugin  # noqa: F401  (re-raise what verl swallowed)
    except Exception:
        out["plugin_error"] = traceback.format_exc(limit=3).strip().splitlines()[-1]
print("PREFLIGHT " + json.dumps(out))
"""


def check_registered(
    estimators: set[str], losses: set[str], plugins: list[str], timeout: float = 180.0
) -> None:
    """UserError unless a fresh process that imports verl sees every name."""
    env = {**os.environ, PLUGINS_ENV: os.pathsep.join(plugins)}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, json.dumps(sorted(estimators)), json.dumps(sorted(losses))],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise UserError(
            f"verl preflight: importing verl took more than {timeout:.0f} s in a fresh process"
        ) from None
    line = next((l for l in proc.stdout.splitlines() if l.startswith("PREFLIGHT ")), None)
    if line is None:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"verl preflight: a fresh `import verl` failed ({tail})")
    out = json.loads(line.removeprefix("PREFLIGHT "))
    if out["missing_adv"] or out["missing_loss"]:
        names = out["missing_adv"] + out["missing_loss"]
        why = out["plugin_error"] or (
            "VERL_USE_EXTERNAL_PLUGINS excludes the plugin"
            if os.environ.get("VERL_USE_EXTERNAL_PLUGINS") not in (None, "", "auto")
            else "is ngrpo-harness installed (pip install -e .) in this environment?"
        )
        raise UserError(f"verl preflight: {', '.join(names)} not registered in a fresh verl process: {why}")
