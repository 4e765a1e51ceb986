#!/usr/bin/env python3
"""Int8 inference speed, xquant vs PyTorch 1.13, side by side in one run.

For each reference model, runs the xquant program (int8_throughput: int8 runtime and FP32
eval forward of the same network) and the PyTorch side (this script with --torch-worker:
eager-mode int8 models of torch_int8_models.py on the 'onednn' and 'qnnpack' quantized
engines, and the FP32 model) alternately, --repeats times each. Every run measures, after
warm-up, batch 1 latency (median of single-image calls, ms per image) and batch B
throughput (median of B-image calls, images/s), both as wall-clock and as process CPU time
(on the shared, loaded machine a call of several ms is often preempted: wall time then
measures the load, CPU time the work). One thread on both sides. Printed per model and
batch: the medians, and the medians of the per-pair ratios with their [min, max] over the
repeats as the noise:
  - xquant int8 / xquant FP32 (same process), target >= 3x (cnn, resnet), >= 2x (mobilenet)
    at batch B;
  - xquant int8 / PyTorch int8 per engine (neighbouring processes), target >= 1.5x.
Random weights and BatchNorm statistics on both sides: the timing does not depend on them.

PyTorch (Debian's python3-torch) is used only here; without it the script prints xquant's
figures alone.

  benchmarks/int8_throughput.py --binary build/bench/benchmarks/int8_throughput \\
      [--models cnn,mobilenet,resnet] [--batch 256] [--repeats 5] [--engines onednn,qnnpack]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_INT8_VS_FP32 = {"cnn": 3.0, "mobilenet": 2.0, "resnet": 3.0}
TARGET_VS_TORCH = 1.5


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def have_torch(python):
    return subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0


# --- the PyTorch side (runs in its own process, like the xquant program) -----------------

def timed(f):
    wall, cpu = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - wall, time.process_time() - cpu


def alternate(calls, warmup, count):
    """Times every (name, engine, call) of `calls` in turn, warmup untimed rounds then count
    timed ones; returns {name: (median wall s, median CPU s)}."""
    import torch
    times = {name: ([], []) for name, _, _ in calls}
    for i in range(warmup + count):
        for name, engine, call in calls:
            if engine is not None:
                torch.backends.quantized.engine = engine  # ops outside the prepacked convs follow it
            wall, cpu = timed(call)
            if i >= warmup:
                times[name][0].append(wall)
                times[name][1].append(cpu)
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in times.items()}


def torch_worker(args):
    import torch
    sys.path.insert(0, HERE)
    import torch_int8_models as tim
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    gen = torch.Generator().manual_seed(0)
    fp32 = tim.float_model(args.model)
    calibration = tim.random_images(args.batch, gen)
    many, one = tim.random_images(args.batch, gen), tim.random_images(1, gen)
    models, result = {}, {"framework": "pytorch", "version": torch.__version__, "model": args.model,
                          "threads": 1, "batch": args.batch}
    with torch.inference_mode():
        reference = fp32(many).argmax(1)
        for engine in args.engines.split(","):
            try:
                m = tim.int8_model(fp32, engine, calibration)
                result[engine + "_top1_agreement"] = (m(many).argmax(1) == reference).float().mean().item()
                models[engine] = m
            except Exception as e:  # an engine this build lacks: report, time the others
                result[engine + "_error"] = repr(e)[:200]

        def calls(x):
            out = [(e, e, (lambda m=m: m(x))) for e, m in models.items()]
            return out + [("fp32", None, lambda: fp32(x))]

        big = alternate(calls(many), args.warmup, args.calls)
        small = alternate(calls(one), max(args.warmup, 10), args.latency_calls)
    for name in big:
        result[name + "_images_per_s"] = args.batch / big[name][0]
        result[name + "_images_per_cpu_s"] = args.batch / big[name][1]
        result[name + "_batch1_ms"] = 1e3 * small[name][0]
        result[name + "_batch1_cpu_ms"] = 1e3 * small[name][1]
    print(json.dumps(result))


# --- the driver -----------------------------------------------------------------------

def fmt_ratio(values):
    if not values:
        return "-"
    return "%.2fx [%.2f, %.2f]" % (statistics.median(values), min(values), max(values))


def fmt_value(x, unit):
    return ("%.4f ms" % x) if unit == "ms" else ("%.0f img/s" % x)


def report(model, batch, ours, theirs, engines, clock):
    """Prints the two rows (batch 1, batch B) of one model for one clock ('' = wall, 'cpu')."""
    lat = "int8_batch1_%sms" % (clock + "_" if clock else "")
    ips = "int8_images_per_%ss" % (clock + "_" if clock else "")
    flat = lat.replace("int8_", "fp32_"), ips.replace("int8_", "fp32_")
    rows = []
    for b, key, fkey, unit in ((1, lat, flat[0], "ms"), (batch, ips, flat[1], "img/s")):
        faster = (lambda a, c: c / a) if unit == "ms" else (lambda a, c: a / c)  # > 1: xquant faster
        med = lambda rs, k: statistics.median(r[k] for r in rs)
        cells = [model, str(b), fmt_value(med(ours, key), unit), fmt_value(med(ours, fkey), unit)]
        cells.append(fmt_ratio([faster(r[key], r[fkey]) for r in ours]))
        for e in engines:
            tk = key.replace("int8", e)
            pairs = [(o, t) for o, t in zip(ours, theirs) if tk in t]
            cells.append(fmt_value(med([t for _, t in pairs], tk), unit) if pairs else "-")
            cells.append(fmt_ratio([faster(o[key], t[tk]) for o, t in pairs]))
        if theirs:
            cells.append(fmt_value(med(theirs, key.replace("int8", "fp32")), unit))
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", help="the xquant int8_throughput program")
    ap.add_argument("--models", default="cnn,mobilenet,resnet")
    ap.add_argument("--model", default="cnn", help="(--torch-worker) the model to time")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5, help="xquant/PyTorch process pairs per model")
    ap.add_argument("--calls", type=int, default=10, help="timed batch-B calls per process")
    ap.add_argument("--latency-calls", type=int, default=200, help="timed single-image calls per process")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--engines", default="onednn,qnnpack")
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        torch_worker(args)
        return
    if not args.binary:
        ap.error("--binary is required")
    torch_ok = have_torch(args.python)
    if not torch_ok:
        print("PyTorch not importable by %s: xquant figures only" % args.python, file=sys.stderr)
    engines = args.engines.split(",") if torch_ok else []
    timing = ["--batch", str(args.batch), "--warmup", str(args.warmup), "--latency-calls", str(args.latency_calls)]
    results = {}
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    for model in args.models.split(","):
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(run([args.binary, "--model", model, "--threads", "1", "--repeats", str(args.calls)] + timing))
            if torch_ok:
                theirs.append(run([args.python, os.path.abspath(__file__), "--torch-worker", "--model", model,
                                   "--calls", str(args.calls), "--engines", args.engines] + timing))
        results[model] = (ours, theirs)
        for t in theirs[:1]:
            for e in engines:
                if e + "_error" in t:
                    print("note: %s %s failed: %s" % (model, e, t[e + "_error"]), file=sys.stderr)
                elif t.get(e + "_top1_agreement", 1.0) < 0.5:
                    print("note: %s on %s: PyTorch int8 agrees with FP32 on only %.0f %% of top-1 classes "
                          "(wrong results; timing shown anyway)" % (model, e, 100 * t[e + "_top1_agreement"]),
                          file=sys.stderr)
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    head = ["model", "batch", "xquant int8", "xquant FP32", "int8 / FP32"]
    for e in engines:
        head += ["PyTorch int8 %s" % e, "xquant / %s" % e]
    if torch_ok:
        head.append("PyTorch FP32")
    for clock, title in (("", "wall clock"), ("cpu", "process CPU time")):
        print("\n%s (medians over %d process pairs; ratios: median [min, max], > 1 = xquant int8 faster)"
              % (title, args.repeats))
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for model, (ours, theirs) in results.items():
            for row in report(model, args.batch, ours, theirs, engines, clock):
                print(row)
    print("\ntargets: int8 / FP32 at batch %d >= %s; xquant / PyTorch int8 >= %.1fx"
          % (args.batch, ", ".join("%s %.0fx" % kv for kv in TARGET_INT8_VS_FP32.items()), TARGET_VS_TORCH))


if __name__ == "__main__":
    main()
