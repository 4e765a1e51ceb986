"""PyTorch 1.13's own PTQ and QAT, started from the FP32 weights that xquant trained.

Benchmark-only: xquant never depends on PyTorch. The PyTorch accuracy figures compared
with xquant's elsewhere come from a model that PyTorch trained itself; this script takes
the FP32 checkpoint written by examples/train instead, so that both frameworks quantize
the very same weights and only the quantization differs. It

1. reads the xquant checkpoint (include/xquant/io/checkpoint.hpp) into the PyTorch twin of
   the model (torch_models.py), checking every tensor by name and shape;
2. evaluates the FP32 model on the 10,000 Fashion-MNIST test images (this should equal the
   accuracy examples/train printed);
3. runs eager-mode post-training quantization (torch_int8_models.py: conv+BN(+ReLU)
   fusion, QuantStub/DeQuantStub, min/max calibration on the first 1,000 training images,
   activations quint8 affine per tensor, weights qint8 symmetric per tensor and per
   channel) and evaluates the int8 models;
4. runs PyTorch's standard eager-mode QAT (fused ConvBnReLU2d QAT modules, the engine's
   default QAT qconfig: per-channel symmetric qint8 weights, no calibration before
   training) with the QAT recipe of shared/reference-models.md: 3 epochs, batch 128, SGD
   momentum 0.9, no weight decay, lr 0.001 cosine per step, seed-0 shuffling, BN
   statistics and observers frozen for the last epoch; then evaluates the fake-quant model
   and the converted int8 model.

Usage (Debian's python3-torch, so /usr/bin/python3 rather than a pyenv python):

    /usr/bin/python3 benchmarks/torch_same_weights.py --checkpoint out/resnet.xqckpt \\
        --model resnet [--threads 1] [--skip-qat] [--qat-epochs 3] [--limit N]

--limit N trains QAT on the first N training images only (a quick test).
"""
import argparse
import copy
import gzip
import json
import math
import os
import struct
import sys
import time
import zlib

import torch
from torch import nn
from torch.ao import quantization as tq
import torch.nn.intrinsic.qat as nniqat

import torch_int8_models
import torch_models

MAGIC = b"XQCKPT\x00\x01"
DATA_DIR = "/usr/share/datasets/fashion-mnist"
PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530


def fail(message):
    sys.exit(f"torch_same_weights: {message}")


# ---- the xquant checkpoint ------------------------------------------------------------

