"""The verl reward function: score/acc from the project's graders, the NGRPO filter metric, ids for ingest."""

import pytest

from harness.backends.verl.reward import compute_score, gold_answer


def test_modchain_graders_and_fields():
    gold = {"answer": "2", "solution": "6,0,1,5,7,2;2"}
    right = compute_score("modchain", "6,0,1,5,7,2;2", gold, {"split": "train", "harness_benchmark": "train", "harness_problem": "4*9="},
                          grader="strict")
    assert right["score"] == 1.0 and right["acc"] is True and right["pred"] == "2" and right["ngrpo_keep"] == 1.0
    assert right["harness_benchmark"] == "train" and right["harness_problem"] == "4*9="
    lucky = compute_score("modchain", "1,1,1,1,1,1;2", gold, {"split": "train"}, grader="strict")
    assert lucky["acc"] is False and lucky["score"] == 0.0  # strict: the whole completion must match
    assert compute_score("modchain", "1,1,1,1,1,1;2", gold, {"split": "train"}, grader="answer")["acc"] is True


def test_ngrpo_keep_varies_for_identical_wrong_answers_and_is_absent_on_the_test_split():
    gold = {"answer": "2", "solution": "2;2"}
    wrong = [compute_score("modchain", "5;5", gold, {"split": "train"})["ngrpo_keep"] for _ in range(8)]
    assert len(set(wrong)) == 8 and all(-2.0 <= v < -1.0 for v in wrong)
    assert "ngrpo_keep" not in compute_score("modchain", "5;5", gold, {"split": "test"})


def test_math_answers_with_the_authors_ground_truth_layout():
    truth = {"question": "What is 1/2 + 1/2?", "solution": "... $\\boxed{1}$", "target": "1"}  # the NGRPO parquet layout
    assert gold_answer(truth) == "1" and gold_answer("7") == "7"
    ok = compute_score("TianHongZXY/MATH", "so the answer is \\boxed{1.0}", truth, {"index": 0, "split": "train"})
    assert ok["acc"] is True and ok["score"] == 1.0 and ok["pred"] == "1.0"
    bad = compute_score("TianHongZXY/MATH", "\\boxed{2}", truth, {"index": 0, "split": "train"})
    assert bad["acc"] is False and bad["score"] == 0.0
    with pytest.raises(ValueError, match="no target/answer"):
        gold_answer({"question": "q"})
