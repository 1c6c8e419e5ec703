"""verl's real `python -m verl.trainer.main_ppo` on the CPU (`verl: {mode: cluster, device: cpu}`).

experiments/verl_cluster_cpu.yaml as shipped (GRPO and NGRPO, 4 steps each): a local Ray, verl's FSDP2 actor,
vLLM's CPU engine as the rollout server with the actor's weights synced into it every step, verl's reward
manager calling the harness's reward function, validation dumps, the file logger and checkpoints. While it
runs, every listening socket of main_ppo's session (Ray's GCS, raylet, workers and agents, TransferQueue,
vLLM's HTTP server and engine, torch.distributed) is sampled: all must be on loopback. The NGRPO run doubles
as the fault-tolerance run (one set of main_ppo launches serves every test): its main_ppo is SIGKILLed after
its first checkpoint, the rerun resumes from verl's checkpoint and has verl's actor worker SIGKILLed mid-step,
and the third `harness run` ends it with each step once in metrics.jsonl and samples.parquet.
"""

import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("verl", reason="verl backend tests need the verl extra (make test installs it)")
pytest.importorskip(
    "vllm", reason="main_ppo on the CPU needs vLLM's CPU engine (make install-dev installs it)"
)
psutil = pytest.importorskip("psutil")
from harness.core import results  # noqa: E402

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "experiments" / "verl_cluster_cpu.yaml"


