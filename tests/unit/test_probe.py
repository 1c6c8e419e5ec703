"""Gradient-dynamics probe: the measurements on hand-built groups."""

import numpy as np
import pytest
import torch

import algorithms
from harness.embedded import common
from harness.embedded.model import ModelConfig, TinyGPT
from harness.backends.local.probe import ProbeBatch, classify_groups, run_updates
from harness.tasks import modchain

G = 4


def _policy(seed=0):
    torch.manual_seed(seed)
    return TinyGPT(ModelConfig(common.tokenizer().vocab_size, n_layer=1, n_head=2, d_model=32, max_len=48)).eval()


def _batch(completions: list[list[str]], problems: list[modchain.Problem]) -> ProbeBatch:
    """Groups of G hand-written completions (strictly graded) for the given problems."""
    tok = common.tokenizer()
    rep = [p for p in problems for _ in range(G)]
    flat = [c for group in completions for c in group]
    prompt_ids, _ = tok.encode_prompts([p.prompt for p in rep])
    comp = tok.encode_completions(flat)
    acc = torch.from_numpy(modchain.grade(flat, rep, "strict"))
    sol = tok.encode_completions([p.solution for p in problems])
    gp, _ = tok.encode_prompts([p.prompt for p in problems])
    return ProbeBatch(problems, prompt_ids, comp, (comp != tok.PAD).float(), acc,
                      torch.arange(len(problems)).repeat_interleave(G), sol, gp)


P1 = modchain.make_problem([1, 2, 3], ["+", "*"])  # 1+2*3= -> "3,9;9"
P2 = modchain.make_problem([4, 5], ["-"])  # 4-5= -> "9;9"
ALL_WRONG = _batch([["3,8;8", "1,9;9", "3,9;1", "5;5"], ["8;8", "9;1", "1;1", "0,0;0"]], [P1, P2])
CFG = {"lr": 1e-3, "updates": 3, "optimizer": "adam"}


def test_classify_groups():
    acc = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0], dtype=torch.bool)
    assert classify_groups(acc, 4).tolist() == ["all_wrong", "all_correct", "mixed"]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_all_wrong_group_grpo_zero_update_ngrpo_pushes_wrong_answers_down(optimizer):
    assert not ALL_WRONG.acc.any()
    cfg = {**CFG, "optimizer": optimizer, "lr": 1e-3 if optimizer == "adam" else 0.5}
    start = _policy()
    theta0 = [p.detach().clone() for p in start.parameters()]
    _, grpo, grpo_grad, grpo_disp = run_updates(start, ALL_WRONG, algorithms.get_preset("grpo"), cfg, temperature=1.0)
    _, ngrpo, ngrpo_grad, _ = run_updates(start, ALL_WRONG, algorithms.get_preset("ngrpo"), cfg, temperature=1.0)
    # GRPO: advantage 0 on every response -> exactly zero gradient, zero parameter change, unchanged log-probs
    assert float(grpo_grad.abs().max()) == 0.0 and float(grpo_disp.abs().max()) == 0.0
    assert all(r["grad_norm"] == 0.0 and r["update_norm"] == 0.0 for r in grpo[1:])
    assert [r["logp_wrong"] for r in grpo] == [grpo[0]["logp_wrong"]] * (CFG["updates"] + 1)
    # NGRPO: advantage -1/sqrt(G+1) on every response -> a non-zero update that lowers the wrong answers' log-prob
    assert ngrpo[1]["grad_norm"] > 0 and ngrpo[1]["update_norm"] > 0
    assert ngrpo[1]["logp_wrong"] < ngrpo[0]["logp_wrong"]
    assert ngrpo[-1]["logp_wrong"] < ngrpo[1]["logp_wrong"]
    # the gradient is the descent direction of the wrong answers' log-prob: <grad loss, grad logp_wrong> > 0
    tok = common.tokenizer()
    from harness.embedded.sampler import sequence_forward

    start.zero_grad()
    logp, _ = sequence_forward(start, tok, ALL_WRONG.prompt_ids, ALL_WRONG.completion_ids, ALL_WRONG.mask)
    ((logp * ALL_WRONG.mask).sum(-1).mean()).backward()
    g_logp = torch.cat([p.grad.reshape(-1) for p in start.parameters()])
    assert float(ngrpo_grad @ g_logp) > 0
    # the starting state is untouched (every algorithm starts from it)
    assert all(torch.equal(a, b.detach()) for a, b in zip(theta0, start.parameters()))


def test_all_correct_group_zero_for_grpo_and_ngrpo_positive_for_w_reinforce():
    ok = _batch([[P1.solution] * G, [P2.solution] * G], [P1, P2])
    assert ok.acc.all()
    start = _policy(1)
    for name, zero in (("grpo", True), ("ngrpo", True), ("psr_nsr", False)):
        _, rows, grad, _ = run_updates(start, ok, algorithms.get_preset(name), CFG, temperature=1.0)
        assert (float(grad.abs().max()) == 0.0) == zero, name
        assert np.isnan(rows[0]["logp_wrong"])  # no wrong answers in the batch
        if not zero:
            assert rows[1]["logp_correct"] > rows[0]["logp_correct"]  # W-REINFORCE's +lambda raises the solution
