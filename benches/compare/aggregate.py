"""Collects the JSON lines of one comparison run (kiln's and the peers',
several rounds per workload), prints the table of medians and ratios
(peer time / kiln time) and writes target/kiln-bench/compare.json.

Usage: aggregate.py RESULTS.jsonl OUT.json. One-thread workloads are
compared by process CPU time (the shared machine's scheduler makes their
wall time mostly waiting); two-thread workloads by the wall clock.
"""

import json
import sys

import numpy as np

PEERS = ["torch", "torch_compile", "ort", "jax"]
WORKLOADS = ["lenet_infer_b1", "lenet_infer_b256", "lenet_train_b64",
             "resnet18_infer_b1_t1", "resnet18_infer_b1_t2", "resnet18_cifar_train_b32"]
# Workloads kiln cannot run yet, with the reason the table shows.
NOT_YET = {}


def main():
    lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    rows = []
    for w in WORKLOADS:
        kiln = [l for l in lines if l.get("side") == "kiln" and l["key"] == w]
        peers = [l for l in lines if l.get("side") == "peers" and l["key"] == w]
        if not kiln:
            rows.append({"workload": w, "kiln_seconds": None,
                         "note": NOT_YET.get(w, "not run")})
            continue
        threads = kiln[0]["threads"]
        clock = "cpu_seconds" if threads == 1 else "wall_seconds"
        row = {"workload": w, "threads": threads, "clock": clock.split("_")[0],
               "rounds": len(kiln),
               "kiln_seconds": float(np.median([k[clock] for k in kiln]))}
        for p in PEERS:
            ok = [l[p] for l in peers if p in l and "error" not in l[p]]
            if ok:
                row[p + "_seconds"] = float(np.median([o[clock] for o in ok]))
                row[p + "_agrees"] = all(o["agrees"] for o in ok)
                row[p + "_max_rel_error"] = max(o["max_rel_error"] for o in ok)
            else:
                errs = [l[p]["error"] for l in peers if p in l]
                if errs:
                    row[p + "_error"] = errs[0]
        rows.append(row)
    json.dump(rows, open(sys.argv[2], "w"), indent=1)

    head = f"{'workload':<26}{'clock':>6}{'kiln ms':>10}" + "".join(
        f"{p + ' ms':>18}" for p in PEERS)
    print(head)
    for r in rows:
        if r["kiln_seconds"] is None:
            print(f"{r['workload']:<26}  {r['note']}")
            continue
        k = r["kiln_seconds"]
        cells = []
        for p in PEERS:
            s = r.get(p + "_seconds")
            if s is None:
                cells.append(f"{'failed' if p + '_error' in r else '-':>18}")
            else:
                mark = "" if r[p + "_agrees"] else "!"
                cells.append(f"{s * 1e3:>9.3f} ({s / k:5.2f}x){mark}")
        print(f"{r['workload']:<26}{r['clock']:>6}{k * 1e3:>10.3f}" + "".join(cells))
    print("(x = peer time / kiln time; ! = output differs from kiln's by more than 1e-4;")
    print(" - = not a peer of this workload)")
    print(f"(written to {sys.argv[2]})")


if __name__ == "__main__":
    main()
