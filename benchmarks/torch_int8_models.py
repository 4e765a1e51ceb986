"""The reference networks of torch_models.py as PyTorch 1.13 eager-mode int8 models.

Benchmark-only (int8_throughput.py): xquant never depends on PyTorch. The networks are the
ones of torch_models.py, with the changes eager-mode quantization needs:

- the residual blocks add through FloatFunctional (ResNet: add_relu, so the ReLU after the
  add is fused into the quantized add, as in xquant);
- the model is wrapped as QuantStub -> network -> DeQuantStub;
- conv + BN (+ ReLU) and dense + ReLU are fused before prepare().

ReLU6: PyTorch 1.13's eager fuser has no (Conv2d, BatchNorm2d, ReLU6) pattern (its table
fuses only ReLU), so MobileNet keeps conv + BN fused and ReLU6 as a separate module, which
convert() turns into nn.quantized.ReLU6: one extra elementwise pass over the quantized conv
output, and the conv's output range is observed before the ReLU6 clamp. (torchvision's
quantizable MobileNetV2 replaces ReLU6 with ReLU to fuse it; that would be another network.)

Calibration is min/max as in shared/reference-models.md: activations uint8 asymmetric per
tensor (MinMaxObserver, no reduce_range), weights int8 symmetric per output channel.
"""
import copy

import torch
from torch import nn
from torch.ao import quantization as tq
from torch.ao.nn.quantized import FloatFunctional

import torch_models


class QuantizableInvertedResidual(torch_models.InvertedResidual):
    def __init__(self, cin, cout, t, stride):
        super().__init__(cin, cout, t, stride)
        if self.residual:  # (an unused FloatFunctional would be converted with an empty observer)
            self.add = FloatFunctional()

    def forward(self, x):
        y = self.body(x)
        return self.add.add(x, y) if self.residual else y

    def fuse(self, qat=False):
        fuse_conv_bn_runs(self.body, qat)


class QuantizableBasicBlock(torch_models.BasicBlock):
    def __init__(self, cin, cout, stride):
        super().__init__(cin, cout, stride)
        self.add = FloatFunctional()

    def forward(self, x):
        return self.add.add_relu(self.body(x), self.shortcut(x))

    def fuse(self, qat=False):
        fuse_conv_bn_runs(self.body, qat)
        if isinstance(self.shortcut, nn.Sequential):
            fuse_conv_bn_runs(self.shortcut, qat)


def fuse_conv_bn_runs(seq, qat=False):
    """Fuses, in place, every Conv2d-BatchNorm2d[-ReLU] and Linear-ReLU run of a Sequential
    (ReLU6 is left alone: 1.13 cannot fuse it) and lets nested blocks fuse themselves.
    qat=True keeps BatchNorm as a module of the fused layer (fuse_modules_qat: ConvBnReLU2d
    for prepare_qat) instead of folding it into the weights."""
    names = [name for name, _ in seq.named_children()]
    mods = list(seq.children())
    groups, i = [], 0
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
            run = 3 if i + 2 < len(mods) and type(mods[i + 2]) is nn.ReLU else 2
            groups.append(names[i:i + run])
            i += run
            continue
        if isinstance(m, nn.Linear) and type(nxt) is nn.ReLU:
            groups.append(names[i:i + 2])
            i += 2
            continue
        if hasattr(m, "fuse"):
            m.fuse(qat)
        i += 1
    if groups:
        (tq.fuse_modules_qat if qat else tq.fuse_modules)(seq, groups, inplace=True)


def cnn():
    return torch_models.cnn()


def mobilenet():
    cb = torch_models.conv_bn
    ir = QuantizableInvertedResidual
    return nn.Sequential(*cb(1, 16, 3, act=nn.ReLU6),
                         ir(16, 16, 1, 1), ir(16, 24, 4, 2), ir(24, 24, 4, 1), ir(24, 32, 4, 2), ir(32, 32, 4, 1),
                         *cb(32, 128, 1, act=nn.ReLU6),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


def resnet():
    cb = torch_models.conv_bn
    bb = QuantizableBasicBlock
    return nn.Sequential(*cb(1, 16, 3, act=nn.ReLU),
                         bb(16, 16, 1), bb(16, 32, 2), bb(32, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


FLOAT_MODELS = {"cnn": cnn, "mobilenet": mobilenet, "resnet": resnet}


def randomize_batch_norm(model, gen):
    """BatchNorm state near a trained network's, as int8_throughput.cpp sets it."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0.0, 0.1, generator=gen)
                m.running_mean.normal_(0.0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)


def random_images(n, gen):
    """Normalised Fashion-MNIST-like inputs: uniform pixels in [0, 1], (p - 0.2860) / 0.3530."""
    return (torch.rand(n, 1, 28, 28, generator=gen) - 0.2860) / 0.3530


def min_max_qconfig():
    return tq.QConfig(
        activation=tq.MinMaxObserver.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_affine,
                                               reduce_range=False),
        weight=tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))


def float_model(name, seed=0):
    """The FP32 network (eval mode) with seeded random weights and BatchNorm statistics."""
    torch.manual_seed(seed)
    model = FLOAT_MODELS[name]()
    randomize_batch_norm(model, torch.Generator().manual_seed(seed))
    return model.eval()


def int8_model(float_net, engine, calibration, qconfig=None):
    """Eager-mode post-training quantization of `float_net` (left unchanged) for the quantized
    engine `engine` ('onednn', 'qnnpack'): fuse, QuantStub/DeQuantStub, prepare, one
    calibration forward on `calibration`, convert. Weights are prepacked for the engine
    selected at convert time, so the engine stays selected for running the result.
    qconfig: min_max_qconfig() (per-channel weights) unless given."""
    torch.backends.quantized.engine = engine
    net = copy.deepcopy(float_net).eval()
    fuse_conv_bn_runs(net)
    model = nn.Sequential(tq.QuantStub(), net, tq.DeQuantStub()).eval()
    model.qconfig = qconfig or min_max_qconfig()
    tq.prepare(model, inplace=True)
    with torch.no_grad():
        model(calibration)
    tq.convert(model, inplace=True)
    return model
