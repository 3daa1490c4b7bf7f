#!/usr/bin/env bash
# wgrad and its peers side by side, on this machine, in one run, with ratios:
#   - wgrad's CPU path (1 and 2 threads) vs PyTorch CPU at the same thread counts (../shared/bench/pytorch_tudui.py)
#   - wgrad on the wgpu adapter (lavapipe here, a real GPU elsewhere) vs Burn's wgpu backend on the same adapter
#   - wgrad's CPU path vs Burn's flex (CPU) backend
#   - on a machine with CUDA: wgrad on the GPU vs PyTorch eager CUDA
#
#   benches/compare.sh [BATCH]          (default 64; run from the repository root, after cargo build --release)
#
# It starts with every model (tudui, cifar-net, resnet20) on the CPU path against PyTorch CPU, train
# and inference, 1 and 2 threads, batch 64 and 256, with peak memory (benches/compare_models.py).
#
# Burn 0.22 (../shared/bench/burn-tudui) is built outside this project, once (about 40 minutes cold on
# 2 cores): cp -r ../shared/bench/burn-tudui /tmp/ && (cd /tmp/burn-tudui && cargo build --release).
# Set BURN_DIR if it lives elsewhere; without it the Burn rows are skipped and say so.
set -uo pipefail
cd "$(dirname "$0")/.."
BATCH=${1:-64}
W=${WGRAD:-target/release/wgrad}
PYBENCH=${PYBENCH:-../shared/bench/pytorch_tudui.py}
BURN_DIR=${BURN_DIR:-/tmp/burn-tudui}
OUT=$(mktemp -d)
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$OUT}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"

[ -x "$W" ] || { echo "build wgrad first: cargo build --release"; exit 1; }
echo "== every model, CPU path vs PyTorch CPU"
python3 benches/compare_models.py --wgrad "$W" --pybench "${PYBENCH_MODELS:-../shared/bench/pytorch_models.py}"
echo "== Tudui against every peer, batch $BATCH"
for t in 1 2; do
  RAYON_NUM_THREADS=$t "$W" bench --device cpu --batch-sizes "$BATCH" --steps 20 --json > "$OUT/wgrad_cpu_$t.json" 2>/dev/null
done
"$W" bench --device gpu --batch-sizes "$BATCH" --steps 20 --json > "$OUT/wgrad_gpu.json" 2>/dev/null || echo "{}" > "$OUT/wgrad_gpu.json"
if python3 -c "import torch" 2>/dev/null; then
  python3 "$PYBENCH" --device cpu --batch-sizes "$BATCH" --threads 1 2 --steps 20 --json "$OUT/torch_cpu.json" > /dev/null
  if python3 -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    python3 "$PYBENCH" --device cuda --batch-sizes "$BATCH" --steps 30 --json "$OUT/torch_cuda.json" > /dev/null
  fi
else
  echo "PyTorch is not installed (pip install torch): its rows are skipped"
fi
if [ -x "$BURN_DIR/target/release/burn-tudui" ]; then
  (cd "$BURN_DIR" && ./target/release/burn-tudui --backends wgpu,flex --batches "$BATCH" --warmup 5 --iters 10 2>&1 | grep '^RESULT' > "$OUT/burn.txt")
else
  echo "Burn is not built at $BURN_DIR: its rows are skipped"
fi

python3 - "$OUT" "$BATCH" <<'PY'
import json, os, sys
out, batch = sys.argv[1], int(sys.argv[2])
def load(n):
    p = os.path.join(out, n)
    try:
        return json.load(open(p))
    except Exception:
        return None
def wg(n, key):
    j = load(n)
    if not j or not j.get("results"):
        return None, None
    r = j["results"][0]
    return r[key], j.get("device")
def torch_rate(n, mode, thr=None):
    j = load(n)
    if not j:
        return None
    for r in j["rows"]:
        if r["mode"] == mode and r["batch"] == batch and (thr is None or r["threads"] == thr):
            return r["images_per_s"]
    return None
burn = {}
p = os.path.join(out, "burn.txt")
if os.path.exists(p):
    for line in open(p):
        f = [x.strip() for x in line.split("|")]
        # RESULT | backend | train/infer | N=batch | median .. ms | min .. ms | X img/s (median) | ...
        try:
            burn[(f[1], f[2])] = float(f[6].split()[0])
        except Exception:
            pass
rows = []
def row(what, a, a_name, b, b_name, target):
    fa = f"{a:>10.0f}" if a is not None else f"{'-':>10}"
    fb = f"{b:>10.0f}" if b is not None else f"{'-':>10}"
    if a is None or b is None:
        rows.append(f"{what:<48} {fa} {fb} {'-':>7}  ({a_name if a is None else b_name} not measured)")
    else:
        r = a / b
        verdict = f"  target >= {target}x: {'met' if r >= target else 'not met'}" if target else ""
        rows.append(f"{what:<48} {fa} {fb} {r:>6.2f}x{verdict}")
# The peers time steps on a batch already on the device: so are wgrad's compared here.
for mode, key in (("train", "train_resident_images_per_s"), ("infer", "infer_resident_images_per_s")):
    c1, _ = wg("wgrad_cpu_1.json", key)
    c2, _ = wg("wgrad_cpu_2.json", key)
    g, gname = wg("wgrad_gpu.json", key)
    t = 1.0 if mode == "train" else None
    row(f"{mode}: wgrad CPU 1 thread / PyTorch CPU 1", c1, "wgrad", torch_rate("torch_cpu.json", mode, 1), "torch", t)
    row(f"{mode}: wgrad CPU 2 threads / PyTorch CPU 2", c2, "wgrad", torch_rate("torch_cpu.json", mode, 2), "torch", t)
    row(f"{mode}: wgrad CPU 2 threads / Burn flex", c2, "wgrad", burn.get(("flex", mode)), "burn flex", t)
    row(f"{mode}: wgrad wgpu / Burn wgpu", g, "wgrad gpu", burn.get(("wgpu", mode)), "burn wgpu", 3.0 if mode == "train" else None)
    row(f"{mode}: wgrad GPU / PyTorch CUDA", g, "wgrad gpu", torch_rate("torch_cuda.json", mode), "torch cuda", 1.5 if mode == "train" else None)
gdev = (load("wgrad_gpu.json") or {}).get("device", "no adapter")
print(f"images/s at batch {batch} (median of timed steps, the batch already on the device in all of them); wgrad's wgpu adapter: {gdev}; raw results in {out}")
print(f"{'comparison':<48} {'wgrad':>10} {'peer':>10} {'ratio':>7}")
print("\n".join(rows))
PY
