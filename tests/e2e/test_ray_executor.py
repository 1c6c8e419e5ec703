"""`--executor ray` on a local Ray instance: the process pool's results, skip / resume / Ctrl-C semantics,
and no Ray process left behind."""

import importlib.util
import os
import signal
import socket
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.core import results
from harness.cli.app import main
from harness.execution.ray_pool import RayPool, init_local

pytestmark = pytest.mark.e2e
ray = pytest.importorskip("ray")
_spec = importlib.util.spec_from_file_location("cli_helpers", Path(__file__).with_name("cli_helpers.py"))
h = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h)

TINY = {
    "name": "tiny", "seeds": [0, 1],
    "model": {"n_layer": 1, "n_head": 2, "d_model": 32},
    "warm_start": {"steps": 20, "batch_size": 16, "min_ops": 2, "max_ops": 3},
    "train": {"steps": 3, "prompts_per_step": 4, "group_size": 4, "mini_batches": 2, "max_new_tokens": 12,
              "lr": 1.0e-3, "checkpoint_every": 2},
    "eval": {"every": 2, "n": 4, "benchmarks": {"easy": {"min_ops": 2, "max_ops": 3, "problems": 4}}},
    "variants": [{"name": "grpo", "preset": "grpo"}, {"name": "ngrpo", "preset": "ngrpo"}],
}


def cli(*args: str) -> None:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    assert e.value.code in (0, None)


def descendants(pid: int) -> set[int]:
    """Live descendant processes of pid (from /proc; Ray's raylet, GCS and workers are ours)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parent[int(d.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def no_ray_processes_left(before: set[int], timeout: float = 30.0) -> set[int]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        left = descendants(os.getpid()) - before
        if not left:
            return left
        time.sleep(0.5)
    return left


def same_runs(a: Path, b: Path) -> None:
    ra, rb = results.find_run_dirs(a), results.find_run_dirs(b)
    assert [r.name for r in ra] == [r.name for r in rb] and ra
    for x, y in zip(ra, rb):
        assert results.read_status(y)["state"] == "done"
        pd.testing.assert_frame_equal(results.read_samples(x), results.read_samples(y))
        assert h.strip_times(results.read_metrics_records(x)) == h.strip_times(results.read_metrics_records(y))


def in_session(sid: int) -> set[int]:
    """Live processes of session sid (Ray's raylet, GCS and workers stay in the session of the harness
    that started them: Ray blocks SIGINT in them but does not call setsid)."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z" and int(fields[3]) == sid:
                    out.add(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def test_harness_run_on_ray_resumes_after_ctrl_c_like_the_process_pool(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    exp = tmp_path / "tiny.yaml"
    exp.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "steps": 16, "checkpoint_every": 100}}))
    common = ["--cache-dir", str(tmp_path / "cache"), "--jobs", "2"]
    cli("run", str(exp), "--results", str(tmp_path / "proc"), *common)
    # Ctrl-C to a `harness run --executor ray` job: running Ray tasks checkpoint their step, exit 130
    proc = h.Harness("run", exp, "--results", tmp_path / "ray", "--executor", "ray", *common, cwd=tmp_path,
                     gate_step=2)  # each run waits at step 2 for the stop: the signal cannot lose a race to its end
    dirs = [tmp_path / "ray" / "tiny" / r.name for r in results.find_run_dirs(tmp_path / "proc" / "tiny")]
    deadline = time.time() + 300
    while not any(d.exists() and 2 <= len(h.train_steps(d)) < 16 for d in dirs if (d / "metrics.jsonl").exists()):
        assert proc.proc.poll() is None and time.time() < deadline, proc.output
        time.sleep(0.05)
    proc.signal_group(signal.SIGINT)
    assert proc.finish() == 130, proc.output
    assert "Traceback" not in proc.output and "stopped:" in proc.output
    stopped = [d for d in dirs if d.exists() and results.read_status(d).get("state") == "pending"]
    assert stopped, proc.output
    for d in stopped:  # each saved the step it was on: nothing lost
        st = results.read_status(d)
        assert "interrupted" in st["error"] and 1 <= st["step"] == max(h.train_steps(d)) <= 2, (d.name, st)
    deadline = time.time() + 30
    while in_session(proc.proc.pid) and time.time() < deadline:  # the local instance went with the command
        time.sleep(0.5)
    assert in_session(proc.proc.pid) == set()
    # the same command resumes (in this process: the instance it starts is stopped again)
    before = descendants(os.getpid())
    cli("run", str(exp), "--results", str(tmp_path / "ray"), "--executor", "ray", *common)
    assert not ray.is_initialized()
    assert no_ray_processes_left(before) == set()
    same_runs(tmp_path / "proc" / "tiny", tmp_path / "ray" / "tiny")
    # skip semantics are the process pool's: a finished experiment starts no Ray and rewrites nothing
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("samples.parquet")}
    cli("run", str(exp), "--results", str(tmp_path / "ray"), "--executor", "ray", *common)
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("samples.parquet")}
    assert not ray.is_initialized()