def read_checkpoint(path):
    """The float32 parameters and buffers of an xquant checkpoint, by name, and its metadata."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 24 or blob[:8] != MAGIC:
        fail(f"'{path}' is not an xquant checkpoint (magic {blob[:8]!r}, expected {MAGIC!r})")
    header_len, crc = struct.unpack_from("<QI", blob, 8)
    header_bytes = blob[24:24 + header_len]
    if len(header_bytes) != header_len or zlib.crc32(header_bytes) != crc:
        fail(f"'{path}': header truncated or CRC mismatch")
    header = json.loads(header_bytes)
    if header.get("format") != "xquant.checkpoint" or header.get("version") != 1:
        fail(f"'{path}': format {header.get('format')!r} version {header.get('version')!r}, "
             "expected 'xquant.checkpoint' version 1")
    data = memoryview(blob)[24 + header_len:]
    tensors = {}
    for entry in header["parameters"] + header["buffers"]:
        tensors[entry["name"]] = checkpoint_tensor(path, entry, data)
    return tensors, header.get("metadata") or {}


def checkpoint_tensor(path, entry, data):
    name, shape, offset, size = entry["name"], entry["shape"], entry["offset"], entry["size"]
    if entry["dtype"] != "float32" or size != 4 * math.prod(shape) or offset + size > len(data):
        fail(f"'{path}': tensor '{name}' has a bad dtype, size or offset")
    raw = data[offset:offset + size]
    if zlib.crc32(raw) != entry["crc32"]:
        fail(f"'{path}': tensor '{name}' fails its CRC")
    return torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)


# ---- xquant names of the PyTorch twins ------------------------------------------------
# xquant's conv_bn is one layer ("3.conv.weight", "3.bn.running_mean") where the twin has
# Conv2d, BatchNorm2d and the activation as three children of its Sequential; its global
# average pooling flattens too; the basic block names its layers conv1/conv2/shortcut.

def layer_groups(seq):
    """The children of a Sequential grouped into xquant's layers: Conv2d + BatchNorm2d
    (+ ReLU/ReLU6), AdaptiveAvgPool2d + Flatten, or one module."""
    children = list(seq.named_children())
    i = 0
    while i < len(children):
        kinds = [type(m) for _, m in children[i:i + 3]]
        if kinds[:2] == [nn.Conv2d, nn.BatchNorm2d]:
            run = 3 if kinds[2:] in ([nn.ReLU], [nn.ReLU6]) else 2
        elif kinds[:2] == [nn.AdaptiveAvgPool2d, nn.Flatten]:
            run = 2
        else:
            run = 1
        yield children[i:i + run]
        i += run


def own_tensor_names(module, torch_name, xquant_name):
    names = [n for n, _ in module.named_parameters(recurse=False)]
    names += [n for n, _ in module.named_buffers(recurse=False) if n != "num_batches_tracked"]
    return {f"{torch_name}.{n}": f"{xquant_name}.{n}" for n in names}


def xquant_names(seq, torch_prefix="", xquant_prefix="", layer_names=None):
    """{PyTorch state_dict name: xquant checkpoint name} for a twin model (a Sequential)."""
    out = {}
    for k, group in enumerate(layer_groups(seq)):
        first, tp = group[0][1], torch_prefix + group[0][0]
        xp = xquant_prefix + (layer_names[k] if layer_names else str(k))
        if len(group) > 1 and isinstance(first, nn.Conv2d):
            out.update(own_tensor_names(first, tp, xp + ".conv"))
            out.update(own_tensor_names(group[1][1], torch_prefix + group[1][0], xp + ".bn"))
        elif isinstance(first, torch_models.BasicBlock):
            out.update(xquant_names(first.body, tp + ".body.", xp + ".", ["conv1", "conv2"]))
            if isinstance(first.shortcut, nn.Sequential):
                out.update(xquant_names(first.shortcut, tp + ".shortcut.", xp + ".", ["shortcut"]))
        elif isinstance(first, torch_models.InvertedResidual):
            out.update(xquant_names(first.body, tp + ".body.", xp + ".body."))
        else:
            out.update(own_tensor_names(first, tp, xp))
    return out


def load_xquant_weights(model, tensors):
    """Copies the checkpoint's tensors into `model`; every mismatch is reported, then exit."""
    names = xquant_names(model)
    state = model.state_dict()
    errors = []
    for torch_name, value in state.items():
        if torch_name.endswith("num_batches_tracked"):
            continue
        xq = names.get(torch_name)
        if xq is None:
            errors.append(f"PyTorch tensor '{torch_name}' has no xquant counterpart")
        elif xq not in tensors:
            errors.append(f"'{xq}' (PyTorch '{torch_name}') is not in the checkpoint")
        elif tuple(tensors[xq].shape) != tuple(value.shape):
            errors.append(f"'{xq}': checkpoint has {list(tensors[xq].shape)}, "
                          f"PyTorch '{torch_name}' has {list(value.shape)}")
        else:
            state[torch_name] = tensors[xq]
    errors += [f"checkpoint tensor '{n}' has no PyTorch counterpart"
               for n in sorted(set(tensors) - set(names.values()))]
    if errors:
        fail("the checkpoint does not fit the model:\n  " + "\n  ".join(errors))
    model.load_state_dict(state)
    return len(names)


# ---- data -----------------------------------------------------------------------------

