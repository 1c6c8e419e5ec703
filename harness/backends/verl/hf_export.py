"""The embedded backend's TinyGPT as a Hugging Face model folder, so verl (and vLLM) can load it.

TinyGPT is nanoGPT-shaped (learned positions, pre-LayerNorm blocks, fused qkv, exact GELU, untied
head without bias). That is GPT-BigCode with `multi_query=False` (plain multi-head attention),
`activation_function="gelu"` and `tie_word_embeddings=False`; only the fused qkv rows are reordered
(BigCode interleaves q, k, v per head). GPT-BigCode rather than GPT-2 because verl 0.9.1 picks the
model class from the architecture name and loads anything not named `*ForCausalLM` (such as
`GPT2LMHeadModel`) without its LM head. The export is exact (log-probs agree to float rounding;
tests/unit/test_verl_export.py). The
character tokenizer becomes a `PreTrainedTokenizerFast` (one token per character, `<pad>`=0,
`<s>`=1, `</s>`=2 as in CharTokenizer) whose chat template renders `<s>` + the user message, the
layout the local sampler uses. This lets one warm start feed both backends.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.embedded.model import CharTokenizer, TinyGPT

CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}"


def char_tokenizer(tok: CharTokenizer):
    """A transformers fast tokenizer equivalent to CharTokenizer (same ids)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": tok.PAD, "<s>": tok.BOS, "</s>": tok.EOS, **tok.stoi}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<pad>",
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def hf_config(model: TinyGPT):
    from transformers import GPTBigCodeConfig

    c = model.cfg
    return GPTBigCodeConfig(
        vocab_size=c.vocab_size, n_positions=c.max_len, n_embd=c.d_model, n_layer=c.n_layer, n_head=c.n_head,
        n_inner=4 * c.d_model, activation_function="gelu", multi_query=False, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, layer_norm_epsilon=1e-5, scale_attn_weights=True, tie_word_embeddings=False,
        bos_token_id=CharTokenizer.BOS, eos_token_id=CharTokenizer.EOS, pad_token_id=CharTokenizer.PAD,
        use_cache=True, architectures=["GPTBigCodeForCausalLM"],
        num_key_value_heads=c.n_head,  # read by verl's model patching (no multi-query: kv heads = heads)
    )


def _interleave_qkv(t: torch.Tensor, n_head: int) -> torch.Tensor:
    """Rows [q(all heads) | k | v] -> [q_h, k_h, v_h for each head h] (BigCode's layout). t: [3D, ...]."""
    d3 = t.shape[0]
    return t.reshape(3, n_head, d3 // (3 * n_head), *t.shape[1:]).transpose(0, 1).reshape(t.shape)


def hf_state_dict(model: TinyGPT) -> dict[str, torch.Tensor]:
    """TinyGPT parameters under GPTBigCodeForCausalLM names."""
    sd = model.state_dict()
    out = {
        "transformer.wte.weight": sd["tok.weight"], "transformer.wpe.weight": sd["pos.weight"],
        "transformer.ln_f.weight": sd["ln_f.weight"], "transformer.ln_f.bias": sd["ln_f.bias"],
        "lm_head.weight": sd["head.weight"],
    }
    pairs = {"ln1": "ln_1", "ln2": "ln_2"}
    linear = {"qkv": "attn.c_attn", "proj": "attn.c_proj", "mlp.0": "mlp.c_fc", "mlp.2": "mlp.c_proj"}
    for i in range(model.cfg.n_layer):
        for ours, theirs in pairs.items():
            for p in ("weight", "bias"):
                out[f"transformer.h.{i}.{theirs}.{p}"] = sd[f"blocks.{i}.{ours}.{p}"]
        for ours, theirs in linear.items():
            w, b = sd[f"blocks.{i}.{ours}.weight"], sd[f"blocks.{i}.{ours}.bias"]
            if ours == "qkv":
                w, b = _interleave_qkv(w, model.cfg.n_head), _interleave_qkv(b, model.cfg.n_head)
            out[f"transformer.h.{i}.{theirs}.weight"] = w
            out[f"transformer.h.{i}.{theirs}.bias"] = b
    return {k: v.detach().clone() for k, v in out.items()}


def export_hf(model: TinyGPT, tok: CharTokenizer, out_dir: Path) -> Path:
    """Write config.json, model.safetensors, tokenizer files and generation_config.json into out_dir."""
    from transformers import GPTBigCodeForCausalLM

    out_dir = Path(out_dir)
    hf = GPTBigCodeForCausalLM(hf_config(model))
    missing, unexpected = hf.load_state_dict(hf_state_dict(model), strict=False)
    missing = [k for k in missing if not k.endswith(".attn.bias")]
    if missing or unexpected:
        raise RuntimeError(f"HF export: missing {missing}, unexpected {unexpected}")
    hf.generation_config.pad_token_id = tok.PAD
    hf.save_pretrained(out_dir)
    char_tokenizer(tok).save_pretrained(out_dir)
    return out_dir
