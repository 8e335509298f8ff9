#!/usr/bin/env bash
# The main job: trains LeNet-5 (models/lenet5.yaml, compiled by network!)
# on the real MNIST committed in data/mnist, and writes the compiled
# model's checkpoint, metrics CSV and plots under runs/lenet_mnist/.
# Needs only a Rust toolchain. Arguments go to the example:
#   scripts/main.sh [EPOCHS] [TRAIN_SUBSET]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --example lenet_mnist -- "$@"
