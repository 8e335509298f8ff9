#!/usr/bin/env bash
# The main job: until training lands, summarize every model of the zoo.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kiln-compiler --bin kilnc
for f in models/*.yaml; do
  target/release/kilnc summary "$f"
done
