"""Distributed set-up, mixed precision, torch.compile and DDP, applied from outside the model.

The model file stays plain single-device code; the trainer calls `parallelize` to get the
module it trains through: the loss module, wrapped in DDP when there are several processes,
then compiled.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from model.bert import BertForPreTraining, PreTrainingLoss, Unpadding


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job (world_size 1 without torchrun)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local_rank> when CUDA is available, else cpu."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("runtime.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_choice: str) -> Distributed:
    """Join the torchrun job when WORLD_SIZE > 1 (NCCL on GPUs, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_choice, local_rank)
    if world_size > 1 and not torch_dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return Distributed(rank, world_size, local_rank, device)


def close_distributed() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def all_reduce_sum(tensor: Tensor, dist: Distributed) -> Tensor:
    """Sum over ranks, in place (nothing to do on one process)."""
    if dist.world_size > 1:
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(value: Any, dist: Distributed) -> list[Any]:
    """Every rank's `value`, in rank order."""
    if dist.world_size == 1:
        return [value]
    gathered: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(gathered, value)
    return gathered


def barrier(dist: Distributed) -> None:
    if dist.world_size > 1:
        torch_dist.barrier()


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast (matrix products in bfloat16, reductions in float32), or nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on CUDA, fp32 elsewhere; 'fast' -> bf16 also on a CPU with native bf16
    arithmetic (AVX512-BF16 or AMX, which oneDNN uses), fp32 on other CPUs."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "fast":
        return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"
    return precision


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (else torch emulates it, slower than fp32)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


class PretrainingLossModule(nn.Module):
    """The model's training loss as a module's forward, which DDP and torch.compile need."""

    def __init__(self, model: BertForPreTraining, *, nsp: bool = True) -> None:
        super().__init__()
        self.model = model
        self.nsp = nsp  # the NSP loss counts (False: the paper's "No NSP" ablation)

    def forward(self, token_index: Tensor | None = None, **batch: Tensor) -> PreTrainingLoss:
        """`batch`: the arguments of BertForPreTraining.pretraining_loss, by name; with
        `token_index`, the encoder runs on the real tokens only (unpadded)."""
        unpadding = None
        if token_index is not None:
            B, T = batch["input_ids"].shape
            unpadding = Unpadding(token_index, B, T)
        return self.model.pretraining_loss(**batch, unpadding=unpadding, nsp=self.nsp)


@dataclass
class Parallelized:
    """What the trainer calls: `loss_module(**batch)` gives the loss (the model's loss, wrapped
    in DDP and compiled as asked); `ddp` is set with several processes."""

    loss_module: nn.Module
    ddp: DistributedDataParallel | None

    def no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on all but the last micro-step of an accumulation."""
        if skip and self.ddp is not None:
            return self.ddp.no_sync()
        return contextlib.nullcontext()


def parallelize(
    model: BertForPreTraining, dist: Distributed, *, compile: bool, nsp: bool = True
) -> Parallelized:
    """Wrap the model's loss in DDP (several processes), then torch.compile it (if asked)."""
    module: nn.Module = PretrainingLossModule(model, nsp=nsp)
    ddp = None
    if dist.world_size > 1:
        ddp = DistributedDataParallel(
            module,
            device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
            gradient_as_bucket_view=True,  # gradients live in the all-reduce buckets: no copy
        )
        module = ddp
    if compile:
        # Compiling the DDP module lets DDP's graph splitting overlap all-reduce with backward.
        module = torch.compile(module)
    return Parallelized(module, ddp)


def mark_dynamic_tokens(token_index: Tensor) -> None:
    """Tell torch.compile the number of real tokens varies, so it compiles once for all."""
    torch._dynamo.mark_dynamic(token_index, 0)