def read_idx(path):
    """A gzip'd IDX file of unsigned bytes as a uint8 tensor."""
    with gzip.open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 4 or blob[:3] != b"\x00\x00\x08":
        fail(f"'{path}' is not an unsigned-byte IDX file")
    dims = struct.unpack_from(f">{blob[3]}I", blob, 4)
    body = blob[4 + 4 * len(dims):]
    if len(body) != math.prod(dims):
        fail(f"'{path}': {len(body)} data bytes for shape {dims}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def fashion_mnist(split):
    """(images NCHW float32 normalised, labels int64) of 'train' or 't10k'."""
    pixels = read_idx(os.path.join(DATA_DIR, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA_DIR, f"{split}-labels-idx1-ubyte.gz"))
    lut = (torch.arange(256, dtype=torch.float32) / 255 - PIXEL_MEAN) / PIXEL_STD  # float32, as xquant
    return lut[pixels.long()].unsqueeze(1), labels.long()


@torch.no_grad()
def evaluate(model, x, y, batch=500):
    """(accuracy in %, mean cross-entropy) in evaluation mode."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch])
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
        loss += float(nn.functional.cross_entropy(logits, y[i:i + batch], reduction="sum"))
    return 100.0 * correct / len(x), loss / len(x)


def accuracy(model, x, y):
    return evaluate(model, x, y)[0]


# ---- PyTorch quantization -------------------------------------------------------------

def select_engine():
    for engine in ("onednn", "fbgemm"):
        if engine in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = engine
            return engine
    fail(f"neither onednn nor fbgemm in {torch.backends.quantized.supported_engines}")


def ptq(float_net, engine, weight_observer, calibration):
    """torch_int8_models.int8_model (fuse, stubs, min/max calibration, convert) with
    `weight_observer` in place of its per-channel one."""
    qconfig = torch_int8_models.min_max_qconfig()._replace(weight=weight_observer)
    return torch_int8_models.int8_model(float_net, engine, calibration, qconfig)


def qat_model(float_net, engine):
    """The QAT model: conv+BN(+ReLU) fused for training (torch_int8_models.fuse_conv_bn_runs
    with qat=True), stubs, the engine's default QAT qconfig, prepare_qat."""
    net = copy.deepcopy(float_net).train()
    torch_int8_models.fuse_conv_bn_runs(net, qat=True)
    model = nn.Sequential(tq.QuantStub(), net, tq.DeQuantStub()).train()
    model.qconfig = tq.get_default_qat_qconfig(engine)
    return tq.prepare_qat(model)


def freeze(model):
    model.apply(nniqat.freeze_bn_stats)
    model.apply(tq.disable_observer)


def train_qat(model, x, y, epochs, batch=128, lr=0.001, seed=0):
    """SGD momentum 0.9, no weight decay, lr cosine per step to 0; BN statistics and
    observers frozen for the last epoch (when there is more than one)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0)
    steps = (len(x) + batch - 1) // batch
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        if epoch == epochs - 1 and epochs > 1:
            freeze(model)
        model.train()
        order = torch.randperm(len(x), generator=gen)
        start, loss_sum, correct = time.perf_counter(), 0.0, 0
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            for group in opt.param_groups:
                group["lr"] = lr * (1 + math.cos(math.pi * (epoch * steps + s) / (epochs * steps))) / 2
            logits = model(x[idx])
            loss = loss_fn(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss) * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
        seconds = time.perf_counter() - start
        print(f"qat epoch {epoch + 1}/{epochs}  loss {loss_sum / len(x):.4f}  acc {100 * correct / len(x):.2f}%"
              f"  time {seconds:.1f}s  {len(x) / seconds:.0f} img/s", flush=True)
    freeze(model)  # evaluation must not move BN statistics or ranges (already so after >1 epoch)


# ---- main -----------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="xquant FP32 checkpoint (examples/train --out)")
    ap.add_argument("--model", choices=sorted(torch_models.MODELS),
                    help="reference model (default: the checkpoint's metadata)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-qat", action="store_true")
    ap.add_argument("--qat-epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="train QAT on the first N training images only")
    return ap.parse_args()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    tensors, meta = read_checkpoint(args.checkpoint)
    model_name = args.model or meta.get("model")
    if model_name not in torch_models.MODELS:
        fail("give --model (the checkpoint's metadata names no reference model)")
    if meta.get("model", model_name) != model_name or meta.get("recipe", "fp32") != "fp32":
        fail(f"the checkpoint holds {meta.get('model')!r} recipe {meta.get('recipe')!r}, not {model_name!r} fp32")
    print(f"{args.checkpoint}: {model_name}, {len(tensors)} tensors, metadata {json.dumps(meta)}")
    print(f"PyTorch {torch.__version__}, {args.threads} threads")

    fp32 = torch_models.MODELS[model_name]()
    print(f"loaded {load_xquant_weights(fp32, tensors)} tensors into torch_models.{model_name}() "
          "(num_batches_tracked left at 0)")
    net = torch_int8_models.FLOAT_MODELS[model_name]()
    net.load_state_dict(fp32.state_dict())
    net.eval()

    train_x, train_y = fashion_mnist("train")
    test_x, test_y = fashion_mnist("t10k")
    results = {}
    results["FP32"], loss = evaluate(fp32, test_x, test_y)
    print(f"fp32 test accuracy {results['FP32']:.2f} % (loss {loss:.4f})", flush=True)

    engine = select_engine()
    print(f"quantized engine: {engine}")
    calibration = train_x[:1000]
    observers = {"per-tensor": tq.MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric),
                 "per-channel": torch_int8_models.min_max_qconfig().weight}
    for kind, observer in observers.items():
        results[f"PTQ {kind}"] = accuracy(ptq(net, engine, observer, calibration), test_x, test_y)
        print(f"ptq int8 {kind} test accuracy {results[f'PTQ {kind}']:.2f} %", flush=True)

    if not args.skip_qat:
        model = qat_model(net, engine)
        n = args.limit or len(train_x)
        print(f"qat: {args.qat_epochs} epochs on {n} training images, qconfig {model.qconfig}", flush=True)
        train_qat(model, train_x[:n], train_y[:n], args.qat_epochs)
        results["QAT fake-quant"] = accuracy(model, test_x, test_y)
        print(f"qat fake-quant test accuracy {results['QAT fake-quant']:.2f} %", flush=True)
        results["QAT int8"] = accuracy(tq.convert(copy.deepcopy(model).eval()), test_x, test_y)
        print(f"qat int8 test accuracy {results['QAT int8']:.2f} %", flush=True)

    print(f"\n## PyTorch {torch.__version__} ({engine}) from xquant's FP32 weights: {model_name}"
          + (f", QAT on {args.limit} images, {args.qat_epochs} epochs" if args.limit else "") + "\n")
    print("| " + " | ".join(results) + " |")
    print("|" + "---|" * len(results))
    print("| " + " | ".join(f"{v:.2f} %" for v in results.values()) + " |")


if __name__ == "__main__":
    main()
