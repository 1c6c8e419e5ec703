"""Task, tokenizer, model and sampler of the embedded backend."""

import numpy as np
import pytest
import torch

from harness.embedded.model import CharTokenizer, ModelConfig, TinyGPT
from harness.embedded.sampler import _top_p_filter, sample, sequence_forward
from harness.tasks import modchain


def test_modchain_example_from_issue():
    p = modchain.make_problem([4, 9, 4, 1, 5, 8, 5], list("*++*-+"))
    assert p.prompt == "4*9+4+1*5-8+5="
    assert p.solution == "6,0,1,5,7,2;2"
    assert p.answer == "2" and p.n_ops == 6


def test_graders():
    p = modchain.make_problem([1, 2], ["+"])  # 1+2= -> "3;3"
    assert modchain.grade(["3;3", "9;3", "3;4", "3", "3;3;3"], [p] * 5, "answer").tolist() == [True, True, False, False, True]
    assert modchain.grade(["3;3", "9;3"], [p] * 2, "strict").tolist() == [True, False]
    with pytest.raises(ValueError, match="grader"):
        modchain.grade(["3;3"], [p], "fuzzy")


def test_sample_problems_respects_difficulty():
    probs = modchain.sample_problems(np.random.default_rng(0), 200, 3, 5)
    assert {p.n_ops for p in probs} == {3, 4, 5}
    for p in probs[:20]:
        digits = [int(c) for c in p.prompt[:-1:2]]
        ops = list(p.prompt[1:-1:2])
        running, ans = modchain.solve(digits, ops)
        assert p.answer == str(ans) and len(running) == p.n_ops


def test_tokenizer_roundtrip_and_padding():
    tok = CharTokenizer(modchain.VOCAB)
    assert tok.decode(tok.encode("4*9+4=") + [tok.EOS, 5]) == "4*9+4="
    ids, valid = tok.encode_prompts(["1+2=", "1+2*3="])
    assert ids.shape == (2, 7) and ids[0, :2].tolist() == [tok.PAD, tok.PAD] and ids[0, 2] == tok.BOS
    with pytest.raises(ValueError, match="vocabulary"):
        tok.encode("x")


def _model(seed=0):
    torch.manual_seed(seed)
    tok = CharTokenizer(modchain.VOCAB)
    return tok, TinyGPT(ModelConfig(tok.vocab_size, n_layer=2, n_head=2, d_model=32, max_len=48))


def test_kv_cache_matches_full_forward():
    """Greedy decoding with the KV cache picks, at every position, the argmax of a full forward pass."""
    tok, model = _model()
    prompts = ["1+2=", "4*9+4+1*5-8+5=", "7-3*2="]
    roll = sample(model, tok, prompts, max_new_tokens=12, temperature=0)
    model.eval()
    P = roll.prompt_ids.shape[1]
    ids = torch.cat([roll.prompt_ids, roll.completion_ids], 1)
    valid = torch.cat([roll.prompt_ids != tok.PAD, roll.completion_mask], 1)
    with torch.no_grad():
        logits = model(ids, valid)[:, P - 1 : -1]
    greedy = logits.argmax(-1)
    m = roll.completion_mask
    assert torch.equal(greedy[m], roll.completion_ids[m])


def test_padding_does_not_change_logprobs():
    tok, model = _model(1)
    comp = tok.encode_completions(["3;3"])
    alone, _ = tok.encode_prompts(["1+2="])
    padded, _ = tok.encode_prompts(["1+2=", "4*9+4+1*5-8+5="])
    with torch.no_grad():
        a, _ = sequence_forward(model, tok, alone, comp, comp != tok.PAD)
        b, _ = sequence_forward(model, tok, padded[:1], comp, comp != tok.PAD)
    assert torch.allclose(a, b, atol=1e-5)


def test_sampling_is_deterministic_and_seeded():
    tok, model = _model(2)
    prompts = ["1+2=", "3*4-5="] * 40
    a = sample(model, tok, prompts, max_new_tokens=10, seed=7, chunk=16)
    b = sample(model, tok, prompts, max_new_tokens=10, seed=7, chunk=16)
    c = sample(model, tok, prompts, max_new_tokens=10, seed=8, chunk=16)
    assert a.texts == b.texts and torch.equal(a.completion_ids, b.completion_ids)
    assert a.texts != c.texts
    # lengths count tokens up to and including EOS; truncated rows have no EOS
    for row, n, tr in zip(a.completion_ids, a.lengths, a.truncated):
        assert bool(tr) == (tok.EOS not in row.tolist())
        if not tr:
            assert row[n - 1] == tok.EOS


def test_top_p_keeps_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    out = _top_p_filter(logits, 0.7)
    assert torch.isfinite(out).tolist() == [[True, True, False, False]]
    assert torch.isfinite(_top_p_filter(logits, 1.0)).all()
