"""Optimisers and the learning-rate schedule of BERT pretraining.

AdamW (fused on CUDA) as in the paper, LAMB (You et al., 2019) for large batches, weight decay
kept off biases and LayerNorm weights, and linear warm-up followed by linear decay to zero.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from model.train_config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights that decay, and biases plus LayerNorm weights that do not."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            if isinstance(module, nn.LayerNorm) or name.endswith("bias"):
                no_decay.append(parameter)
            else:
                decay.append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class Lamb(torch.optim.Optimizer):
    """LAMB: Adam's direction, scaled per tensor by ||weights|| / ||update|| (trust ratio).

    With bias correction and decoupled weight decay inside the update, as in You et al. (2019)
    Algorithm 2; a tensor whose weights or update have norm 0 uses a trust ratio of 1.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0:
            raise ValueError(f"Lamb: invalid lr {lr}, eps {eps} or weight_decay {weight_decay}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            states = [self.state[p] for p in params]
            for p, state in zip(params, states, strict=True):
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]
            for state in states:
                state["step"] += 1
            step = states[0]["step"]
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)  # m = b1 m + (1 - b1) g
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
            correction1 = 1 - beta1**step  # () tensors: no host sync
            correction2 = 1 - beta2**step
            denominators = torch._foreach_div(exp_avg_sqs, correction2)
            torch._foreach_sqrt_(denominators)
            torch._foreach_add_(denominators, group["eps"])
            updates = torch._foreach_div(exp_avgs, correction1)
            torch._foreach_div_(updates, denominators)
            if group["weight_decay"]:
                torch._foreach_add_(updates, params, alpha=group["weight_decay"])
            weight_norms = torch._foreach_norm(params)
            update_norms = torch._foreach_norm(updates)
            for p, update, w_norm, u_norm in zip(
                params, updates, weight_norms, update_norms, strict=True
            ):
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0)
                p.add_(update * (trust * -group["lr"]))
        return loss


def build_optimizer(model: nn.Module, config: OptimConfig, device: torch.device):
    """AdamW (fused on CUDA when config.fused) or LAMB over param_groups(model)."""
    groups = param_groups(model, config.weight_decay)
    if config.name == "lamb":
        return Lamb(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    if config.name != "adamw":
        raise ValueError(f"optim.name must be 'adamw' or 'lamb', got {config.name!r}")
    fused = config.fused and device.type == "cuda"
    return torch.optim.AdamW(
        groups,
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        fused=fused,
        foreach=None if fused else True,
    )


def warmup_linear_decay(step: int, *, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor at `step`: step / warmup, then linear decay to 0 at total_steps."""
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


class WarmupLinearDecay:
    """Sets each group's lr to its peak times warmup_linear_decay(step); checkpointable."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int):
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.peak_lrs = [group["lr"] for group in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    @property
    def lr(self) -> float:
        """The current learning rate of the first group."""
        return self.optimizer.param_groups[0]["lr"]

    def _apply(self) -> None:
        factor = warmup_linear_decay(
            self.step_count, warmup_steps=self.warmup_steps, total_steps=self.total_steps
        )
        for group, peak in zip(self.optimizer.param_groups, self.peak_lrs, strict=True):
            group["lr"] = peak * factor

    def step(self) -> None:
        """Advance one optimizer step."""
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "peak_lrs": list(self.peak_lrs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved step; the peak lrs and lengths of this run are kept."""
        self.step_count = int(state["step_count"])
        self._apply()


def clip_gradients(parameters: list[Tensor], max_norm: float) -> Tensor:
    """Clip to max_norm (0: no clipping) and return the global norm before clipping."""
    limit = max_norm if max_norm > 0 else float("inf")
    return torch.nn.utils.clip_grad_norm_(parameters, limit, foreach=True)
