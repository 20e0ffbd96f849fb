#!/usr/bin/env bash
# Trains one architecture from random init on the built-in synthetic ALL-IDB2 at a demo
# resolution and prints its test metrics and time: the numbers in docs/benchmarks.md.
# Usage: scripts/bench/train_demo.sh ARCH EPOCHS LR [extra leukex train flags]
# Env: DATA (default /tmp/leukex-synth), RUNS (default /tmp/leukex-runs), SIZE (96),
#      PER_CLASS (500), BATCH (16).
set -euo pipefail
arch=$1 epochs=$2 lr=$3
shift 3
data=${DATA:-/tmp/leukex-synth}
runs=${RUNS:-/tmp/leukex-runs}
leukex=${LEUKEX:-target/release/leukex}
[ -x "$leukex" ] || cargo build --release
[ -d "$data" ] || "$leukex" synth --out "$data" >/dev/null
out="$runs/$arch"
rm -rf "$out"
start=$(date +%s)
"$leukex" train "$data" --arch "$arch" --weights none --out "$out" \
    --size "${SIZE:-96}" --augment-per-class "${PER_CLASS:-500}" --batch-size "${BATCH:-16}" \
    --optimizer adam --lr "$lr" --schedule cosine --epochs "$epochs" --balanced "$@"
echo "$arch: $(( $(date +%s) - start )) s wall, $(nproc) threads, $(uname -m)"