def main_ppo_sessions() -> set[int]:
    """Session ids of the running main_ppo processes (cluster.run starts each in a session of its own)."""
    out = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "verl.trainer.main_ppo" in (p.info["cmdline"] or []):
                out.add(os.getsid(p.pid))
        except (psutil.Error, OSError):
            pass
    return out


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def is_loopback(host: str) -> bool:
    ip = ipaddress.ip_address(host.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class ListenerSampler(threading.Thread):
    """Every `every` seconds: the listening TCP sockets and bound UDP sockets of main_ppo's session."""

    def __init__(self, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.every, self.stop, self.seen = every, threading.Event(), {}

    def run(self) -> None:
        while not self.stop.is_set():
            sessions = main_ppo_sessions()
            for c in psutil.net_connections(kind="inet") if sessions else []:
                listening = c.status == psutil.CONN_LISTEN or (c.type == 2 and not c.raddr)  # 2: SOCK_DGRAM
                if not (listening and c.pid and c.laddr):
                    continue
                try:
                    proc = psutil.Process(c.pid)
                    if os.getsid(c.pid) in sessions:
                        self.seen[(c.laddr.ip, c.laddr.port)] = proc.name()
                except (psutil.Error, OSError):
                    pass
            self.stop.wait(self.every)


def wait_for(cond, proc, timeout: float = 1200.0):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not cond():
        time.sleep(0.5)
    return cond()


def logged_steps(res: Path) -> list[int]:
    """Steps in verl's file logs (one JSON object per line, written by orjson)."""
    out = []
    for p in sorted(res.rglob("attempt-*.jsonl")):
        for line in p.read_text().splitlines():
            try:
                out.append(int(json.loads(line)["step"]))
            except (ValueError, KeyError):
                pass  # a line being written
    return out


def failed_clearly(res: Path, proc, sid: int, expect: str) -> tuple[Path, dict]:
    """The harness exits non-zero with a failed status naming `expect`, and nothing of main_ppo stays alive."""
    assert proc.wait(timeout=300) != 0
    left = lambda: [p.pid for p in psutil.process_iter() if _sid(p.pid) == sid]  # noqa: E731
    deadline = time.time() + 60
    while left() and time.time() < deadline:
        time.sleep(1)
    assert (
        not left()
    ), f"processes of the killed main_ppo still alive: {left()}"  # Ray's workers, vLLM's engine
    (rd,) = [r for r in results.find_run_dirs(res) if results.load_run(r, with_samples=False).state == "failed"]
    status = json.loads((rd / "status.json").read_text())
    assert status["state"] == "failed" and expect in status.get("error", ""), status
    return rd, status


def launch(res: Path, cache: Path) -> subprocess.Popen:
    """`harness run` of the shipped file as a subprocess in a session of its own."""
    cmd = [sys.executable, "-m", "harness", "run", str(SHIPPED), "--results", str(res), "--jobs", "1",
           "--cache-dir", str(cache)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, harness_cli):
    """The shipped file run to the end through three `harness run` launches (GRPO, then NGRPO):

    1. NGRPO's main_ppo (its session: the driver, GCS, raylet) is SIGKILLed after its first checkpoint (and
       that step's log line);
    2. the rerun resumes NGRPO from step 2; verl's actor/reference worker is SIGKILLed once step 3 is logged;
    3. the third launch (in-process) ends the run.
    Returns (root, listening sockets seen, {launch: (run dir, status.json)} of the two failed launches)."""
    root = tmp_path_factory.mktemp("vcc")
    res, cache = root / "res", root / "cache"
    sampler, failed = ListenerSampler(), {}
    sampler.start()
    t0 = time.monotonic()
    try:
        proc = launch(res, cache)
        ckpt = lambda: next((res / "verl_cluster_cpu").glob("ngrpo-*/checkpoints/latest_checkpointed_iteration.txt"),
                            None)  # noqa: E731
        assert wait_for(ckpt, proc) and ckpt().read_text().strip() == "2", "NGRPO: no first checkpoint"
        # verl saves step 2's checkpoint before it logs step 2: a kill in between loses that step's train
        # metrics for good (the resumed launch starts at step 3), so kill once the step is logged too
        assert wait_for(lambda: 2 in logged_steps(ckpt().parents[1]), proc), "NGRPO never logged step 2"
        (sid,) = main_ppo_sessions()
        os.killpg(sid, signal.SIGKILL)  # Ray's workers exit with their raylet
        failed["main_ppo"] = failed_clearly(res, proc, sid, "main_ppo exited with code -9")
        proc = launch(res, cache)
        assert wait_for(lambda: 3 in logged_steps(failed["main_ppo"][0]), proc), "the resumed launch never logged step 3"
        (sid,) = main_ppo_sessions()
        (worker,) = [p for p in psutil.process_iter(["cmdline"])
                     if _sid(p.pid) == sid and (p.info["cmdline"] or [""])[0].startswith("ray::WorkerDict")]
        worker.kill()
        failed["worker"] = failed_clearly(res, proc, sid, "main_ppo exited with code")
        harness_cli("run", SHIPPED, "--results", res, "--jobs", "1", "--cache-dir", cache)
    finally:
        sampler.stop.set()
        sampler.join()
    print(f"verl_cluster_cpu.yaml, three launches: {time.monotonic() - t0:.0f} s")
    return root, sampler.seen, failed


def test_main_ppo_trains_grpo_and_ngrpo_on_the_cpu_and_reports(shipped, harness_cli):
    root, _, _ = shipped
    runs = results.find_run_dirs(root / "res" / "verl_cluster_cpu")
    assert sorted(r.name.split("-")[0] for r in runs) == ["grpo", "ngrpo"]
    for rd in runs:
        rec = results.load_run(rd)
        assert rec.state == "done" and rec.error is None, rec.status
        assert list((rd / "verl" / "metrics").glob("attempt-*.log"))  # main_ppo's own log
        for f in (
            "verl/val/0.jsonl",
            "verl/val/4.jsonl",
            "checkpoints/global_step_2",
            "checkpoints/global_step_4/actor",
        ):
            assert (rd / f).exists(), f
        assert (rd / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "4"
        train = rec.metrics[rec.metrics["kind"] == "train"]
        assert train["step"].tolist() == [1, 2, 3, 4]
        for key in (
            "actor/pg_loss",
            "actor/grad_norm",
            "train/reward",
            "timing_s/gen",
            "timing_s/update_weights",
        ):
            assert train[key].notna().all(), key
        # the rollout server's log-probs of its own samples equal the trained actor's: the weights were synced
        assert (train["training/rollout_probs_diff_max"] < 1e-3).all(), train[
            "training/rollout_probs_diff_max"
        ]
        assert (train["actor/grad_norm"] > 0).all()
        assert sorted(rec.samples["step"].unique().tolist()) == [0, 2, 4]
        assert len(rec.samples) == 3 * 8 * 4 and rec.samples["correct"].dtype == bool
        assert not rec.samples.duplicated(["step", "benchmark", "problem_id", "sample_idx"]).any()
    harness_cli("report", root / "res" / "verl_cluster_cpu", "--out", root / "rep")
    table = (root / "rep" / "verl_cluster_cpu" / "auc_table.md").read_text()
    assert "grpo" in table and "ngrpo" in table


def test_no_socket_of_main_ppo_listens_beyond_loopback(shipped):
    _, seen, _ = shipped
    names = set(seen.values())
    assert {"raylet", "gcs_server"} <= names, names  # the sampler saw Ray's own servers (it can fail)
    print("listeners of main_ppo's session:", sorted(seen.items()))
    outside = {addr: name for addr, name in seen.items() if not is_loopback(addr[0])}
    assert not outside, f"listening beyond loopback: {outside}"


def test_a_sigkilled_main_ppo_and_a_sigkilled_ray_worker_each_fail_clearly_and_the_run_resumes(shipped):
    root, _, failed = shipped
    for launch_, (rd, status) in failed.items():  # failed_clearly checked the state, error and leftovers
        assert rd.name.startswith("ngrpo-"), (launch_, rd)
    rd = failed["main_ppo"][0]
    rec = results.load_run(rd)
    assert rec.state == "done", rec.status
    logs = sorted(p.name for p in (rd / "verl" / "metrics").glob("attempt-*.jsonl"))
    assert len(logs) == 3 and logs[0].endswith("-from-0.jsonl") and logs[1].endswith("-from-2.jsonl"), logs
    assert logs[2].endswith("-from-2.jsonl"), logs  # the worker died before checkpoint 4
    train = rec.metrics[rec.metrics["kind"] == "train"]
    assert train["step"].tolist() == [1, 2, 3, 4]  # no step missing, none twice
    assert rec.metrics[rec.metrics["kind"] == "eval"]["step"].tolist() == [0, 2, 4]
    assert sorted(rec.samples["step"].unique().tolist()) == [0, 2, 4]
    assert not rec.samples.duplicated(["step", "benchmark", "problem_id", "sample_idx"]).any()
    assert len(rec.samples) == 3 * 8 * 4
