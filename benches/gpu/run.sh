#!/usr/bin/env bash
# Runs on a lent GPU machine, from the project root, after benches/gpu/pack.sh here: builds nothing.
# Writes everything it prints under .gpu/out, and, where the device tool set $OUT, its archive there
# (results.tgz; unpack it with `tar -xzf`), in this order,
# each stage chosen by STAGES (default: all of them, about 3 minutes on an H200 since bench times
# every step twice, with and without its upload):
#   tests    the GPU parity test binaries, with f16 and (where the adapter has them) cooperative
#            matrices required, so that a kernel family that silently fell back fails
#   check    `wgrad check --verify` for every model: two training steps on the GPU against the CPU path
#   bench    `wgrad bench --peak`, the adapter's arithmetic rates in WGSL (peak.json); then
#            `wgrad bench --json` for every model at 64, 256 and 1024: f32 (default kernels, then
#            Winograd's, then the tiled ones), mixed precision with each kernel family
#            (bench-LABEL.json)
#   train    `wgrad train` on the synthetic set (10,000 images), every model at the same batches,
#            f32, 5 epochs: the median epoch's images/s after the first (train-MODEL-BATCH.csv),
#            against bench's step rates (the issue's "train within 5% of bench")
#   pytorch  ../shared/bench/pytorch_models.py at the same batches, in the same call, for ratios
#            (pytorch.json), and its peak CUDA memory (benches/gpu/pytorch_memory.py)
# then benches/gpu/table.py makes the tables of docs/PERFORMANCE.md from them (summary.md).
# Compare only numbers from one call: the card's and PyTorch's speed vary between calls.
#
#     STAGES="tests bench pytorch" BATCHES=64,1024 benches/gpu/run.sh
set -u
cd "$(dirname "$0")/../.."
out=$PWD/.gpu/out
rm -rf "$out"
mkdir -p "$out"
# The device tool brings back at most 8 files from $OUT: everything goes there as one archive
# (results.tgz, also when the call is cut short) beside summary.md.
if [ -n "${OUT:-}" ]; then
  trap 'tar -czf "$OUT/results.tgz" -C "$out" . && cp "$out/summary.md" "$OUT/" 2> /dev/null' EXIT
fi
stages=${STAGES:-tests check bench train pytorch}
batches=${BATCHES:-64,256,1024}
steps=${STEPS:-30}
has() { [[ " $stages " == *" $1 "* ]]; }
log() { tee -a "$out/$1"; }

# The binaries pack.sh built here.
python3 -m tarfile -e .gpu/bin.tar.xz .gpu/ || exit 1
. benches/gpu/loader.sh
# The test binaries read tests/data under the path they were built in.
built=$(cat .gpu/manifest-dir)
if [ "$built" != "$PWD" ] && [ ! -e "$built" ]; then
  mkdir -p "$(dirname "$built")" && ln -s "$PWD" "$built"
fi

{
  echo "commit $(cat .gpu/commit), $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  .gpu/wgrad devices 2>&1
} | log devices.txt
if ! grep -qi nvidia "$out/devices.txt"; then
  { ls /usr/local/nvidia/share/vulkan/icd.d/; ldconfig -p | grep -i vulkan; } 2>&1 | log devices.txt
fi
# Cooperative matrices are required by the tests only where `wgrad devices` says the adapter has them.
coop=0
grep -q 'cooperative matrices' "$out/devices.txt" && coop=1

