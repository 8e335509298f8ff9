#!/usr/bin/env bash
# Runs every test of the workspace. Installs nothing beyond the Rust
# toolchain's own components.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --release
