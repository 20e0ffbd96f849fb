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

`--single`: instead, each method on its own, `leukex explain --method M` (whole process) against
its reference (`python_explain.py --resnet18`, in-process medians as above), every round running
all of leukex's single-method commands and then the references, so each pair shares the minutes.
The issue's goal: every LRP composite and CAM no slower than its reference, the gradient methods
within the models' forward + backward goal (1.3x the reference's time).

`--single --gradients`: only the two gradient methods against Captum (`python_explain.py
--gradients`), short rounds, so that more of them fit in a quiet stretch of the machine.
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
    ap.add_argument("--single", action="store_true")
    ap.add_argument("--gradients", action="store_true",
                    help="with --single: only gradient and input-x-gradient")
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
    if a.single:
        single(a, base, env, tmp)
        return
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


# leukex method -> the row of `python_explain.py --resnet18` that is its reference.
SINGLE = {
    "lrp-epsilon": "resnet18 lrp-epsilon (Zennit)",
    "lrp-epsilon-plus": "resnet18 lrp-epsilon-plus (Zennit)",
    "lrp-epsilon-plus-flat": "resnet18 lrp-epsilon-plus-flat (Zennit)",
    "lrp-epsilon-gamma-box": "resnet18 lrp-epsilon-gamma-box (Zennit)",
    "lrp-epsilon-alpha2-beta1": "resnet18 lrp-epsilon-alpha2-beta1 (Zennit)",
    "grad-cam": "resnet18 grad-cam (pytorch-grad-cam)",
    "grad-cam++": "resnet18 grad-cam++ (pytorch-grad-cam)",
    "hires-cam": "resnet18 hires-cam (pytorch-grad-cam)",
    "xgrad-cam": "resnet18 xgrad-cam (pytorch-grad-cam)",
    "layer-cam": "resnet18 layer-cam (pytorch-grad-cam)",
    "gradient": "resnet18 gradient (Captum Saliency)",
    "input-x-gradient": "resnet18 input-x-gradient (Captum)",
}


def single(a, base, env, tmp):
    methods = {m: row for m, row in SINGLE.items()
               if not a.gradients or m in ("gradient", "input-x-gradient")}
    reference_job = "--gradients" if a.gradients else "--resnet18"
    ours = {m: [] for m in methods}
    refs = {m: [] for m in methods}
    for r in range(a.rounds):
        for m in methods:
            cmd = base + ["--out", os.path.join(tmp, m), "--method", m]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            ours[m].append(time.perf_counter() - t)
        out = subprocess.run([sys.executable, os.path.join(HERE, "python_explain.py"),
                              reference_job], check=True, capture_output=True, text=True).stdout
        for m, row in methods.items():
            refs[m].append(float(re.search(re.escape(row) + r"\s+([0-9.]+) s", out).group(1)))
        for m in methods:
            print(f"round {r + 1}: {m:<26} leukex {ours[m][-1]:.3f} s, "
                  f"reference {refs[m][-1]:.3f} s", flush=True)
    print()
    for m in methods:
        o, p = statistics.median(ours[m]), statistics.median(refs[m])
        print(f"{m:<26} leukex median {o:.3f} s (runs {', '.join(f'{t:.3f}' for t in ours[m])}); "
              f"reference {p:.3f} s; leukex time / reference time {o / p:.2f}")


if __name__ == "__main__":
    main()
