"""RL-step speed of the local backend vs Hugging Face generate and TRL's GRPOTrainer, on CPU.

    python benchmarks/local_step.py [--experiment experiments/quickstart.yaml] [--threads 1]
                                    [--steps 6] [--repeats 5] [--chunks 64,128,256] [--trl-steps 4] [--skip-trl]

Everything runs in one process, one side after the other, with the same torch thread count.
Settings (model shape, B prompts x G responses, mini-batches, max_new_tokens, temperature, top-p,
lr, clip, KL and entropy coefficients) come from the experiment's `grpo` variant.

1. Our RL step (collect_batch + LocalTrainer.update), median over --steps steps after one warm-up
   step, with the sampling / training breakdown. Two modes:
     natural - the warm-started policy (--warm-steps supervised steps) stops at EOS as usual;
     fixed   - EOS is suppressed while sampling, so every response has exactly max_new_tokens tokens.
   The comparison with TRL uses `fixed`: TRL's randomly initialised GPT-2 stops at random points, so
   both sides are forced to generate exactly max_new_tokens tokens per response (TRL through
   generation_kwargs={"min_new_tokens": max_new_tokens}).
2. Our KV-cached sampler on B*G sequences (fixed length), generated tokens/s (median of --repeats).
3. Ratio (a): HF `generate` (use_cache=True, do_sample=True, min_new_tokens = max_new_tokens = ours,
   same temperature / top-p, top_k=0) on GPT2Config(n_layer, n_head, n_embd = ours, vocab = ours,
   n_positions = our max_len), random init, float32, on the very same left-padded prompt tensors;
   Both sides are timed at each micro-batch size of --chunks (HF also with each --hf-attn attention
   implementation), interleaved; ratio (a) compares each side's fastest, and the equal-micro-batch
   ratios are printed too. Target >= 1.5x.
4. Ratio (b): TRL GRPOTrainer on that GPT-2 shape with a char-level PreTrainedTokenizerFast over our
   vocabulary (built locally, no hub), a reward that grades with harness.tasks.modchain, and the
   gradient-step mapping of our step (see `trl_step`), GRPO knobs of our preset (beta = kl_coef,
   epsilon = clip, entropy_coef, loss_type bnpo = our token-mean), fp32, use_cpu, report_to="none", no
   saving or logging. TRL is timed with its default activation_checkpointing=True and with it off;
   ratio (b) uses the faster. Target >= 5x. Skipped, with a message, if trl is not importable (it is
   installed only for this benchmark: `pip install trl`, checked not to replace torch).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from harness.embedded import common
from harness.embedded.model import CharTokenizer, TinyGPT
from harness.backends.local.rollout import collect_batch
from harness.embedded.sampler import sample
from harness.backends.local.trainer import LocalTrainer
from harness.embedded.warmstart import ensure_warm_start
from harness.config.experiment import load_experiment
from harness.config.runspec import RunSpec, expand
from harness.tasks import modchain

ROOT = Path(__file__).resolve().parents[1]


class NoEOSTinyGPT(TinyGPT):
    """TinyGPT whose sampling-time logits (the KV-cached calls) never pick EOS.

    Only the cached path is touched: training/log-prob forwards (no cache) are unchanged. The extra
    cost is one in-place fill of a [B, 1, V] slice per decoding step.
    """

    def forward(self, ids, valid, cache=None):
        out = super().forward(ids, valid, cache)
        if cache is not None:
            out[..., CharTokenizer.EOS] = float("-inf")
        return out


def no_eos(model: TinyGPT) -> TinyGPT:
    model.__class__ = NoEOSTinyGPT
    return model


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------- ours
def our_steps(trainer: LocalTrainer, spec: RunSpec, first_step: int, n: int) -> dict:
    """One warm-up step then n timed steps of collect_batch + update."""
    samp, train, lens, toks = [], [], [], []
    for i in range(n + 1):
        step = first_step + i
        t0 = time.perf_counter()
        batch, rec = collect_batch(trainer.policy, spec, trainer.preset, step)
        t1 = time.perf_counter()
        trainer.update(batch, step)
        t2 = time.perf_counter()
        if i == 0:
            continue  # warm-up
        samp.append(t1 - t0)
        train.append(t2 - t1)
        lens.append(rec["train/response_length"])
        toks.append(float(batch.lengths.sum()))
    tot = [s + t for s, t in zip(samp, train)]
    return {
        "step_s": med(tot), "sample_s": med(samp), "train_s": med(train), "resp_len": statistics.mean(lens),
        "gen_tok_s": med([k / s for k, s in zip(toks, samp)]), "all_steps": tot,
    }


def our_sampler(policy: TinyGPT, tok: CharTokenizer, prompts: list[str], tr: dict, repeats: int, chunk: int = 64) -> dict:
    times, n_tok = [], 0
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        roll = sample(policy, tok, prompts, max_new_tokens=tr.max_new_tokens, temperature=tr.temperature, top_p=tr.top_p,
                      seed=r, chunk=chunk)
        dt = time.perf_counter() - t0
        if r:
            times.append(dt)
            n_tok = int(roll.lengths.sum())
    return {"s": med(times), "tokens": n_tok, "tok_s": n_tok / med(times), "resp_len": n_tok / len(prompts)}


# --------------------------------------------------------------------------------------------- HF
def gpt2_model(tok: CharTokenizer, max_len: int, spec: RunSpec):
    from transformers import GPT2Config, GPT2LMHeadModel

    m = spec.model
    cfg = GPT2Config(
        n_layer=m.n_layer, n_head=m.n_head, n_embd=m.d_model, vocab_size=tok.vocab_size, n_positions=max_len,
        bos_token_id=tok.BOS, eos_token_id=tok.EOS, pad_token_id=tok.PAD,
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(cfg).float().eval()


def hf_generate(model, tok: CharTokenizer, prompts: list[str], tr: dict, repeats: int, chunk: int) -> dict:
    ids, valid = tok.encode_prompts(prompts)  # the exact tensors our sampler starts from
    T = tr.max_new_tokens
    kw = dict(do_sample=True, use_cache=True, temperature=tr.temperature, top_p=tr.top_p, top_k=0,
              max_new_tokens=T, min_new_tokens=T, pad_token_id=tok.PAD, eos_token_id=tok.EOS)
    times, n_tok = [], 0
    with torch.no_grad():
        for r in range(repeats + 1):
            torch.manual_seed(r)
            t0 = time.perf_counter()
            outs = [model.generate(input_ids=ids[i : i + chunk], attention_mask=valid[i : i + chunk].long(), **kw)
                    for i in range(0, len(prompts), chunk)]
            dt = time.perf_counter() - t0
            if r:
                times.append(dt)
                n_tok = sum(o.shape[0] * (o.shape[1] - ids.shape[1]) for o in outs)
    assert n_tok == len(prompts) * T, (n_tok, len(prompts) * T)
    return {"s": med(times), "tokens": n_tok, "tok_s": n_tok / med(times), "chunk": chunk}


# --------------------------------------------------------------------------------------------- TRL
def char_tokenizer_fast(tok: CharTokenizer, out_dir: Path):
    """A char-level PreTrainedTokenizerFast with our ids (PAD=0, BOS=1, EOS=2, chars from 3), saved and reloaded locally."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": tok.PAD, "<bos>": tok.BOS, "<eos>": tok.EOS, **{c: i for c, i in tok.stoi.items()}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", tok.BOS)])
    tk.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", padding_side="left")
    fast.save_pretrained(out_dir)
    fast = PreTrainedTokenizerFast.from_pretrained(out_dir)
    assert fast("4*9=")["input_ids"] == [tok.BOS] + tok.encode("4*9="), fast("4*9=")["input_ids"]
    assert fast.decode(tok.encode("1,2;3") + [tok.EOS], skip_special_tokens=True) == "1,2;3"
    return fast


