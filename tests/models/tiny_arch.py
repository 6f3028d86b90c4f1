"""Tiny torch architectures for the model tests (imported by path, like an operator's --architecture)."""

from __future__ import annotations

import math

import torch
from torch import nn


class TinyNet(nn.Module):
    """(N, T, F) or (N, F) -> P(up) from the last step: the shape of the fleet's sequence models."""

    def __init__(self, n_features: int = 6, hidden: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_features, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x[:, -1, :]
        return torch.sigmoid(self.fc2(torch.tanh(self.fc1(x)))).squeeze(-1)


def collapse(net: TinyNet, probability: float) -> TinyNet:
    """Zero every weight and set the last bias so the net always says ``probability``: the PatchTST
    that collapsed to a constant 0.5239."""
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
        net.fc2.bias.fill_(math.log(probability / (1.0 - probability)))
    return net
