"""TinyGPT -> Hugging Face export (the model both backends share): exact log-probs, same token ids."""

import pytest
import torch

from harness.embedded import common
from harness.embedded.model import ModelConfig, TinyGPT
from harness.embedded.sampler import sample, sequence_forward

transformers = pytest.importorskip("transformers", reason="the verl backend needs transformers (installed by make test)")
from harness.backends.verl.hf_export import char_tokenizer, export_hf  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(3)
    tok = common.tokenizer()
    model = TinyGPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=4, d_model=32, max_len=48))
    with torch.no_grad():  # non-trivial weights everywhere (biases and LayerNorms are 0/1 at init)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = export_hf(model, tok, tmp_path_factory.mktemp("hf"))
    return model, tok, out


def test_exported_model_has_the_same_log_probs(exported):
    model, tok, path = exported
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    assert type(hf).__name__ == "GPTBigCodeForCausalLM"  # a *ForCausalLM name: verl loads it with its LM head
    roll = sample(model, tok, ["1+2=", "3*4-5=", "7-7*2+1="] * 2, max_new_tokens=10, temperature=1.0, top_p=1.0, seed=0)
    ours, _ = sequence_forward(model, tok, roll.prompt_ids, roll.completion_ids, roll.completion_mask)
    ids = torch.cat([roll.prompt_ids, roll.completion_ids], 1)
    att = torch.cat([roll.prompt_ids != tok.PAD, roll.completion_mask.bool()], 1).long()
    pos = (att.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = hf(input_ids=ids, attention_mask=att, position_ids=pos).logits.float()
    P = roll.prompt_ids.shape[1]
    theirs = torch.log_softmax(logits[:, P - 1 : -1], -1).gather(-1, roll.completion_ids[..., None]).squeeze(-1)
    mask = roll.completion_mask.bool()
    assert (theirs - ours)[mask].abs().max().item() < 1e-5


def test_tokenizer_matches_char_tokenizer_and_template(exported):
    _, tok, path = exported
    fast = transformers.AutoTokenizer.from_pretrained(path)
    assert fast("4*9+4=", add_special_tokens=False)["input_ids"] == tok.encode("4*9+4=")
    rendered = fast.apply_chat_template([{"role": "user", "content": "4*9+4="}], add_generation_prompt=True, tokenize=True,
                                        return_dict=False)
    assert list(rendered) == [tok.BOS] + tok.encode("4*9+4=")  # the local sampler's prompt layout
    assert fast.decode(tok.encode("6,0;2") + [tok.EOS], skip_special_tokens=True) == "6,0;2"
    assert char_tokenizer(tok).pad_token_id == tok.PAD and fast.eos_token_id == tok.EOS