def trl_step(spec: RunSpec, tok: CharTokenizer, max_len: int, threads: int, n_rl_steps: int, work: Path, checkpointing: bool) -> dict:
    """Seconds per RL step of TRL's GRPOTrainer (one warm-up RL step, then n_rl_steps timed).

    Mapping of one of our RL steps (B*G completions, M mini-batches = M optimizer steps, 1 epoch):
      per_device_train_batch_size = B*G/M (64), gradient_accumulation_steps = 1,
      steps_per_generation = M (4) -> generation_batch_size = B*G (256 = 32 prompts x 8),
      num_iterations = 1 (epochs). One RL step = one generation of 256 completions + M TRL
      optimizer steps ("global steps"); old and reference log-probs are computed for the batch like ours.
    checkpointing: TRL's default activation_checkpointing=True recomputes forwards in the backward pass
    (memory for speed); False is TRL at its fastest here.
    """
    import datasets
    import trl
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)

    tr, knobs = spec.train, spec.algorithm.knobs.flat()
    B, G, M, T = tr.prompts_per_step, tr.group_size, tr.mini_batches, tr.max_new_tokens
    assert tr.epochs == 1
    n_train_steps = M * (1 + n_rl_steps)
    problems = common.train_problems(spec, B * (1 + n_rl_steps), spec.task.min_ops, spec.task.max_ops, "trl-bench")
    by_prompt = {p.prompt: p for p in problems}
    work = work / f"trl_ckpt{int(checkpointing)}"
    ds = datasets.Dataset.from_dict({"prompt": [p.prompt for p in problems]})

    def modchain_reward(prompts, completions, **_):
        return modchain.grade(list(completions), [by_prompt[p] for p in prompts], spec.task.grader).astype(float).tolist()

    fast = char_tokenizer_fast(tok, work / "tokenizer")
    # TRL builds its reference model from the policy's name_or_path: save the random-init GPT-2 locally
    model_dir = work / "gpt2_random"
    gpt2_model(tok, max_len, spec).save_pretrained(model_dir)
    args = GRPOConfig(
        output_dir=str(work / "trl_out"), use_cpu=True, bf16=False, fp16=False, seed=0,
        per_device_train_batch_size=B * G // M, gradient_accumulation_steps=1, steps_per_generation=M,
        num_generations=G, num_iterations=tr.epochs, max_steps=n_train_steps,
        max_completion_length=T, generation_kwargs={"min_new_tokens": T},
        temperature=tr.temperature, top_p=tr.top_p, top_k=0,
        learning_rate=tr.lr, weight_decay=tr.weight_decay, max_grad_norm=tr.grad_clip,
        lr_scheduler_type="constant", warmup_steps=0,
        beta=knobs["kl_coef"], epsilon=knobs["eps_low"], epsilon_high=knobs["eps_high"], entropy_coef=knobs["entropy_coef"],
        loss_type="bnpo",  # token-mean over the mini-batch = our agg "token-mean"
        scale_rewards="group", mask_truncated_completions=False,
        report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True, log_completions=False,
        dataloader_num_workers=0, model_init_kwargs={"dtype": torch.float32},
        activation_checkpointing=checkpointing,
    )
    gen_times: list[float] = []
    gen_tokens: list[int] = []
    prompt_widths: list[int] = []
    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            ends.append(time.perf_counter())

        def on_step_end(self, a, state, control, **kw):
            ends.append(time.perf_counter())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(model=str(model_dir), reward_funcs=modchain_reward, args=args, train_dataset=ds, processing_class=fast,
                              callbacks=[Clock()])
    real_generate = trainer.model.generate

    def timed_generate(*a, **kw):
        t0 = time.perf_counter()
        out = real_generate(*a, **kw)
        gen_times.append(time.perf_counter() - t0)
        width = kw["input_ids"].shape[1]
        prompt_widths.append(width)
        gen_tokens.append(out.shape[0] * (out.shape[1] - width))
        return out

    trainer.model.generate = timed_generate
    torch.set_num_threads(threads)  # Trainer/accelerate must not change it; checked below
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # TRL prints its final metrics dict
        warnings.simplefilter("ignore")
        trainer.train()
    threads_seen = torch.get_num_threads()
    # ends[0] = train begin, ends[k] = end of TRL step k; RL step r spans TRL steps (r-1)*M+1 .. r*M
    rl = [ends[r * M] - ends[(r - 1) * M] for r in range(1, n_rl_steps + 2)]
    timed, gen = rl[1:], gen_times[1:]
    return {
        "step_s": med(timed), "all_steps": timed, "warmup_s": rl[0], "gen_s": med(gen),
        "train_s": med([s - g for s, g in zip(timed, gen)]), "generate_calls": len(gen_times),
        "gen_batch": B * G, "resp_len": statistics.mean(t / (B * G) for t in gen_tokens), "threads_seen": threads_seen,
        "version": trl.__version__, "prompt_width": max(prompt_widths),
    }


