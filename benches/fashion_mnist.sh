#!/usr/bin/env bash
# Fashion-MNIST after one epoch on the CPU path, wgrad next to PyTorch, seeds 0-2, for the setups
# of issue 12: cifar-net (batch 64, SGD lr 0.01 momentum 0.9), cifar-net (batch 64, Adam lr 1e-3)
# and resnet20 (batch 128, SGD lr 0.1 momentum 0.9 weight decay 1e-4). Needs torch (pip install
# torch) and Debian's dataset-fashion-mnist; prints one line per run and a table of means.
#
#     benches/fashion_mnist.sh [SEEDS...]            # default: 0 1 2
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=("${@:-0 1 2}")
read -r -a seeds <<<"${seeds[*]}"
cargo build --release --quiet
W=target/release/wgrad
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
setups=(
  "cifar-net|--batch-size 64 --optimizer sgd --lr 0.01 --momentum 0.9"
  "cifar-net|--batch-size 64 --optimizer adam --lr 1e-3"
  "resnet20|--batch-size 128 --optimizer sgd --lr 0.1 --momentum 0.9 --weight-decay 1e-4"
)
results="$tmp/results.txt"
for i in "${!setups[@]}"; do
  setup=${setups[$i]}
  model=${setup%%|*}
  flags=${setup#*|}
  for seed in "${seeds[@]}"; do
    # A folder per setup and seed: a run refuses a folder holding another run's checkpoints.
    out="$tmp/setup$i-$model-$seed"
    # shellcheck disable=SC2086
    $W train --device cpu --dataset fashion-mnist --model "$model" --epochs 1 --seed "$seed" $flags --out "$out" >/dev/null 2>"$tmp/err" ||
      { echo "wgrad train failed for $model $flags, seed $seed:" >&2; cat "$tmp/err" >&2; exit 1; }
    w=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[-1]['test_accuracy'])" "$out/metrics.json")
    # shellcheck disable=SC2086
    p=$(python3 benches/fashion_mnist_pytorch.py --model "$model" --seed "$seed" --json $flags | python3 -c "import json,sys; print(json.loads(sys.stdin.read())['test_accuracy'])")
    echo "$model $flags | seed $seed | wgrad $(python3 -c "print(f'{100*$w:.2f}')")% | pytorch $(python3 -c "print(f'{100*$p:.2f}')")%"
    echo "$model|$flags|$w|$p" >>"$results"
  done
done
echo
echo "| setup | wgrad mean | PyTorch mean | difference (points) |"
echo "| --- | --- | --- | --- |"
python3 - "$results" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    m, f, w, p = line.strip().split('|')
    rows.setdefault((m, f), ([], []))
    rows[(m, f)][0].append(float(w)); rows[(m, f)][1].append(float(p))
for (m, f), (w, p) in rows.items():
    mw, mp = 100 * statistics.mean(w), 100 * statistics.mean(p)
    print(f"| {m} {f} | {mw:.2f}% | {mp:.2f}% | {mw - mp:+.2f} |")
PY
