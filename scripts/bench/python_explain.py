#!/usr/bin/env python3
"""Reference timings for the explanation benchmark (crates/explain/benches/methods.rs).

Same job as the Rust benchmark: ResNet18 (and ResNet50 for Grad-CAM), batch 8 at
224x224, 2 threads, random weights (speed does not depend on the values), target class
i % 2 for image i.  Prints the median of 7 runs after 2 warm-ups per method:

    .venv-fixtures/bin/python scripts/bench/python_explain.py
    .venv-fixtures/bin/python scripts/bench/python_explain.py --score-cam

`--resnet18`: every ResNet18 row, without ResNet50's Grad-CAM (what
scripts/bench/explain_command.py --single compares with single-method `leukex explain` runs).

`--gradients`: only the two Captum rows (gradient, input-x-gradient), for
scripts/bench/explain_command.py --single --gradients.

`--paper-four`: only the four references of the paper's methods (Zennit LRP-epsilon and
EpsilonPlus, Captum InputXGradient, pytorch-grad-cam GradCAM on ResNet18) and their sum, as
scripts/bench/explain_command.py compares them with the whole `leukex explain` process.

`--score-cam` (opt-in, minutes): only pytorch-grad-cam's ScoreCAM on ResNet18 layer4[-1],
with its default batch of 16 masked inputs (8 images x 512 channels = 4096 forward passes),
timed by one run without warm-up, as the Rust benchmark times it.

Pinned environment: scripts/fixtures/requirements.txt (torch 2.15.0, captum 0.9.0,
zennit 1.0.0, grad-cam 1.5.7).
"""
import statistics
import sys
import time

import torch
import torchvision
from captum.attr import InputXGradient, Saliency
from pytorch_grad_cam import (GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM,
                              XGradCAM)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from zennit.attribution import Gradient
from zennit.composites import (EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat,
                               LayerMapComposite, layer_map_base)
from zennit.rules import Epsilon
from zennit.types import Convolution, Linear
from zennit.torchvision import ResNetCanonizer

torch.set_num_threads(2)
torch.manual_seed(0)
N, S = 8, 224
x = torch.randn(N, 3, S, S)
targets = [i % 2 for i in range(N)]


def model(depth):
    m = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=2)
    return m.eval()


