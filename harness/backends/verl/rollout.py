"""The in-process mode's rollout: the harness samples the HF policy where a GPU run uses vLLM/SGLang.

verl 0.9.1 can only select vLLM, SGLang or TensorRT-LLM servers as its rollout (none runs on this
CPU), so `inproc` mode generates with transformers' `generate` on a plain copy of the policy whose
weights are re-synced from verl's actor engine after every update (the same `get_per_tensor_param`
path verl uses to push weights into vLLM). Prompts are rendered with the model's chat template
(add_generation_prompt), responses keep their EOS token, and rewards go through verl's own reward
manager (naive or dapo) with the harness reward function, exactly as in cluster mode.

Shapes: prompts [N, P] left-padded, responses [N, T] right-padded, masks 0/1 of the same shapes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Generated:
    """N sampled responses (prompt rows repeated n times, grouped)."""

    prompts: torch.Tensor  # [N, P] left-padded prompt ids
    prompt_mask: torch.Tensor  # [N, P]
    responses: torch.Tensor  # [N, T] right-padded response ids (EOS kept)
    response_mask: torch.Tensor  # [N, T]
    truncated: torch.Tensor  # [N] bool: hit the length limit without EOS

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(-1)


def render(tokenizer, rows: list[dict]) -> list[list[int]]:
    """Prompt token ids of verl parquet rows (chat template, generation prompt), as verl's agent loop does."""
    return [list(tokenizer.apply_chat_template(list(r["prompt"]), add_generation_prompt=True, tokenize=True,
                                               return_dict=False)) for r in rows]


def left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


@torch.no_grad()
def generate(model, tokenizer, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float,
             max_new_tokens: int, seed: int, chunk: int = 256) -> Generated:
    """n samples per prompt (rows grouped by prompt), seeded; cut after the first EOS."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    rep = [p for p in prompt_ids for _ in range(n)]
    ids, mask = left_pad(rep, pad)
    outs = []
    torch.manual_seed(seed)
    for start in range(0, len(rep), chunk):
        sl = slice(start, start + chunk)
        out = model.generate(
            input_ids=ids[sl], attention_mask=mask[sl], do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None, top_p=top_p, top_k=0,
            max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos,
        )[:, ids.shape[1]:]
        outs.append(torch.nn.functional.pad(out, (0, max_new_tokens - out.shape[1]), value=pad))
    resp = torch.cat(outs)[:, :max_new_tokens]
    is_eos = resp == eos
    has_eos = is_eos.any(-1)
    length = torch.where(
        has_eos, is_eos.int().argmax(-1) + 1, torch.full_like(has_eos, resp.shape[1], dtype=torch.long)
    )
    rmask = (torch.arange(resp.shape[1])[None, :] < length[:, None]).long()
    resp = torch.where(rmask.bool(), resp, torch.full_like(resp, pad))
    width = max(1, int(length.max()))
    return Generated(ids, mask, resp[:, :width], rmask[:, :width], ~has_eos)


def sync_weights(engine, model) -> None:
    """Copy the actor engine's current parameters into the rollout model (verl's weight-sync export)."""
    params, _ = engine.get_per_tensor_param()
    state = {name: (t.full_tensor() if hasattr(t, "full_tensor") else t) for name, t in params}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith(".attn.bias")]:
        raise RuntimeError(f"weight sync: missing {missing}, unexpected {unexpected}")


def score(manager, tokenizer, rows: list[dict], gen: Generated, n: int) -> tuple[torch.Tensor, list[dict]]:
    """Reward of every response through verl's reward manager -> (scores [N], reward_extra_info per row)."""
    from verl import DataProto

    items = []
    for i in range(gen.responses.shape[0]):
        row = rows[i // n]
        p_len = int(gen.prompt_mask[i].sum())
        prompts = gen.prompts[i, -p_len:][None]
        responses = gen.responses[i][None]
        attn = torch.cat([torch.ones(1, p_len, dtype=torch.long), gen.response_mask[i][None]], dim=1)
        items.append(DataProto.from_dict(
            tensors={"prompts": prompts, "responses": responses, "attention_mask": attn},
            non_tensors={"data_source": np.array([row["data_source"]], dtype=object),
                         "reward_model": np.array([dict(row["reward_model"])], dtype=object),
                         "extra_info": np.array([dict(row["extra_info"])], dtype=object)},
        ))

    async def run_all():
        return await asyncio.gather(*(manager.run_single(d) for d in items))

    results = manager.loop.run_until_complete(run_all())
    return torch.tensor([float(r["reward_score"]) for r in results]), [
        r["reward_extra_info"] for r in results
    ]


def filter_keep(metric: np.ndarray, group_ids: np.ndarray) -> np.ndarray:
    """verl's dynamic-sampling rule (ReplayBuffer._dapo_filtered_keys): a group of more than one response
    whose metric has zero spread (np.std == 0) is dropped. metric, group_ids [N] -> keep [N] bool."""
    keep = np.ones(len(metric), dtype=bool)
    for g in np.unique(group_ids):
        idx = group_ids == g
        vals = metric[idx].astype(float)
        if len(vals) > 1 and float(np.std(vals)) == 0.0:
            keep[idx] = False
    return keep


def as_tensordict(gen: Generated, **extra):
    """Padded batch -> the no-padding TensorDict verl's workers take (as ray_trainer v0 prepares it)."""
    from tensordict import TensorDict
    from verl.workers.utils.padding import left_right_2_no_padding

    input_ids = torch.cat([gen.prompts, gen.responses], dim=1)
    attn = torch.cat([gen.prompt_mask, gen.response_mask], dim=1)
    pos = torch.clip(torch.cumsum(attn, dim=-1) - 1, min=0)
    td = TensorDict(
        {
            "input_ids": input_ids,
            "attention_mask": attn,
            "position_ids": pos,
            "prompts": gen.prompts,
            "responses": gen.responses,
            "response_mask": gen.response_mask,
            **extra,
        },
        batch_size=input_ids.shape[0],
    )
    return left_right_2_no_padding(td)


def select_rows(gen: Generated, idx: np.ndarray) -> Generated:
    t = torch.as_tensor(idx, dtype=torch.long)
    return Generated(
        gen.prompts[t], gen.prompt_mask[t], gen.responses[t], gen.response_mask[t], gen.truncated[t]
    )


def concat(parts: list[Generated], pad: int) -> Generated:
    P = max(p.prompts.shape[1] for p in parts)
    T = max(p.responses.shape[1] for p in parts)
    lp = lambda x, w, v: torch.nn.functional.pad(x, (w - x.shape[1], 0), value=v)  # noqa: E731
    rp = lambda x, w, v: torch.nn.functional.pad(x, (0, w - x.shape[1]), value=v)  # noqa: E731
    return Generated(
        torch.cat([lp(p.prompts, P, pad) for p in parts]),
        torch.cat([lp(p.prompt_mask, P, 0) for p in parts]),
        torch.cat([rp(p.responses, T, pad) for p in parts]),
        torch.cat([rp(p.response_mask, T, 0) for p in parts]),
        torch.cat([p.truncated for p in parts]),
    )
