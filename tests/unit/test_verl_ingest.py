"""verl's dumps and file-logger metrics -> samples.parquet and metrics.jsonl (written by verl's own writers)."""

from types import SimpleNamespace

import pytest

pytest.importorskip("verl", reason="verl backend tests need the verl extra (make test installs it)")
from verl.trainer.ppo.v1.trainer_base import PPOTrainer  # noqa: E402
from verl.utils.tracking import FileLogger  # noqa: E402

from harness.core import results  # noqa: E402
from harness.backends.verl import ingest  # noqa: E402

SPEC = SimpleNamespace(train=SimpleNamespace(max_new_tokens=8), eval=SimpleNamespace(k_max=None))  # what ingest reads of a RunSpec


def dump(run_dir, step, rows, extra_cols=True):
    """One validation dump through verl's own writer. rows: (bench, pid, session, index, output, acc)."""
    extra = {"reward": [float(r[5]) for r in rows], "acc": [bool(r[5]) for r in rows], "pred": ["x"] * len(rows),
             "harness_benchmark": [r[0] for r in rows], "harness_problem": [r[1] for r in rows],
             "uid": [f"{r[0]}-{r[1]}-uuid_{r[2]}_{r[3]}" for r in rows]}
    if extra_cols:
        extra |= {"harness_length": [len(r[4]) + 1 for r in rows], "harness_truncated": [False] * len(rows)}
    PPOTrainer._write_generations([f"user {r[1]}" for r in rows], [r[4] for r in rows], ["gt"] * len(rows),
                                  [float(r[5]) for r in rows], extra, str(ingest.verl_dir(run_dir) / "val"), step)


def log(run_dir, start, records, monkeypatch):
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(ingest.new_metrics_file(run_dir, start)))
    logger = FileLogger("p", "e")
    for step, data in records:
        logger.log(data, step)
    logger.finish()


def test_dumps_and_logs_become_the_results_layout(tmp_path, monkeypatch):
    rd = tmp_path / "run"
    rows0 = [("easy", "a", s, 0, "12", s < 1) for s in range(2)] + [("hard", "b", s, 0, "1", False) for s in range(2)]
    dump(rd, 0, rows0)
    # step 2: a multi-output session (index 0 and 1): only the final output counts, as in verl's metrics
    rows2 = [("easy", "a", 0, 0, "99", False), ("easy", "a", 0, 1, "12", True), ("easy", "a", 1, 0, "12", True),
             ("hard", "b", 0, 0, "1", True), ("hard", "b", 1, 0, "1", False)]
    dump(rd, 2, rows2)
    # launch 0 logged steps 0-3 and was killed after checkpoint 2; launch 1 resumed from step 2
    log(rd, 0, [(0, {"val-core/easy/acc/mean@2": 0.5}), (1, {"actor/ppo_kl": 0.1, "critic/score/mean": 0.2}),
                (2, {"actor/ppo_kl": 0.2}), (3, {"actor/ppo_kl": 9.9})], monkeypatch)
    log(rd, 2, [(3, {"actor/ppo_kl": 0.3, "response_length/mean": 4.0}), (4, {"actor/ppo_kl": 0.4})], monkeypatch)
    ingest.sync(rd, SPEC)

    s = results.read_samples(rd)
    assert len(s) == 8 and s["step"].tolist() == [0] * 4 + [2] * 4
    at2 = s[s["step"] == 2].set_index(["benchmark", "sample_idx"])
    assert bool(at2.loc[("easy", 0), "correct"]) is True and int(at2.loc[("easy", 0), "length"]) == 3  # final output "12"
    assert s["problem_id"].tolist() == ["a", "a", "b", "b"] * 2 and s["correct"].dtype == bool

    recs = results.read_metrics_records(rd)
    train = {r["step"]: r for r in recs if r["kind"] == "train"}
    assert sorted(train) == [1, 2, 3, 4]
    assert train[3]["actor/ppo_kl"] == 0.3 and train[3]["train/response_length"] == 4.0  # the resumed launch wins
    assert train[1]["train/reward"] == 0.2
    evals = {r["step"]: r for r in recs if r["kind"] == "eval"}
    assert sorted(evals) == [0, 2]
    assert evals[0]["eval/easy/pass@1"] == pytest.approx(0.5) and evals[2]["eval/hard/pass@1"] == pytest.approx(0.5)
    assert evals[0]["val-core/easy/acc/mean@2"] == 0.5
    ingest.sync(rd, SPEC)  # idempotent
    assert results.read_metrics_records(rd) == recs


