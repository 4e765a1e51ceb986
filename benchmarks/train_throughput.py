#!/usr/bin/env python3
"""Training throughput, xquant vs PyTorch 1.13, side by side in one run.

For each reference model and thread count, runs the xquant program (train_throughput)
and the PyTorch script (torch_train.py) alternately, --repeats times each, on the same
batch size and number of images, and prints the median images/s of each and the median of
the per-pair ratios. PyTorch (Debian's python3-torch) is used only here; without it the
script prints xquant's figures alone.

With --qat BUNDLE (w8a8, w4a8, w4a4) the peer is xquant's own QAT form of the model
(fake-quant weights and activations, clipped STE, observers running) instead of PyTorch,
and the last column is the QAT epoch time over the FP32 epoch time.

  benchmarks/train_throughput.py --binary build/bench/benchmarks/train_throughput \
      [--models cnn,mobilenet,resnet] [--threads 1,2] [--images 60000] [--repeats 3] [--qat w8a8]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def have_torch(python):
    return subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--models", default="cnn,mobilenet,resnet")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--images", type=int, default=60000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--qat", default="", help="compare FP32 with this QAT bundle of xquant instead of PyTorch")
    args = ap.parse_args()
    if args.qat:
        peer_ok = True
        print("| model | threads | FP32 img/s | QAT %s img/s | QAT time / FP32 time |" % args.qat)
    else:
        peer_ok = have_torch(args.python)
        if not peer_ok:
            print("PyTorch not importable by %s: xquant figures only" % args.python, file=sys.stderr)
        print("| model | threads | xquant img/s | PyTorch img/s | xquant / PyTorch |")
    print("|---|---|---|---|---|")
    for model in args.models.split(","):
        for threads in [int(t) for t in args.threads.split(",")]:
            common = ["--model", model, "--threads", str(threads), "--batch", str(args.batch),
                      "--images", str(args.images)]
            ours, theirs, ratios = [], [], []
            for _ in range(args.repeats):
                a = run([args.binary] + common)["images_per_s"]
                ours.append(a)
                if peer_ok:
                    peer = ([args.binary] + common + ["--bundle", args.qat] if args.qat
                            else [args.python, os.path.join(HERE, "torch_train.py")] + common)
                    b = run(peer)["images_per_s"]
                    theirs.append(b)
                    ratios.append(a / b)  # QAT: FP32 rate / QAT rate = QAT time / FP32 time
            row = [model, str(threads), "%.0f" % statistics.median(ours)]
            row += (["%.0f" % statistics.median(theirs), "%.2fx" % statistics.median(ratios)]
                    if peer_ok else ["-", "-"])
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
