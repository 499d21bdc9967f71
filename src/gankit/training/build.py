"""What a Trainer is built from: its device and precision, the optimisers, the data on the
device, and the wrapped networks its step runs (DistributedDataParallel, torch.compile)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..data.base import ImageDataset
from ..device import Precision, choose_precision, resolve_device
from ..distributed import World, broadcast_object, rank_device
from ..regularisers import Regulariser


def training_device(cfg: TrainConfig, world: World) -> torch.device:
    """The device this process trains on (with several processes, its rank's)."""
    return rank_device(resolve_device(cfg.device), world)


def run_precision(cfg: TrainConfig, device: torch.device, world: World) -> Precision:
    """What cfg.precision comes to on `device`; with several processes, rank 0's choice on
    every rank (the ranks must compute alike, and auto's measurement may differ between them)."""
    precision = choose_precision(cfg.precision, device)
    if cfg.precision == "auto" and world.distributed:
        precision = broadcast_object(precision, world)
    return precision


def make_optimizer(cfg: TrainConfig, net: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with (beta1, beta2), or RMSprop as in the WGAN paper (momentum-free).

    `optimizer_impl` picks torch's implementation, which changes speed, not the maths: `fused`
    (one kernel for all weights; RMSprop has none and uses `foreach`), `foreach` (batched
    tensor ops) or `loop` (one weight at a time, torch's default on the CPU).
    """
    impl = cfg.optimizer_impl
    kw: dict[str, Any] = {"foreach": impl != "loop"}
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(net.parameters(), lr=lr, **kw)
    if impl == "fused":
        kw = {"fused": True}
    return torch.optim.Adam(net.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2), **kw)


def data_on_device(dataset: ImageDataset, device: torch.device, how: str) -> ImageDataset:
    """The dataset with its uint8 images on the training device when that is worthwhile.

    Batches are then cut by indexing on the device, with no host-to-device copy per step. On
    a GPU the images must take under a quarter of its free memory; the CPU needs no move.
    """
    if how == "cpu" or device.type == "cpu" or dataset.images.device == device:
        return dataset
    size = dataset.images.numel() + (0 if dataset.labels is None else 8 * len(dataset))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if size > free // 4:
            return dataset
    return dataset.to(device)


@dataclass(frozen=True)
class StepNetworks:
    """The callables a training step runs, and how D's gradients are averaged."""

    G: nn.Module  # G's forward for both updates
    D: nn.Module  # D's forward in D's update
    D_for_g: nn.Module  # D's forward in G's update
    average_d_by_hand: bool  # D is not wrapped by DDP: average its gradients after backward


def wrap_networks(
    G: nn.Module,
    D: nn.Module,
    *,
    world: World,
    device: torch.device,
    regularisers: list[Regulariser],
    compile: bool,
) -> StepNetworks:
    """G and D themselves, or wrapped by DistributedDataParallel (gradients averaged over
    the ranks) and/or torch.compile.

    G's update runs D without DDP (`D_for_g`): D's weights take no gradient there, and a
    DDP module whose parameters get no gradient would wait for them forever.
    """
    G_step, D_step, D_for_g = G, D, D
    # A regulariser that trains parts of D outside D's forward (InfoGAN's Q head) leaves
    # DDP waiting for gradients it never sees; such a D's gradients are averaged by hand.
    by_hand = world.distributed and any(r.trains_outside_forward for r in regularisers)
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        # 1-channel weights are both NCHW and NHWC; their gradients may come in either
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
        G_step = DDP(G, device_ids=ids)
        if not by_hand:
            D_step = DDP(D, device_ids=ids)
    if compile:
        G_step, D_step = torch.compile(G_step), torch.compile(D_step)
        D_for_g = D_step if not world.distributed else torch.compile(D)
    return StepNetworks(G_step, D_step, D_for_g, by_hand)
