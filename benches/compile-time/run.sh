#!/usr/bin/env bash
# Release build times of a crate that uses `kiln::network!` for LeNet-5 and
# for ResNet-50: from clean (of this crate only: its dependencies, kiln
# included, are built first and not counted) and after a one-line change to
# the model file (the first convolution's channel count). Prints one line per
# case, wall and CPU seconds (the machine is shared, so CPU time is the
# steadier figure); the dependencies come from the workspace's target directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
trap 'cp "$root/models/lenet5.yaml" "$root/models/resnet50.yaml" "$here/models/"' EXIT
cp "$root/Cargo.lock" Cargo.lock
export CARGO_TARGET_DIR="$root/target"
cargo build --release --quiet          # dependencies, not counted
# Wall seconds and CPU seconds (user + system, of every process) of a command.
secs() { local TIMEFORMAT='%R wall, %U+%S cpu'; { time "$@" >/dev/null 2>&1; } 2>&1; }
for bin in lenet5 resnet50; do
    model="models/$bin.yaml"
    cp "$root/models/$bin.yaml" "$model"
    cargo clean --release -p kiln-compile-time --quiet
    clean=$(secs cargo build --release --bin "$bin")
    # The one-line change: two more output channels in the first convolution.
    first=$(grep -n 'conv2d: {out: [0-9]*' "$model" | grep -v ': c' | head -1 | cut -d: -f1)
    perl -pi -e "s/out: (\d+)/'out: '.(\$1 + 2)/e if \$. == $first" "$model"
    changed=$(secs cargo build --release --bin "$bin")
    cp "$root/models/$bin.yaml" "$model"
    echo "$bin: clean: $clean; after a one-line model change: $changed (seconds)"
done
