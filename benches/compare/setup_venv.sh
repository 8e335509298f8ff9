#!/usr/bin/env bash
# Creates target/compare-venv with the peers of the comparison: the packages
# of requirements.txt, then torch with --no-deps plus the dependencies its
# metadata names for this platform, leaving out triton (which a CPU-only
# run does not need).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/compare-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q -r "$root/benches/compare/requirements.txt"
if ! "$py" -c 'import torch' 2>/dev/null; then
    "$py" -m pip install -q --no-deps torch
    deps="$("$py" - <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement
out = []
for spec in requires("torch") or []:
    r = Requirement(spec)
    if r.marker is not None and not r.marker.evaluate({"extra": ""}):
        continue
    if r.name.lower() in ("triton",):
        continue
    out.append(str(r).split(";")[0].strip())
print(" ".join(repr(s) for s in out))
PY
)"
    eval "\"$py\" -m pip install -q $deps"
fi
"$py" -c 'import torch, onnxruntime, jax; print("torch", torch.__version__, "ort", onnxruntime.__version__, "jax", jax.__version__)'
