"""verl's real engine in this process (verl: {mode: inproc}) against the local backend and plain HF:
same log-probs, same advantages and loss on the same modchain batch, updates that follow the advantages."""

import copy

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("verl", reason="verl backend tests need the verl extra (make test installs it)")
from harness.embedded import common  # noqa: E402
from harness.backends.local.rollout import collect_batch  # noqa: E402
from harness.embedded.sampler import chunked_forward  # noqa: E402
from harness.backends.local.trainer import LocalTrainer  # noqa: E402
from harness.embedded.warmstart import heldout_digest, warm_start_path  # noqa: E402
from harness.backends.verl import compose, data, inproc  # noqa: E402
from harness.backends.verl import rollout as ro  # noqa: E402
from harness.backends.verl.backend import VerlBackend  # noqa: E402
from harness.backends.verl.hf_export import export_hf  # noqa: E402
from harness.config.experiment import load_experiment  # noqa: E402
from harness.config.runspec import expand  # noqa: E402

pytestmark = pytest.mark.e2e

EXP = {
    "name": "engine", "seeds": [0],
    "task": {"name": "modchain", "min_ops": 1, "max_ops": 3, "grader": "answer"},
    "model": {"n_layer": 2, "n_head": 2, "d_model": 32},
    "warm_start": {"steps": 1},
    # one mini-batch, two epochs: the second epoch is off-policy, so the clip bounds and the KL term are live
    "train": {"steps": 2, "prompts_per_step": 6, "group_size": 4, "mini_batches": 1, "epochs": 2, "lr": 3e-3, "max_new_tokens": 10},
    "eval": {"every": 2, "n": 2, "benchmarks": {"easy": {"min_ops": 1, "max_ops": 3, "problems": 4}}},
    "variants": [{"name": "grpo", "preset": "grpo"}],
}


def spec_of(tmp_path, raw, name) -> dict:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(raw))
    return expand(load_experiment(p))[0]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """The same random TinyGPT as the local backend's policy and, exported, as verl's actor."""
    tmp = tmp_path_factory.mktemp("engine")
    local = spec_of(tmp, EXP, "local")
    torch.manual_seed(11)
    model = common.build_model(local)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cache = tmp / "cache"
    common.atomic_torch_save({"state_dict": model.state_dict(), "heldout_sha256": heldout_digest(local)},
                             warm_start_path(local, cache))  # the local "warm start"
    hf_dir = export_hf(model, common.tokenizer(), tmp / "hf")
    lt = LocalTrainer(local, cache)
    raw = copy.deepcopy(EXP) | {"backend": "verl", "verl": {"mode": "inproc", "model": str(hf_dir)}}
    vspec = spec_of(tmp, raw, "verl")
    run_dir = tmp / "run"
    data.write_datasets(vspec, run_dir)
    cfg = compose.compose(VerlBackend().overrides(vspec, run_dir, cache))
    vt = inproc.InprocTrainer(vspec, cfg, run_dir, str(hf_dir))
    vt.rebuild = lambda ov: inproc.InprocTrainer(vspec, compose.compose(VerlBackend().overrides(vspec, run_dir, cache) + ov),
                                                 run_dir, str(hf_dir))
    batch, _ = collect_batch(lt.policy, local, lt.preset, 1)
    # a random model answers nothing right: give the batch rewards with every kind of group
    # (all wrong, all right, mixed); both backends then process exactly these rewards
    batch.acc = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.bool)
    batch.reward = batch.acc.float()
    gen = ro.Generated(batch.prompt_ids, (batch.prompt_ids != common.tokenizer().PAD).long(), batch.completion_ids,
                       batch.mask.long(), batch.truncated)
    return lt, vt, batch, gen


def test_verl_engine_log_probs_equal_plain_hf_and_the_local_model(engines):
    lt, vt, batch, gen = engines
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import no_padding_2_padding

    td = ro.as_tensordict(gen)
    tu.assign_non_tensor(td, calculate_entropy=False, compute_loss=False, temperature=1.0)
    engine = no_padding_2_padding(tu.get(vt.actor.compute_log_prob(td), "log_probs"), td).float()
    ids = torch.cat([gen.prompts, gen.responses], 1)
    att = torch.cat([gen.prompt_mask, gen.response_mask], 1)
    with torch.no_grad():  # plain HF, fp32, the model verl loaded
        logits = vt.policy(input_ids=ids, attention_mask=att, position_ids=(att.cumsum(-1) - 1).clamp(min=0)).logits
    P = gen.prompts.shape[1]
    hf = torch.log_softmax(logits[:, P - 1 : -1].float(), -1).gather(-1, gen.responses[..., None]).squeeze(-1)
    local = chunked_forward(lt.policy, lt.tok, batch.prompt_ids, batch.completion_ids, batch.mask, 64)
    m = gen.response_mask.bool()
    assert (engine - hf)[m].abs().max().item() <= 1e-5
    assert (engine - local)[m].abs().max().item() <= 1e-5


