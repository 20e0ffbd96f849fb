#!/usr/bin/env python3
"""The whole `leukex explain` process against the four Python references of the paper's
methods, alternating in the same minutes (docs/benchmarks.md, "The command, end to end").

Job: ResNet18 (2 classes, random weights: speed does not depend on the values), 8 images
224x224 from one float32 .npy, 2 threads, `--no-png`. Each round runs, one after the other:

1. `leukex explain --method lrp-epsilon,lrp-epsilon-plus,input-x-gradient,grad-cam`
   (whole process, wall clock: start, weights, input, targets, maps, .npy files, explain.json);
2. `leukex explain --paper` (lrp-epsilon, deep-taylor, input-x-gradient, grad-cam with the
   paper tools' conventions);
3. `scripts/bench/python_explain.py --paper-four` (Zennit LRP-epsilon and EpsilonPlus,
   Captum InputXGradient, pytorch-grad-cam GradCAM; each the median of 7 in-process runs
   after 2 warm-ups: a strict reference, since it excludes Python's start and model setup).

Prints every run and the medians:

    /work/venv-fixtures/bin/python scripts/bench/explain_command.py \\
        --leukex target/release/leukex --rounds 3
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--leukex", default="target/release/leukex")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="leukex-explain-bench-")
    torch.manual_seed(0)
    m = torchvision.models.resnet18(weights=None, num_classes=2).eval()
    weights = os.path.join(tmp, "r18.pth")
    torch.save(m.state_dict(), weights)
    x = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)
    inp = os.path.join(tmp, "x.npy")
    np.save(inp, x)
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    base = [a.leukex, "explain", "--arch", "resnet18", "--weights", weights,
            "--input", inp, "--no-png"]
    jobs = {
        "leukex explain, the four": base + ["--out", os.path.join(tmp, "four"), "--method",
                                            "lrp-epsilon,lrp-epsilon-plus,input-x-gradient,grad-cam"],
        "leukex explain --paper": base + ["--out", os.path.join(tmp, "paper"), "--paper"],
    }
    times = {k: [] for k in jobs}
    times["python references, sum of the four"] = []
    for r in range(a.rounds):
        for name, cmd in jobs.items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            dt = time.perf_counter() - t
            times[name].append(dt)
            print(f"round {r + 1}: {name:<36} {dt:.3f} s", flush=True)
        out = subprocess.run([sys.executable, os.path.join(HERE, "python_explain.py"),
                              "--paper-four"], check=True, capture_output=True, text=True).stdout
        total = float(re.search(r"sum of the four\s+([0-9.]+) s", out).group(1))
        times["python references, sum of the four"].append(total)
        parts = ", ".join(f"{v}" for v in re.findall(r"\) +([0-9.]+) s", out))
        print(f"round {r + 1}: {'python references, sum of the four':<36} {total:.3f} s "
              f"({parts})", flush=True)
    print()
    ref = statistics.median(times["python references, sum of the four"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<36} median {med:.3f} s (runs {', '.join(f'{t:.3f}' for t in ts)}; "
              f"{ref / med:.2f}x the references' speed)")


if __name__ == "__main__":
    main()
