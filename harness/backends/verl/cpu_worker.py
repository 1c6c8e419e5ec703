"""Imported by verl in every process of a CPU `main_ppo` (VERL_USE_EXTERNAL_MODULES): the CPU workarounds.

See harness.backends.verl.compat (activate_cluster_worker) for what each one does and why.
"""

from harness.backends.verl import compat

compat.activate_cluster_worker()
