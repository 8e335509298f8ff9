#!/usr/bin/env bash
# The side-by-side comparison of kiln with PyTorch (eager and torch.compile),
# ONNX Runtime and JAX on the same models, weights and inputs. Creates the
# venv (target/compare-venv), builds the kiln side (examples/compare_kiln.rs),
# then, for ROUNDS rounds, runs each workload on kiln and right after on the
# peers (interleaved), and ends with the table and target/kiln-bench/compare.json.
#
# Usage: benches/compare/run.sh  (env: ROUNDS=2, WARMUP=3, RUNS=30; ResNet
# workloads use a tenth of RUNS, at least 5, and the ResNet training steps a
# thirtieth, at least 3; ONLY=KEY[,KEY...] runs only those workloads, e.g.
# ONLY=resnet18_cifar_train_b32).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
rounds="${ROUNDS:-2}"
warmup="${WARMUP:-3}"
runs="${RUNS:-30}"
dir="$root/target/compare"
out="$root/target/kiln-bench"
mkdir -p "$dir" "$out"
bash benches/compare/setup_venv.sh
py="$root/target/compare-venv/bin/python"
cargo build --release --example compare_kiln
kiln="$root/target/release/examples/compare_kiln"
results="$dir/results.jsonl"
: > "$results"

# One workload: KEY (the name in compare.json), the example's WORKLOAD,
# THREADS and RUNS.
one() {
    local key="$1" workload="$2" threads="$3" n="$4"
    if [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",$key,"* ]]; then
        return
    fi
    "$kiln" "$dir" "$workload" "$threads" "$warmup" "$n" > "$dir/$workload.json"
    "$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); d.update(side="kiln", key=sys.argv[2]); print(json.dumps(d))' \
        "$dir/$workload.json" "$key" >> "$results"
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=$([ "$threads" = 1 ] && echo false || echo true) intra_op_parallelism_threads=$threads" \
        "$py" benches/compare/peers.py "$dir" "$workload" "$threads" "$warmup" "$n" 2>> "$dir/peers.log" |
        "$py" -c 'import json,sys; d=json.loads(sys.stdin.read()); d.update(side="peers", key=sys.argv[1]); print(json.dumps(d))' "$key" >> "$results"
    echo "done: $key (round $round)"
}

rn=$(( runs / 10 > 5 ? runs / 10 : 5 ))
rt=$(( runs / 30 > 3 ? runs / 30 : 3 ))
for round in $(seq 1 "$rounds"); do
    one lenet_infer_b1 lenet_infer_b1 1 "$runs"
    one lenet_infer_b256 lenet_infer_b256 1 "$runs"
    one lenet_train_b64 lenet_train_b64 1 "$runs"
    one resnet18_infer_b1_t1 resnet18_infer_b1 1 "$rn"
    one resnet18_infer_b1_t2 resnet18_infer_b1 2 "$rn"
    one resnet18_cifar_train_b32 resnet18_cifar_train_b32 2 "$rt"
done
"$py" benches/compare/aggregate.py "$results" "$out/compare.json"
