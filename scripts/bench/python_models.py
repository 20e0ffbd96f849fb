#!/usr/bin/env python3
"""PyTorch reference timings for `leukex bench` (same jobs, same sizes, 2 threads).

    .venv-fixtures/bin/python scripts/bench/python_models.py [--arch resnet18,...] [--runs 5]

Jobs, per network with 2 classes and random weights (speed does not depend on the values):
  forward            eval mode, batch 8 at 224x224, no autograd
  forward+backward   eval mode, batch 8, gradient of logit 1 (summed) with respect to the input
  train-step         train mode, batch 16: cross-entropy, backward, SGD(momentum 0.9,
                     weight_decay 1e-4) step on every parameter
  train-step-frozen  the same with only the head trained (backbone requires_grad False and its
                     BatchNorms in eval mode, as `leukex train --freeze-backbone`)
Median of RUNS timed runs after one warm-up, as leukex's bench.
Pinned environment: scripts/fixtures/requirements.txt (torch 2.15.0, torchvision 0.29.2,
efficientnet-lite-pytorch 0.1.0).
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torchvision
from efficientnet_lite_pytorch import EfficientNet

torch.set_num_threads(2)
torch.manual_seed(0)

ARCHS = ["resnet18", "resnet50", "vgg19", "googlenet", "efficientnet-lite0"]
HEADS = {"resnet18": "fc", "resnet50": "fc", "googlenet": "fc", "vgg19": "classifier.6",
         "efficientnet-lite0": "_fc"}


def make(arch):
    if arch == "googlenet":
        return torchvision.models.googlenet(weights=None, num_classes=2, aux_logits=False,
                                            init_weights=True)
    if arch == "efficientnet-lite0":
        return EfficientNet.from_name("efficientnet-lite0", num_classes=2)
    return getattr(torchvision.models, arch)(weights=None, num_classes=2)


def median_time(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def forward(arch, batch, size, runs):
    m = make(arch).eval()
    x = torch.rand(batch, 3, size, size) * 2 - 1

    def run():
        with torch.no_grad():
            m(x)
    return median_time(run, runs)


def forward_backward(arch, batch, size, runs):
    m = make(arch).eval()
    for p in m.parameters():
        p.requires_grad_(False)  # gradient to the input only, as leukex's explanations
    x = torch.rand(batch, 3, size, size) * 2 - 1

    def run():
        xa = x.clone().requires_grad_(True)
        m(xa)[:, 1].sum().backward()
        xa.grad.sum().item()
    return median_time(run, runs)


def train_step(arch, batch, size, runs, frozen):
    m = make(arch).train()
    head = HEADS[arch]
    if frozen:
        for name, p in m.named_parameters():
            p.requires_grad_(name.startswith(head + "."))
        for name, mod in m.named_modules():
            if not name.startswith(head):
                if isinstance(mod, (nn.BatchNorm2d, nn.Dropout)):
                    mod.eval()
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    y = torch.tensor([i % 2 for i in range(batch)])

    def run():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        loss.item()
    return median_time(run, runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="all")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--train-batch", type=int, default=16)
    a = ap.parse_args()
    archs = ARCHS if a.arch == "all" else a.arch.split(",")
    print("| network | job | batch | size | s / batch | images / s |")
    print("|---|---|---:|---:|---:|---:|")
    for arch in archs:
        jobs = [
            ("forward", a.batch, lambda: forward(arch, a.batch, a.size, a.runs)),
            ("forward+backward", a.batch, lambda: forward_backward(arch, a.batch, a.size, a.runs)),
            ("train-step", a.train_batch,
             lambda: train_step(arch, a.train_batch, a.size, a.runs, False)),
            ("train-step-frozen", a.train_batch,
             lambda: train_step(arch, a.train_batch, a.size, a.runs, True)),
        ]
        for job, batch, fn in jobs:
            s = fn()
            print(f"| {arch} | {job} | {batch} | {a.size} | {s:.3f} | {batch / s:.1f} |", flush=True)
    print(f"(torch {torch.__version__}, {torch.get_num_threads()} threads, median of {a.runs} runs "
          "after one warm-up)")


if __name__ == "__main__":
    main()
