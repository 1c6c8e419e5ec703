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


def _register_platform() -> None:
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
            return "CPU"

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
