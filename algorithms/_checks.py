"""Input checks shared by the tensor functions: one clear message naming the argument."""

from __future__ import annotations

import torch


def check_1d(name: str, t: torch.Tensor, n: int | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D [N], got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: need at least one response")
    if n is not None and t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries but rewards has {n}: shapes must match")


def check_finite(name: str, t: torch.Tensor) -> None:
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf values")


def check_same_shape(**tensors: torch.Tensor) -> None:
    items = list(tensors.items())
    name0, t0 = items[0]
    if t0.numel() == 0:
        raise ValueError(f"{name0} is empty")
    for name, t in items[1:]:
        if t.shape != t0.shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but {name0} has {tuple(t0.shape)}: shapes must match"
            )


def check_bool(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.bool:
        got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise TypeError(f"{name} must be a boolean tensor (correctness, never the shaped reward), got {got}")