def test_harness_sweep_on_ray_matches_the_process_pool(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    exp = {**TINY, "seeds": [0], "variants": [{"name": "ngrpo", "preset": "ngrpo"}]}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(exp))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"experiment": "tiny.yaml", "variant": "ngrpo", "benchmark": "easy", "pruner": "none",
                                     "sampler": "grid", "seeds": [0, 1],
                                     "params": {"eps_pos": {"values": [0.1, 0.3], "low": 0.1, "high": 0.3}}}))
    before = descendants(os.getpid())
    init_local(num_cpus=2, object_store_memory=100 * 1024**2, log_to_driver=False)
    try:  # an already running instance is used as it is (and left running)
        cli("sweep", str(sweep), "--results", str(tmp_path / "ray"), "--executor", "ray", "--jobs", "2",
            "--cache-dir", str(tmp_path / "cache"))
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert no_ray_processes_left(before) == set()
    cli("sweep", str(sweep), "--results", str(tmp_path / "proc"), "--jobs", "2", "--cache-dir", str(tmp_path / "cache"))
    same_runs(tmp_path / "proc" / "tiny_sweep_ngrpo", tmp_path / "ray" / "tiny_sweep_ngrpo")
    import json

    values = {d: sorted((t["params"]["eps_pos"], t["value"]) for t in json.loads((tmp_path / d / "tiny_sweep_ngrpo" / "trials.json").read_text()))
              for d in ("proc", "ray")}
    assert values["proc"] == values["ray"] and len(values["ray"]) == 2


def _is_loopback(ip: str) -> bool:
    import ipaddress

    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or addr).is_loopback


def listening_sockets(pids: set[int]) -> list[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every TCP socket in LISTEN and every unconnected UDP socket."""
    psutil = pytest.importorskip("psutil")
    out = []
    for pid in sorted(pids):
        try:
            proc = psutil.Process(pid)
            name = proc.name()
            for c in proc.net_connections(kind="inet"):
                udp = c.type == socket.SOCK_DGRAM
                if c.laddr and (c.status == psutil.CONN_LISTEN or (udp and not c.raddr)):
                    out.append((pid, name, c.laddr.ip, c.laddr.port))
        except psutil.NoSuchProcess:
            continue
    return out


def test_local_ray_listens_on_loopback_only(monkeypatch):
    """Every server of the executor's local Ray instance (GCS, raylet, object manager, workers, agents,
    metrics) listens on 127.0.0.1: none on 0.0.0.0, :: or the machine's interface address."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    before = descendants(os.getpid())
    with RayPool(jobs=1) as pool:
        def pid() -> int:  # nested: pickled by value (the workers cannot import this test module)
            return os.getpid()

        worker = ray.get(ray.remote(num_cpus=0)(pid).remote())  # a worker process exists too
        ours = descendants(os.getpid()) - before
        sockets = listening_sockets(ours)
        names = {n for _, n, _, _ in sockets}
        assert worker in ours and {"gcs_server", "raylet"} <= names, sockets  # the check sees Ray's servers
        assert [s for s in sockets if not _is_loopback(s[2])] == [], sockets
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        assert pool.free() == 1
    assert no_ray_processes_left(before) == set()
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") is None  # restored after the start
