"""The three reference networks of shared/reference-models.md, in PyTorch.

Benchmark-only: xquant never depends on PyTorch. These definitions exist so that the
benchmark scripts can time (and, for the accuracy tables, train) exactly the same
networks with Debian's python3-torch (PyTorch 1.13) side by side with xquant.
"""
import torch
from torch import nn


def conv_bn(cin, cout, k, stride=1, groups=1, act=None):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return layers


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, t, stride):
        super().__init__()
        hidden = cin * t
        layers = [] if t == 1 else conv_bn(cin, hidden, 1, act=nn.ReLU6)
        layers += conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6)
        layers += conv_bn(hidden, cout, 1)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(cin, cout, 3, stride, act=nn.ReLU), *conv_bn(cout, cout, 3))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Sequential(*conv_bn(cin, cout, 1, stride)))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def cnn():
    return nn.Sequential(*conv_bn(1, 32, 3, act=nn.ReLU), nn.MaxPool2d(2),
                         *conv_bn(32, 64, 3, act=nn.ReLU), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def mobilenet():
    return nn.Sequential(*conv_bn(1, 16, 3, act=nn.ReLU6),
                         InvertedResidual(16, 16, 1, 1), InvertedResidual(16, 24, 4, 2),
                         InvertedResidual(24, 24, 4, 1), InvertedResidual(24, 32, 4, 2),
                         InvertedResidual(32, 32, 4, 1),
                         *conv_bn(32, 128, 1, act=nn.ReLU6),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


def resnet():
    return nn.Sequential(*conv_bn(1, 16, 3, act=nn.ReLU),
                         BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


MODELS = {"cnn": cnn, "mobilenet": mobilenet, "resnet": resnet}
