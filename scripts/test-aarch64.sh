#!/usr/bin/env bash
# Cross-builds kiln-runtime for aarch64 (std and no_std) and runs its tests
# under qemu-user, so that the NEON kernel variant is exercised on an x86-64
# machine. The linker and runner come from .cargo/config.toml.
#
# Needs the Rust target `aarch64-unknown-linux-gnu` (rustup target add
# aarch64-unknown-linux-gnu) and, on Debian or Ubuntu,
#   apt-get install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
# Without them it prints what is missing and exits 0 with "skipped".
#
# Extra arguments go to the test binaries (e.g. a test-name filter).
# PROPTEST_CASES and KILN_KERNELS pass through: the suites that iterate
# over `variants()` run NEON and portable either way, and
# KILN_KERNELS=portable makes portable the default for the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
missing=()
libdir=$(rustc --print target-libdir --target "$target" 2>/dev/null || true)
if [ -z "$libdir" ] || ! compgen -G "$libdir/libstd-*" >/dev/null; then
    missing+=("the Rust target $target's std (rustup target add $target)")
fi
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=("qemu-aarch64 (package qemu-user)")
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=("aarch64-linux-gnu-gcc (package gcc-aarch64-linux-gnu)")
[ -d /usr/aarch64-linux-gnu/lib ] || missing+=("the aarch64 C library (package libc6-dev-arm64-cross)")
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-aarch64: skipped; missing:"
    printf '  - %s\n' "${missing[@]}"
    exit 0
fi

# One test re-executes its own binary as a child process and kills it. Under
# qemu-user that exec fails (the host kernel cannot run an aarch64 binary)
# unless binfmt_misc is set up to hand aarch64 binaries to qemu; without it
# the test is skipped here, and it runs in the native test suite.
skip=()
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    echo "test-aarch64: no binfmt_misc entry for aarch64; skipping the test that re-executes itself"
    skip=(--skip killed_during_save_leaves_old_checkpoint_loadable)
fi

set -x
cargo build -p kiln-runtime --target "$target" --release
cargo build -p kiln-runtime --target "$target" --release --no-default-features
cargo test -p kiln-runtime --target "$target" --release -- "${skip[@]}" "$@"