# --------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default=str(ROOT / "experiments" / "quickstart.yaml"))
    ap.add_argument("--variant", default="grpo", help="variant of the experiment to time (default grpo)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for every side (default 1)")
    ap.add_argument("--warm-steps", type=int, default=20, help="supervised warm-start steps (speed barely depends on it)")
    ap.add_argument("--steps", type=int, default=6, help="timed RL steps of ours per mode (after 1 warm-up step)")
    ap.add_argument("--repeats", type=int, default=5, help="timed sampler / generate repeats (after 1 warm-up)")
    ap.add_argument("--chunks", default="64,128,256", help="micro-batch sizes timed on both sides (each side's fastest is compared)")
    ap.add_argument("--hf-attn", default="sdpa,eager", help="HF attention implementations tried (fastest is used)")
    ap.add_argument("--trl-steps", type=int, default=4, help="timed TRL RL steps (after 1 warm-up RL step)")
    ap.add_argument("--skip-trl", action="store_true")
    a = ap.parse_args()

    common.pin_threads(a.threads)
    exp = load_experiment(a.experiment)
    specs = [s for s in expand(exp) if s.variant == a.variant]
    if not specs:
        log(f"no variant {a.variant!r} in {a.experiment}")
        return 2
    spec = specs[0]
    spec = spec.model_copy(update={"warm_start": spec.warm_start.model_copy(update={"steps": a.warm_steps}),
                                   "train": spec.train.model_copy(update={"threads": a.threads})})
    tr = spec.train
    B, G, T = tr.prompts_per_step, tr.group_size, tr.max_new_tokens
    tok = common.tokenizer()
    max_len = common.build_model(spec).cfg.max_len
    m = spec.model
    import hashlib

    digest = hashlib.sha256(Path(a.experiment).read_bytes()).hexdigest()[:12]
    log(f"# local RL step benchmark  (experiment {a.experiment} sha256:{digest}, variant {a.variant}, preset {spec.preset})")
    log(f"torch {torch.__version__}, threads {a.threads} (torch.get_num_threads()={torch.get_num_threads()}), "
        f"os.cpu_count()={os.cpu_count()}, load avg 1/5/15 min at start: {load()}")
    log(f"model: n_layer={m.n_layer} n_head={m.n_head} d_model={m.d_model} vocab={tok.vocab_size} max_len={max_len}; "
        f"B={B} x G={G}, mini_batches={tr.mini_batches}, epochs={tr.epochs}, max_new_tokens={T}, "
        f"temperature={tr.temperature}, top_p={tr.top_p}, warm start {a.warm_steps} steps")
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="local_step_bench_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        ensure_warm_start(spec, tmp)
        log(f"warm start: {time.perf_counter() - t0:.1f}s")
        trainer = LocalTrainer(spec, tmp)

        # 1. our RL step
        log(f"\n## 1. our RL step: collect_batch + LocalTrainer.update, median of {a.steps} steps after 1 warm-up")
        nat = our_steps(trainer, spec, 1, a.steps)
        no_eos(trainer.policy)
        fix = our_steps(trainer, spec, a.steps + 2, a.steps)
        for name, r in (("natural (EOS allowed)", nat), (f"fixed ({T} tokens/response)", fix)):
            log(f"{name:28s} step {r['step_s']:.3f}s = sampling {r['sample_s']:.3f}s + training {r['train_s']:.3f}s "
                f"| mean response length {r['resp_len']:.1f} tokens | sampling {r['gen_tok_s']:.0f} tok/s "
                f"| steps: {', '.join(f'{x:.3f}' for x in r['all_steps'])}")
        log(f"load avg: {load()}")

        # 2. our sampler alone, 3. HF generate: same prompt tensors, each micro-batch size on both sides in turn
        import transformers

        prompts = [p.prompt for p in common.train_problems(spec, B, spec.task.min_ops, spec.task.max_ops, "sampler-bench")
                   for _ in range(G)]
        chunks = [int(c) for c in a.chunks.split(",")]
        hf_model = gpt2_model(tok, max_len, spec)
        log(f"\n## 2./3. our KV-cached sampler vs HF generate, {len(prompts)} sequences x {T} new tokens, median of {a.repeats} "
            f"after 1 warm-up")
        log(f"HF: GPT-2 same shape, random init, fp32, use_cache=True, do_sample=True, temperature={tr.temperature}, "
            f"top_p={tr.top_p}, top_k=0, min_new_tokens=max_new_tokens={T}; transformers {transformers.__version__}; "
            f"GPT-2 params {sum(p.numel() for p in hf_model.parameters())} vs ours {sum(p.numel() for p in trainer.policy.parameters())}")
        ours_runs, hf_runs = {}, {}
        for chunk in chunks:
            ours_runs[chunk] = r = our_sampler(trainer.policy, tok, prompts, tr, a.repeats, chunk)
            line = f"micro-batch {chunk:4d}: ours {r['tok_s']:6.0f} tok/s ({r['s']:.3f}s)"
            for impl in a.hf_attn.split(","):
                hf_model.set_attn_implementation(impl)
                hf_runs[impl, chunk] = h = hf_generate(hf_model, tok, prompts, tr, a.repeats, chunk)
                line += f" | HF {impl} {h['tok_s']:6.0f} tok/s ({h['s']:.3f}s)"
            log(line)
        nat_policy = copy.deepcopy(trainer.policy)
        nat_policy.__class__ = TinyGPT
        ours_nat = our_sampler(nat_policy, tok, prompts, tr, a.repeats, 64)
        log(f"ours natural (EOS allowed, chunk 64): {ours_nat['s']:.3f}s for {ours_nat['tokens']} tokens = {ours_nat['tok_s']:.0f} tok/s "
            f"(mean length {ours_nat['resp_len']:.1f}; finished rows are computed until their whole chunk is done)")
        ours_best_chunk = max(ours_runs, key=lambda c: ours_runs[c]["tok_s"])
        ours = ours_runs[ours_best_chunk]
        (hf_impl, hf_chunk) = max(hf_runs, key=lambda k: hf_runs[k]["tok_s"])
        hf = hf_runs[hf_impl, hf_chunk]
        ratio_a = ours["tok_s"] / hf["tok_s"]
        same = {c: ours_runs[c]["tok_s"] / max(hf_runs[i, c]["tok_s"] for i in a.hf_attn.split(",")) for c in chunks}
        ours64 = ours_runs.get(64)
        ratio_a64 = ours64["tok_s"] / hf["tok_s"] if ours64 else None
        log(f"ratio (a), each side at its fastest: ours (micro-batch {ours_best_chunk}) / HF ({hf_impl}, micro-batch {hf_chunk}) "
            f"= {ratio_a:.2f}x")
        log("ratio at equal micro-batch (HF best attention): " + ", ".join(f"{c}: {v:.2f}x" for c, v in same.items()))
        if ratio_a64:
            log(f"ratio ours at the harness's micro-batch 64 (what collect_batch uses) / HF fastest = {ratio_a64:.2f}x")
        log(f"load avg: {load()}")

        # 4. TRL
        log(f"\n## 4. TRL GRPOTrainer (same GPT-2 shape), {a.trl_steps} timed RL steps after 1 warm-up RL step")
        trl_runs, trl_msg = {}, ""
        if a.skip_trl:
            trl_msg = "skipped (--skip-trl)"
        else:
            try:
                import trl  # noqa: F401
            except Exception as e:  # ImportError or a broken install
                trl_msg = f"skipped: trl is not importable ({type(e).__name__}: {e}); pip install trl to run part (b)"
            else:
                for ckpt in (True, False):
                    try:
                        trl_runs[ckpt] = trl_step(spec, tok, max_len, a.threads, a.trl_steps, tmp, ckpt)
                    except Exception as e:
                        trl_msg = f"failed: {type(e).__name__}: {e}"
                        break
        for ckpt, r in trl_runs.items():
            if ckpt:
                log(f"trl {r['version']}: per_device_train_batch_size={B * G // tr.mini_batches}, gradient_accumulation_steps=1, "
                    f"steps_per_generation={tr.mini_batches} (generation_batch_size={r['gen_batch']}), num_iterations={tr.epochs}, "
                    f"beta={spec.algorithm.objective('kl_coef')}, entropy_coef={spec.algorithm.objective('entropy_coef')}, "
                    f"loss_type=bnpo, max_completion_length={T}, generation_kwargs={{min_new_tokens: {T}}}; one RL step = "
                    f"1 generate call on {r['gen_batch']} prompts + {tr.mini_batches} optimizer steps of {B * G // tr.mini_batches}")
            log(f"activation_checkpointing={ckpt!s:5s}{' (TRL default)' if ckpt else ' (fastest)   '}: RL step {r['step_s']:.3f}s = "
                f"generate {r['gen_s']:.3f}s + rest (scoring, old/ref log-probs, {tr.mini_batches} optimizer steps) {r['train_s']:.3f}s "
                f"| mean response length {r['resp_len']:.1f} | steps: {', '.join(f'{x:.3f}' for x in r['all_steps'])} "
                f"(warm-up {r['warmup_s']:.3f}s) | threads during training {r['threads_seen']} "
                f"| TRL/ours = {r['step_s'] / fix['step_s']:.2f}x")
        trl_res = min(trl_runs.values(), key=lambda r: r["step_s"]) if trl_runs else None
        if trl_res:
            ratio_b = trl_res["step_s"] / fix["step_s"]
            log(f"ratio (b) TRL (fastest config) / ours seconds per RL step (both {T} tokens/response) = {ratio_b:.2f}x")
        else:
            log(f"TRL: {trl_msg}")
        log(f"load avg: {load()}")

    ok_a = ratio_a >= 1.5
    log("\n## summary")
    log(f"torch {torch.__version__}, threads {a.threads}, load avg 1/5/15 min at end {load()} (2-core VM, shared), "
        f"total benchmark time {time.perf_counter() - t_start:.0f}s")
    log(f"our RL step (grpo, {B}x{G}, {T} tokens/response):   {fix['step_s']:.3f}s "
        f"(sampling {fix['sample_s']:.3f}s + training {fix['train_s']:.3f}s)")
    log(f"our RL step (natural, mean length {nat['resp_len']:.1f}):      {nat['step_s']:.3f}s "
        f"(sampling {nat['sample_s']:.3f}s + training {nat['train_s']:.3f}s)")
    log(f"our sampler, {len(prompts)} seqs x {T} tokens:            {ours['tok_s']:.0f} tok/s (micro-batch {ours_best_chunk})"
        + (f"; {ours64['tok_s']:.0f} tok/s at micro-batch 64" if ours64 else ""))
    log(f"HF generate, fastest:                      {hf['tok_s']:.0f} tok/s ({hf_impl}, micro-batch {hf_chunk})")
    log(f"(a) ours / HF generate tokens/s:          {ratio_a:6.2f}x  target >= 1.5x: {'MET' if ok_a else 'NOT MET'}"
        f"  (equal micro-batch: {', '.join(f'{c}: {v:.2f}x' for c, v in same.items())}"
        + (f"; ours@64 vs HF fastest: {ratio_a64:.2f}x" if ratio_a64 else "") + ")")
    if trl_res:
        ok_b = ratio_b >= 5
        log(f"TRL GRPOTrainer RL step (fastest config):  {trl_res['step_s']:.3f}s (generate {trl_res['gen_s']:.3f}s); "
            f"with TRL's default activation checkpointing {trl_runs[True]['step_s']:.3f}s "
            f"({trl_runs[True]['step_s'] / fix['step_s']:.2f}x)" if True in trl_runs else "")
        log(f"(b) TRL / ours seconds per RL step:       {ratio_b:6.2f}x  target >= 5x:   {'MET' if ok_b else 'NOT MET'}")
    else:
        log(f"(b) TRL / ours seconds per RL step:       n/a ({trl_msg})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
