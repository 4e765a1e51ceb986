"""PyTorch side of the training-throughput benchmark (benchmark-only; needs python3-torch).

Trains one reference model for a number of images with the reference recipe's optimizer
(SGD momentum 0.9, weight decay 5e-4, batch 128) on random Fashion-MNIST-shaped data and
prints one JSON line: {"framework": "pytorch", "model": ..., "threads": ..., "images_per_s": ...}.
Data loading is excluded on both sides: the batches are prepared before timing.
"""
import argparse
import json
import time

import torch

from torch_models import MODELS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--images", type=int, default=60000)
    ap.add_argument("--warmup-steps", type=int, default=3)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    model = MODELS[args.model]().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = max(1, args.images // args.batch)
    x = torch.randn(8, args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (8, args.batch))

    def step(i):
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x[i % 8]), y[i % 8])
        loss.backward()
        opt.step()

    for i in range(args.warmup_steps):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    seconds = time.perf_counter() - start
    print(json.dumps({"framework": "pytorch", "version": torch.__version__, "model": args.model,
                      "threads": args.threads, "batch": args.batch, "images": steps * args.batch,
                      "seconds": seconds, "images_per_s": steps * args.batch / seconds}))


if __name__ == "__main__":
    main()
