"""Run by tests/test_trainer.py under torchrun (2 processes, gloo) and as one plain process.

A tiny convolutional model (no batch norm: per-rank batch statistics would differ from the
global batch's) on a fixed synthetic dataset; writes ``rank{r}.pt`` (weights + per-step losses).
"""

import sys
from pathlib import Path

import torch
from torch import nn

from edgepose.compression.train import Trainer, TrainerConfig


class DS(torch.utils.data.Dataset):
    def __init__(self, n=32):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.y = torch.randn(n, 4, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "y": self.y[i]}


class Loss(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(6, 4))

    def forward(self, b):
        return {"mse": ((self.net(b["image"]) - b["y"]) ** 2).mean()}


def main(out: str, steps: int) -> None:
    torch.manual_seed(0)
    m = Loss()
    cfg = TrainerConfig(steps=steps, batch_size=8, lr=1e-2, warmup=1, device="cpu", progress=False, threads=1)
    res = Trainer(m, DS(), cfg).fit()
    rank = int(__import__("os").environ.get("RANK", "0"))
    torch.save({"state": m.state_dict(), "loss": [h["loss"] for h in res.history], "world": res.world,
                "rank_loss": [h.get("rank_loss") for h in res.history]}, Path(out) / f"rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