def test_cluster_dumps_without_lengths_count_tokens(tmp_path):
    rd = tmp_path / "run"
    dump(rd, 0, [("easy", "a", 0, 0, "12345678", False), ("easy", "a", 1, 0, "12", True)], extra_cols=False)
    with pytest.raises(results.ResultsError, match="no tokenizer"):
        ingest.sync(rd, SPEC)
    ingest.sync(rd, SPEC, token_count=len)  # one token per character
    s = results.read_samples(rd)
    assert s["length"].tolist() == [8, 3] and s["truncated"].tolist() == [True, False]


def test_each_dump_is_tokenized_once_until_it_is_rewritten(tmp_path):
    rd, counted = tmp_path / "run", []

    def count(text):
        counted.append(text)
        return len(text)

    dump(rd, 0, [("easy", "a", 0, 0, "12345678", False), ("easy", "a", 1, 0, "12", True)], extra_cols=False)
    ingest.sync(rd, SPEC, token_count=count)
    dump(rd, 2, [("easy", "a", 0, 0, "123", True), ("easy", "a", 1, 0, "1", True)], extra_cols=False)
    ingest.sync(rd, SPEC, token_count=count)
    ingest.sync(rd, SPEC, token_count=count)
    assert counted == ["12345678", "12", "123", "1"]  # sync runs every minute: old dumps are not read again
    assert results.read_samples(rd)["length"].tolist() == [8, 3, 4, 2]
    # a resumed launch rewrites step 2's dump: it is parsed again and its new rows replace the old
    dump(rd, 2, [("easy", "a", 0, 0, "1234", False), ("easy", "a", 1, 0, "12", False)], extra_cols=False)
    ingest.sync(rd, SPEC, token_count=count)
    s = results.read_samples(rd)
    assert s["length"].tolist() == [8, 3, 5, 3] and s["correct"].tolist() == [False, True, False, False]
    assert counted[4:] == ["1234", "12"]


def test_a_dump_from_another_reward_function_is_refused(tmp_path):
    rd = tmp_path / "run"
    PPOTrainer._write_generations(["q"], ["a"], ["g"], [1.0], {"reward": [1.0], "acc": [True], "uid": ["u_0_0"]},
                                  str(ingest.verl_dir(rd) / "val"), 0)
    with pytest.raises(results.ResultsError, match="was the reward function replaced"):
        ingest.sync(rd, SPEC)


def test_the_report_reads_an_ingested_verl_run(tmp_path, monkeypatch):
    from harness.cli.app import main

    rd = tmp_path / "res" / "vexp" / "grpo-s0-x"
    for step, ok in ((0, 1), (2, 3)):
        dump(rd, step, [("easy", p, s, 0, "12", s < ok) for p in ("a", "b") for s in range(4)])
    log(rd, 0, [(1, {"actor/ppo_kl": 0.1}), (2, {"actor/ppo_kl": 0.2})], monkeypatch)
    ingest.sync(rd, SPEC)
    results.write_spec(rd, {"experiment": "vexp", "variant": "grpo", "seed": 0, "run_id": "grpo-s0-x", "backend": "verl",
                            "preset": "grpo", "eval": {"benchmarks": {"easy": {"path": "x"}}}})
    results.write_status(rd, "done", step=2, total_steps=2)
    with pytest.raises(SystemExit) as e:
        main(["report", str(tmp_path / "res" / "vexp"), "--out", str(tmp_path / "rep")])
    assert e.value.code in (0, None)
    table = (tmp_path / "rep" / "vexp" / "auc_table.md").read_text()
    assert "grpo" in table and "easy" in table
    assert (tmp_path / "rep" / "vexp" / "passk_easy.png").stat().st_size > 0
