"""Policy losses, KL estimators, entropy, aggregation modes and the clipped value loss.

Shapes: logp, old_logp, ref_logp, mask, values: [N, T] (N responses, T response tokens, right-padded);
advantages: [N] (outcome methods, broadcast over tokens) or [N, T] (GAE). A registered policy loss
returns (loss: scalar tensor, metrics: dict[str, float]) with at least clipfrac_low, clipfrac_high
and approx_kl (token means over the mask).
"""

from __future__ import annotations

import torch

from algorithms.registry import register_policy_loss

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
KL_ESTIMATORS = ("k1", "k3")


def aggregate(
    x: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", norm_len: int | None = None
) -> torch.Tensor:
    """Reduce a token-level quantity x [N, T] to a scalar over mask [N, T].

    token-mean: sum / #tokens (DAPO, the paper's recipe); seq-mean-token-mean: mean over sequences of
    per-sequence token means (DeepSeekMath GRPO); seq-mean-token-sum-norm: mean over sequences of token
    sums divided by a constant norm_len (Dr. GRPO: the generation limit; default T, so callers pad x and
    mask to the generation limit, as the local trainer does and verl's loss_scale_factor sets).
    """
    m = mask.to(x.dtype)
    if mode == "token-mean":
        return (x * m).sum() / m.sum().clamp(min=1)
    if mode == "seq-mean-token-mean":
        return ((x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)).mean()
    if mode == "seq-mean-token-sum-norm":
        return ((x * m).sum(dim=1) / float(norm_len or x.shape[1])).mean()
    raise ValueError(f"agg must be one of {AGG_MODES}, got {mode!r}")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return aggregate(x, mask, "token-mean")


K3_LOG_RATIO_CLAMP, K3_VALUE_CAP = 20.0, 10.0  # verl 0.9.1 core_algos.kl_penalty_forward("low_var_kl")


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate [N, T]. k1: logp - ref_logp; k3 (Schulman's low-variance
    estimator) exactly as verl's low_var_kl: d = ref_logp - logp clamped to [-20, 20], then
    exp(d) - d - 1 clamped to [-10, 10] (value and gradient: tests/unit/test_verl_parity.py)."""
    if kind == "k1":
        return logp - ref_logp
    if kind == "k3":
        d = torch.clamp(ref_logp - logp, min=-K3_LOG_RATIO_CLAMP, max=K3_LOG_RATIO_CLAMP)
        return torch.clamp(torch.exp(d) - d - 1, min=-K3_VALUE_CAP, max=K3_VALUE_CAP)
    raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {kind!r}")


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution per position: logits [..., V] -> [...]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def _broadcast_adv(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if advantages.ndim == 1:
        if advantages.shape[0] != like.shape[0]:
            raise ValueError(
                f"advantages has {advantages.shape[0]} entries but logp has {like.shape[0]} rows"
            )
        return advantages[:, None].to(like.dtype)
    if advantages.shape != like.shape:
        raise ValueError(
            f"advantages shape {tuple(advantages.shape)} must be [N] or match logp {tuple(like.shape)}"
        )
    return advantages.to(like.dtype)


def _check_eps(**eps: float) -> None:
    for name, v in eps.items():
        if not 0.0 < float(v) < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {v}")


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    lower: torch.Tensor | float, upper: torch.Tensor | float, clip_c: float | None, agg: str,
) -> tuple[torch.Tensor, dict[str, float]]:
    """max(-A rho, -A clip(rho, lower, upper)), with optional dual clip min(., -A c) where A < 0."""
    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(
            f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)} and mask {tuple(mask.shape)} must match"
        )
    if logp.numel() == 0:
        raise ValueError("logp is empty")
    adv = _broadcast_adv(advantages, logp)
    log_ratio = (logp - old_logp).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    loss_tok = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, lower, upper))
    m = mask.to(logp.dtype)
    metrics = {}
    if clip_c is not None:
        if clip_c <= 1.0:
            raise ValueError(f"clip_c must be > 1, got {clip_c}")
        dual = torch.minimum(loss_tok, -adv * clip_c)
        metrics["dual_clipfrac"] = masked_mean(((adv < 0) & (dual < loss_tok)).to(m.dtype), m).item()
        loss_tok = torch.where(adv < 0, dual, loss_tok)
    with torch.no_grad():
        metrics["clipfrac_high"] = masked_mean(((adv > 0) & (ratio > upper)).to(m.dtype), m).item()
        metrics["clipfrac_low"] = masked_mean(((adv < 0) & (ratio < lower)).to(m.dtype), m).item()
        metrics["approx_kl"] = masked_mean(-log_ratio, m).item()
        metrics["ratio_mean"] = masked_mean(ratio, m).item()
    return aggregate(loss_tok, mask, agg), metrics


@register_policy_loss("ppo_clip")
def ppo_clip(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
    eps_low: float = 0.2, eps_high: float = 0.2, clip_c: float | None = None, agg: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate (Schulman et al. 2017) with decoupled bounds [1 - eps_low, 1 + eps_high]
    ("clip-higher", DAPO arXiv 2503.14476) and optional dual clip c (Ye et al. 2019, arXiv 1912.09729)."""
    _check_eps(eps_low=eps_low, eps_high=eps_high)
    return clipped_surrogate(logp, old_logp, advantages, mask, 1.0 - eps_low, 1.0 + eps_high, clip_c, agg)


@register_policy_loss("sign_clip")
def sign_clip(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
    eps_pos: float = 0.24, eps_neg: float = 0.16, clip_c: float | None = None, agg: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """NGRPO's asymmetric clipping (arXiv 2509.18851): responses with A >= 0 are clipped to
    [1 - eps_pos, 1 + eps_pos], responses with A < 0 to [1 - eps_neg, 1 + eps_neg]. Under the
    pessimistic max this equals ppo_clip with eps_low = eps_neg, eps_high = eps_pos."""
    _check_eps(eps_pos=eps_pos, eps_neg=eps_neg)
    adv = _broadcast_adv(advantages, logp).expand_as(logp)
    eps = torch.where(adv >= 0, torch.full_like(logp, eps_pos), torch.full_like(logp, eps_neg))
    loss, metrics = clipped_surrogate(logp, old_logp, advantages, mask, 1.0 - eps, 1.0 + eps, clip_c, agg)
    return loss, metrics


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
    value_clip: float = 0.5, agg: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss 0.5 * agg(max((V - R)^2, (V_clipped - R)^2)), V_clipped = V_old + clip(V - V_old, +-c)."""
    v_clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
    l1, l2 = (values - returns) ** 2, (v_clipped - returns) ** 2
    loss = 0.5 * aggregate(torch.maximum(l1, l2), mask, agg)
    with torch.no_grad():
        clipfrac = masked_mean((l2 > l1).to(values.dtype), mask).item()
    return loss, {"value_clipfrac": clipfrac}