def test_same_batch_gives_the_same_advantages_and_loss_on_both_backends(engines):
    lt, vt, batch, gen = engines
    data, _ = vt.advantages(gen, batch.reward)
    first = gen.response_mask.argmax(dim=1)
    verl_adv = data.batch["advantages"][torch.arange(len(first)), first]
    old = chunked_forward(lt.policy, lt.tok, batch.prompt_ids, batch.completion_ids, batch.mask, 64)
    local_adv, _ = lt.advantages(batch, old, old, None)
    assert torch.allclose(verl_adv, local_adv, atol=1e-5)

    verl_m = vt.update(gen, batch.reward, 1)  # two epochs on one mini-batch: means over the two optimizer steps
    local_m = lt.update(batch, 1)
    assert verl_m["actor/pg_clipfrac"] > 0  # the second epoch clipped: the clipped surrogate itself is compared
    assert verl_m["actor/pg_loss"] == pytest.approx(local_m["actor/pg_loss"], rel=1e-4, abs=1e-6)
    assert verl_m["actor/entropy_loss"] == pytest.approx(local_m["actor/entropy"], rel=1e-4)
    assert verl_m["actor/kl_loss"] == pytest.approx(local_m["actor/kl_ref"], rel=1e-3, abs=1e-7)
    local_total = local_m["actor/pg_loss"] - 0.001 * local_m["actor/entropy"] + 0.001 * local_m["actor/kl_ref"]
    assert verl_m["actor/loss"] == pytest.approx(local_total, rel=1e-4, abs=1e-6)


def test_an_update_moves_each_sequence_with_its_advantage(engines):
    # a fresh actor with plain SGD: a first-order step, so the change of each sequence's log-probability is
    # its own gradient term (Adam's per-parameter normalisation only preserves the sign on average)
    vt = engines[1].rebuild(["actor_rollout_ref.actor.optim.optimizer=SGD", "actor_rollout_ref.actor.optim.lr=0.05",
                             "actor_rollout_ref.actor.optim.weight_decay=0.0"])
    gen = engines[3]
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import no_padding_2_padding

    def seq_logp():
        td = ro.as_tensordict(gen)
        tu.assign_non_tensor(td, calculate_entropy=False, compute_loss=False, temperature=1.0)
        lp = no_padding_2_padding(tu.get(vt.actor.compute_log_prob(td), "log_probs"), td).float()
        return (lp * gen.response_mask).sum(-1)

    N = gen.responses.shape[0]
    adv = torch.where(torch.arange(N) // 4 % 2 == 0, 1.0, -1.0)  # alternate prompt groups up and down
    td = ro.as_tensordict(gen)
    tu.assign_non_tensor(td, calculate_entropy=False, compute_loss=False, temperature=1.0)
    old_tok = no_padding_2_padding(tu.get(vt.actor.compute_log_prob(td), "log_probs"), td).float()
    old = (old_tok * gen.response_mask).sum(-1)
    td = ro.as_tensordict(gen, old_log_probs=old_tok, ref_log_prob=old_tok, advantages=adv[:, None] * gen.response_mask)
    tu.assign_non_tensor(td, calculate_entropy=False, distillation_use_topk=False, distillation_only=False,
                         global_batch_size=N, mini_batch_size=N, epochs=1, seed=0, dataloader_kwargs={"shuffle": False},
                         compute_loss=True, temperature=1.0)
    vt.actor.update_actor(td)
    delta = seq_logp() - old
    group_mean = delta.view(-1, 4).mean(1)
    assert torch.equal(torch.sign(group_mean), adv.view(-1, 4)[:, 0]), group_mean  # every group moves its way
    agree = (torch.sign(delta) == adv).float().mean().item()
    corr = torch.corrcoef(torch.stack([delta, adv]))[0, 1].item()
    assert agree >= 0.85 and corr > 0.6, (agree, corr, delta)  # and most single sequences do (shared tokens interfere)


def test_a_partial_batch_is_split_by_the_local_rule_on_verl_too(engines):
    """5 groups of a 6-group batch (the round cap was hit), 2 mini-batches, 2 epochs: 2 x (3 + 2 groups) optimizer
    steps, the rows of each the local backend's (issue 18: it used to be one step, so no clip could bind)."""
    from harness.backends.batching import mini_batch_rows
    from harness.embedded.common import derive_seed

    vt = engines[1].rebuild([])
    vt.spec = vt.spec.model_copy(update={"train": vt.spec.train.model_copy(update={"mini_batches": 2})})
    gen, reward = engines[3], engines[2].reward
    part = ro.select_rows(gen, np.arange(20))
    seen = []
    update = vt.actor.update_actor
    vt.actor.update_actor = lambda td: seen.append(td.batch_size[0]) or update(td)
    vt.update(part, reward[:20], 1)
    expected = [len(r) for e in range(2) for r in mini_batch_rows(5, 4, 2, derive_seed("minibatch", vt.spec.seed, 1, e))]
    assert seen == expected == [12, 8, 12, 8]


def test_max_epochs_ends_the_run_when_the_data_is_used_up(engines):
    """verl's total_epochs: the in-process engine's last step is the one that drew train.max_epochs passes."""
    vt = engines[1]
    n, cursor, spec = len(vt.train_rows), vt.cursor, vt.spec
    try:
        vt.spec = spec.model_copy(update={"train": spec.train.model_copy(update={"max_epochs": 2})})
        vt.cursor = 2 * n - 1
        assert not vt.data_exhausted()
        vt.next_rows(1)
        assert vt.data_exhausted()
        vt.spec = spec
        assert not vt.data_exhausted()  # null: train.steps alone
    finally:
        vt.spec, vt.cursor = spec, cursor