status=0
if has tests; then
  for t in .gpu/tests/*; do
    echo "== $(basename "$t")" | log tests.txt
    WGRAD_REQUIRE_GPU=1 WGRAD_REQUIRE_F16=1 WGRAD_REQUIRE_COOPERATIVE_MATRIX=$coop "$t" 2>&1 |
      grep -E '^test |test result|panicked|FAILED|skipped' | log tests.txt
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  done
fi
if has check; then
  for m in tudui cifar_net resnet20; do
    echo "== check --verify ${m/_/-}" | log check.txt
    .gpu/wgrad check --device gpu --model "${m/_/-}" --weights "tests/data/${m}_init.safetensors" \
      --batch tests/data/tudui_batch1.safetensors --batch tests/data/tudui_batch2.safetensors \
      --out "/tmp/check-$m.safetensors" --verify > "/tmp/check-$m.txt" 2>&1
    rc=$?
    { tail -4 "/tmp/check-$m.txt"; echo "exit status $rc"; } | log check.txt
    [ "$rc" -eq 0 ] || status=1
  done
fi
if has bench; then
  # bench LABEL VAR=VALUE...: one configuration, its results in bench-LABEL.json, what it says
  # besides (errors, skips) in bench.txt.
  bench() {
    local label=$1
    shift
    echo "== $label: $*" | log bench.txt
    local err
    err=$(mktemp)
    env "$@" .gpu/wgrad bench --device gpu --model all --batch-sizes "$batches" --steps "$steps" \
      --warmup 5 --json > "$out/bench-$label.json" 2> "$err"
    local rc=$?
    grep -v ' eta [0-9]' "$err" | log bench.txt
    rm -f "$err"
    [ "$rc" -eq 0 ] || { echo "exit status $rc" | log bench.txt; status=1; }
  }
  echo "== peak" | log bench.txt
  .gpu/wgrad bench --device gpu --peak --json > "$out/peak.json" 2>> "$out/bench.txt" ||
    { echo "exit status $?" | log bench.txt; status=1; }
  bench f32 WGRAD_PRECISION=f32
  bench f32-winograd WGRAD_PRECISION=f32 WGRAD_CONV_KERNELS=winograd
  bench f32-tiled WGRAD_PRECISION=f32 WGRAD_CONV_KERNELS=tiled
  [ "$coop" -eq 1 ] && bench mixed-cooperative-matrix WGRAD_PRECISION=mixed WGRAD_CONV_KERNELS=cooperative-matrix
  bench mixed-register-blocked WGRAD_PRECISION=mixed WGRAD_CONV_KERNELS=register-blocked
  bench mixed-subgroups WGRAD_PRECISION=mixed WGRAD_CONV_KERNELS=subgroups
  bench mixed-winograd WGRAD_PRECISION=mixed WGRAD_CONV_KERNELS=winograd
fi
if has train; then
  for m in tudui cifar-net resnet20; do
    for b in ${batches//,/ }; do
      echo "== train $m $b" | log train.txt
      # This script's own folder from a run before it (a new run refuses another run's checkpoints).
      rm -rf "/tmp/train-$m-$b"
      WGRAD_PRECISION=f32 .gpu/wgrad train --device gpu --dataset synthetic --model "$m" --batch-size "$b" \
        --epochs 5 --out "/tmp/train-$m-$b" > "/tmp/train-$m-$b.txt" 2>&1
      rc=$?
      { grep -E '^epoch' "/tmp/train-$m-$b.txt" | tail -2; echo "exit status $rc"; } | log train.txt
      cp "/tmp/train-$m-$b/metrics.csv" "$out/train-$m-$b.csv" 2> /dev/null
      [ "$rc" -eq 0 ] || status=1
    done
  done
fi
if has pytorch; then
  python3 .gl/pytorch_models.py --model tudui cifar-net resnet20 --device "${TORCH_DEVICE:-cuda}" \
    --batch-sizes ${batches//,/ } --steps "$steps" --json "$out/pytorch.json" 2>&1 | log pytorch.txt
  python3 benches/gpu/pytorch_memory.py --models-py .gl/pytorch_models.py --device "${TORCH_DEVICE:-cuda}" \
    --batch-sizes ${batches//,/ } --json "$out/pytorch_memory.json" 2>&1 | log pytorch.txt
fi
python3 benches/gpu/table.py "$out" > "$out/summary.md" 2>&1
cat "$out/summary.md"
exit $status
