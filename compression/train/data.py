"""Data side of the trainer: a distributed, epoch-seeded sampler and a persistent-worker loader.

The workers run the dataset's ``__getitem__`` (decode + augmentation). Each index travels with
its epoch, so a dataset whose augmentation depends on ``set_epoch`` (or an ``epoch`` attribute)
draws the same augmentation in a worker as in the main process, even though persistent workers
hold their own copy of the dataset.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def set_epoch(ds, epoch: int) -> None:
    """``ds.set_epoch(epoch)``, or ``ds.epoch = epoch``, whichever the dataset has."""
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)
    elif hasattr(ds, "epoch"):
        ds.epoch = epoch


class EpochSampler(DistributedSampler):
    """DistributedSampler whose epoch-``e`` order is exactly the one the former per-epoch loops drew:
    ``DataLoader(shuffle=True, generator=Generator().manual_seed(seed + e))`` (which takes one
    int64 from the generator for the worker seed before the permutation). With one replica
    it is that order; with N, rank r takes every N-th index of it (padded like DistributedSampler).
    """

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        torch.empty((), dtype=torch.int64).random_(generator=g)
        indices = torch.randperm(len(self.dataset), generator=g).tolist()
        pad = self.total_size - len(indices)
        if pad > 0:
            indices += (indices * (pad // len(indices) + 1))[:pad]
        return iter(indices[self.rank:self.total_size:self.num_replicas])


class EpochBatches:
    """Batch sampler of ``(epoch, index)`` pairs over an :class:`EpochSampler`, full batches only,
    starting ``skip`` batches into the epoch (resume)."""

    def __init__(self, sampler: EpochSampler, batch_size: int):
        self.sampler, self.batch_size = sampler, batch_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return max(0, len(self.sampler) // self.batch_size - self.skip)

    def __iter__(self):
        idx = list(self.sampler)
        bs = self.batch_size
        for b in range(self.skip, len(idx) // bs):
            yield [(self.epoch, i) for i in idx[b * bs:(b + 1) * bs]]


class EpochDataset(Dataset):
    """``ds[(epoch, i)]``: sets the epoch on (this process's copy of) ``ds``, then ``ds[i]``."""

    def __init__(self, ds):
        self.ds, self.epoch = ds, None

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        epoch, i = key
        if epoch != self.epoch:
            set_epoch(self.ds, epoch)
            self.epoch = epoch
        return self.ds[i]


def _seed_worker(worker_id: int) -> None:
    s = torch.initial_seed() % 2 ** 32
    np.random.seed(s)
    random.seed(s)


def make_loader(ds, *, batch_size: int, rank: int, world: int, seed: int, workers: int, prefetch: int,
                pin_memory: bool) -> tuple[DataLoader, EpochBatches]:
    """The training DataLoader (per-rank batches) and its batch sampler (call ``set_epoch`` on it)."""
    sampler = EpochSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
    batches = EpochBatches(sampler, batch_size)
    loader = DataLoader(EpochDataset(ds), batch_sampler=batches, num_workers=workers,
                        persistent_workers=workers > 0, prefetch_factor=prefetch if workers else None,
                        pin_memory=pin_memory, worker_init_fn=_seed_worker if workers else None,
                        generator=torch.Generator().manual_seed(seed))
    return loader, batches


def to_device(batch, device: torch.device, channels_last: bool = False):
    """Move tensors in (nested dicts / lists / tuples of) ``batch`` to ``device``; the ``image``
    entry of a dict goes channels-last when asked."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True) if batch.device != device else batch
    if isinstance(batch, dict):
        out = {k: to_device(v, device) for k, v in batch.items()}
        img = out.get("image")
        if channels_last and isinstance(img, torch.Tensor) and img.dim() == 4:
            out["image"] = img.contiguous(memory_format=torch.channels_last)
        return out
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batch_len(batch) -> int:
    """Samples in a batch (the first tensor's first dimension; 1 when there is none)."""
    if isinstance(batch, torch.Tensor):
        return len(batch)
    if isinstance(batch, dict):
        for v in batch.values():
            n = batch_len(v)
            if n:
                return n
    if isinstance(batch, (list, tuple)):
        for v in batch:
            n = batch_len(v)
            if n:
                return n
    return 1 if batch is None else 0


__all__ = ["EpochSampler", "EpochBatches", "EpochDataset", "make_loader", "set_epoch", "to_device", "batch_len"]
