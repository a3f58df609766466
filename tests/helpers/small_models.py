"""Small real models for the tests: a digits-shaped 2-D CNN with a flatten head, a 1-D CNN and a
residual net (the conftest's fixtures and the technique and GPU tests build them)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Digits-shaped: three convs, a pool, a flatten and a two-layer head (every technique applies)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(1, 8, 3, padding=1),
                bn1=nn.BatchNorm2d(8),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(8, 16, 3, padding=1),
                bn2=nn.BatchNorm2d(16),
                relu2=nn.ReLU(),
                pool=nn.MaxPool2d(2),
                conv3=nn.Conv2d(16, 16, 3, padding=1, stride=2),
                bn3=nn.BatchNorm2d(16),
                relu3=nn.ReLU(),
            )
        )
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 2 * 2, 32)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(self.relu(self.fc1(self.flatten(self.features(x)))))
        return out


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn(self.conv(x)))


class ResidualNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.block = Residual(8)
        self.head = nn.Conv2d(8, 12, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.flatten(self.pool(self.head(self.block(self.stem(x))))))
        return out


class Small1D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 8, 5, padding=2)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1, stride=2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.flatten(self.relu(self.conv2(self.relu(self.conv1(x))))))
        return out


def randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so that folding and pruning are really exercised."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model.eval()