def median_time(fn, runs=7, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def zennit(m, composite):
    def run():
        onehot = torch.eye(2)[targets]
        with Gradient(model=m, composite=composite) as attributor:
            _, rel = attributor(x, onehot)
        return rel.sum()
    return run


def score_cam():
    m18 = model(18)
    cam_targets = [ClassifierOutputTarget(t) for t in targets]
    t = time.perf_counter()
    with ScoreCAM(model=m18, target_layers=[m18.layer4[-1]]) as cam:
        out = cam(input_tensor=x, targets=cam_targets)
    dt = time.perf_counter() - t
    print(f"{'resnet18 score-cam (pytorch-grad-cam, one run)':<45} {dt:.3f} s "
          f"(checksum {float(out.sum()):.3f})")
    print("torch", torch.__version__, "threads", torch.get_num_threads())


def main():
    if sys.argv[1:] == ["--score-cam"]:
        score_cam()
        return
    paper_four = sys.argv[1:] == ["--paper-four"]
    resnet18_only = sys.argv[1:] == ["--resnet18"]
    gradients_only = sys.argv[1:] == ["--gradients"]
    m18 = model(18)
    results = {}
    if paper_four:
        paper_four_references(m18)
        return
    results["resnet18 gradient (Captum Saliency)"] = median_time(
        lambda: Saliency(m18).attribute(x, target=targets, abs=False).sum())
    results["resnet18 input-x-gradient (Captum)"] = median_time(
        lambda: InputXGradient(m18).attribute(x, target=targets).sum())
    if gradients_only:
        print_results(results)
        return
    cam_targets = [ClassifierOutputTarget(t) for t in targets]

    def gradcam(m, layer, kind=GradCAM):
        def run():
            with kind(model=m, target_layers=[layer]) as cam:
                return cam(input_tensor=x, targets=cam_targets).sum()
        return run

    results["resnet18 grad-cam (pytorch-grad-cam)"] = median_time(gradcam(m18, m18.layer4[-1]))
    for name, kind in [("grad-cam++", GradCAMPlusPlus), ("hires-cam", HiResCAM),
                       ("xgrad-cam", XGradCAM), ("layer-cam", LayerCAM)]:
        results[f"resnet18 {name} (pytorch-grad-cam)"] = median_time(
            gradcam(m18, m18.layer4[-1], kind))
    low = torch.tensor([-2.1179, -2.0357, -1.8044]).view(1, 3, 1, 1)
    high = torch.tensor([2.2489, 2.4286, 2.64]).view(1, 3, 1, 1)
    results["resnet18 lrp-epsilon-plus-flat (Zennit)"] = median_time(
        zennit(m18, EpsilonPlusFlat(canonizers=[ResNetCanonizer()])))
    results["resnet18 lrp-epsilon-gamma-box (Zennit)"] = median_time(
        zennit(m18, EpsilonGammaBox(low=low, high=high, canonizers=[ResNetCanonizer()])))
    results["resnet18 lrp-epsilon-alpha2-beta1 (Zennit)"] = median_time(
        zennit(m18, EpsilonAlpha2Beta1(canonizers=[ResNetCanonizer()])))
    # Stand-ins for the paper's four methods (LRP, Deep Taylor, Input x Gradient, Grad-CAM):
    # LRP-epsilon on every layer and Zennit's EpsilonPlus (z+ convolutions, as Deep Taylor).
    eps_all = LayerMapComposite(layer_map=layer_map_base() + [(Convolution, Epsilon(1e-6)),
                                                               (Linear, Epsilon(1e-6))],
                                canonizers=[ResNetCanonizer()])
    results["resnet18 lrp-epsilon (Zennit)"] = median_time(zennit(m18, eps_all))
    results["resnet18 lrp-epsilon-plus (Zennit)"] = median_time(
        zennit(m18, EpsilonPlus(canonizers=[ResNetCanonizer()])))
    if not resnet18_only:
        m50 = model(50)
        results["resnet50 grad-cam (pytorch-grad-cam)"] = median_time(gradcam(m50, m50.layer4[-1]))
    print_results(results)


def print_results(results):
    for k, v in results.items():
        print(f"{k:<45} {v:.3f} s")
    print("torch", torch.__version__, "threads", torch.get_num_threads())


def paper_four_references(m18):
    eps_all = LayerMapComposite(layer_map=layer_map_base() + [(Convolution, Epsilon(1e-6)),
                                                               (Linear, Epsilon(1e-6))],
                                canonizers=[ResNetCanonizer()])
    cam_targets = [ClassifierOutputTarget(t) for t in targets]

    def gradcam():
        with GradCAM(model=m18, target_layers=[m18.layer4[-1]]) as cam:
            return cam(input_tensor=x, targets=cam_targets).sum()

    results = {
        "resnet18 lrp-epsilon (Zennit)": median_time(zennit(m18, eps_all)),
        "resnet18 lrp-epsilon-plus (Zennit)": median_time(
            zennit(m18, EpsilonPlus(canonizers=[ResNetCanonizer()]))),
        "resnet18 input-x-gradient (Captum)": median_time(
            lambda: InputXGradient(m18).attribute(x, target=targets).sum()),
        "resnet18 grad-cam (pytorch-grad-cam)": median_time(gradcam),
    }
    for k, v in results.items():
        print(f"{k:<45} {v:.3f} s")
    print(f"{'sum of the four':<45} {sum(results.values()):.3f} s")
    print("torch", torch.__version__, "threads", torch.get_num_threads())


if __name__ == "__main__":
    main()
