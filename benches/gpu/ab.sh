#!/usr/bin/env bash
# A/B runs of kernel variants on a lent GPU: several builds of `wgrad`, timed in turn in one call
# (a card's speed moves between calls; builds compared within one call can be told apart).
#
# Here, in the project root:
#   benches/gpu/ab.sh pack LABEL SED [LABEL SED]...
# builds the release `wgrad` once per variant: with SED @REV, the git revision REV as it was (in
# a worktree of its own, built into target/ab-rev: the first such build compiles every dependency,
# a few minutes); otherwise the working tree with the sed script SED applied to the files that
# AB_FILES names (a glob, shaders or Rust sources; default shaders/*.wgsl; an empty SED builds the
# tree as it is; a SED that changes none of them is refused), in a worktree of its own that holds
# the working tree's uncommitted changes and untracked files (the working tree itself is never
# edited, so edits and commits made meanwhile are safe), built into target/ab-rev too. Each
# variant's shaders must pass naga's validation and translation
# (tests/shaders.rs). The binaries go to .gpu/ab.tar.xz (about 4 MB each); .gl must hold what
# pack.sh downloads.
# There, with carry [".gpu/ab.tar.xz", ".gl"] (nothing else is needed):
#   benches/gpu/ab.sh run
# runs ROUNDS (default 2) rounds of `wgrad bench --device gpu --json`, every build in turn, on
# MODELS (default all) at BATCHES (default 1024) for STEPS (default 20) timed steps, in the
# environment AB_ENV (such as "WGRAD_PRECISION=mixed WGRAD_CONV_KERNELS=cooperative-matrix"); then
# prints each build's median step per model and batch (batch on the device), round by round, its
# kernel time by kind (input gradients, weight gradients, split sums, the rest) and its longest
# kernels; everything is archived into $OUT/ab.tgz where the device tool set $OUT.
# AB_LABELS (default: every packed build) names the builds a run times, AB_TAG (default: none)
# names its folder and archive (.gpu/ab-out-TAG, ab-TAG.tgz), so that one call can run several
# sweeps of one pack.
#
#     AB_FILES='shaders/conv2d_*_cooperative_matrix.wgsl' benches/gpu/ab.sh pack \
#         pad8 '' pad0 's/^const PAD: u32 = 8u;/const PAD: u32 = 0u;/'
#     # there:
#     AB_ENV="WGRAD_PRECISION=mixed WGRAD_CONV_KERNELS=cooperative-matrix" benches/gpu/ab.sh run
set -uo pipefail
cd "$(dirname "$0")/../.."
die() { echo "ab.sh: $*" >&2; exit 1; }

pack() {
  [ $# -ge 2 ] && [ $(($# % 2)) -eq 0 ] || die "pack takes pairs of LABEL and SED script"
  ls .gl/libvulkan1_*.deb > /dev/null 2>&1 || die "no Vulkan loader in .gl: run benches/gpu/pack.sh once"
  local root=$PWD f
  stage=$(mktemp -d)
  keep=$(mktemp -d)
  # The sed variants build in a worktree holding the working tree as it is (its uncommitted
  # changes and untracked files copied over), so that the working tree itself is never edited.
  tree=$(mktemp -d)
  rmdir "$tree"
  git worktree add --quiet --detach "$tree" HEAD || die "cannot make a worktree of HEAD"
  trap 'git worktree remove --force "$tree"; rm -rf "$stage" "$keep"' EXIT
  git ls-files -z --deleted | (cd "$tree" && xargs -0 -r rm -f --)
  git ls-files -z --modified --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && cp --parents -- "$f" "$tree"
  done
  shopt -s nullglob
  # shellcheck disable=SC2206,SC2086 # the glob is meant to expand
  files=($(cd "$tree" && echo ${AB_FILES:-shaders/*.wgsl}))
  [ ${#files[@]} -gt 0 ] || die "no file matches AB_FILES=${AB_FILES:-}"
  local i
  for i in "${!files[@]}"; do cp "$tree/${files[$i]}" "$keep/$i"; done
  # Restored as copies (new modification times), so that the next build compiles them again.
  restore() { for i in "${!files[@]}"; do cp "$keep/$i" "$tree/${files[$i]}"; done; }
  local labels=()
  while [ $# -gt 0 ]; do
    local label=$1 script=$2
    shift 2
    [[ $label =~ ^[A-Za-z0-9_-]+$ ]] || die "label $label: letters, digits, - and _ only"
    if [[ $script == @* ]]; then
      build_revision "$label" "${script#@}"
      labels+=("$label")
      continue
    fi
    if [ -n "$script" ]; then
      local changed=0
      for i in "${!files[@]}"; do
        sed -i -e "$script" "$tree/${files[$i]}" || die "$label: sed failed"
        cmp -s "$tree/${files[$i]}" "$keep/$i" || changed=1
      done
      [ $changed -eq 1 ] || { restore; die "$label: the sed script changes none of ${files[*]}"; }
    fi
    echo "building $label"
    # WGSL is compiled when pipelines are made, on the GPU machine: validate and translate every
    # shader here (tests/shaders.rs, a few seconds), so that no device time goes to a broken variant.
    # Not its WebGPU-limits test: a variant may try what only a native adapter allows.
    (cd "$tree" && CARGO_TARGET_DIR="$root/target/ab-rev" cargo build --release --quiet --bin wgrad) ||
      { restore; die "$label: the build failed"; }
    (cd "$tree" && CARGO_TARGET_DIR="$root/target/ab-rev" cargo test --release --quiet --test shaders -- \
      every_shader_parses_and_validates every_shader_translates_for_vulkan_metal_dx12_and_gl) \
      > "$stage/shaders-$label.log" 2>&1 ||
      { tail -20 "$stage/shaders-$label.log" >&2; restore; die "$label: tests/shaders.rs fails on this variant"; }
    rm -f "$stage/shaders-$label.log"
    cp target/ab-rev/release/wgrad "$stage/wgrad-$label"
    restore
    labels+=("$label")
  done
  echo "${labels[*]}" > "$stage/labels"
  git describe --always --dirty > "$stage/commit"
  mkdir -p .gpu
  tar -cJf .gpu/ab.tar.xz -C "$stage" .
  echo "packed ${labels[*]} ($(cat "$stage/commit")): $(du -h .gpu/ab.tar.xz | cut -f1) in .gpu/ab.tar.xz"
}

# LABEL REV: the release `wgrad` of git revision REV into the stage, built in a worktree of its own
# with a target folder of its own (a shared one would leave target/release/wgrad holding REV's
# build, which the working tree's next build does not replace).
build_revision() {
  local label=$1 rev=$2 tree root=$PWD
  tree=$(mktemp -d)
  git worktree add --quiet --detach "$tree" "$rev" || die "$label: no revision $rev"
  echo "building $label ($rev)"
  (cd "$tree" && CARGO_TARGET_DIR="$root/target/ab-rev" cargo build --release --quiet --bin wgrad &&
    CARGO_TARGET_DIR="$root/target/ab-rev" cargo test --release --quiet --test shaders -- \
      every_shader_parses_and_validates every_shader_translates_for_vulkan_metal_dx12_and_gl > /dev/null)
  local rc=$?
  [ $rc -eq 0 ] && cp target/ab-rev/release/wgrad "$stage/wgrad-$label"
  git worktree remove --force "$tree"
  [ $rc -eq 0 ] || die "$label: $rev does not build, or its shaders fail tests/shaders.rs"
}

run() {
  local tag=${AB_TAG:+-$AB_TAG}
  local out=$PWD/.gpu/ab-out$tag bin=/tmp/wgrad-ab$tag
  rm -rf "$out" "$bin"
  mkdir -p "$out" "$bin"
  # Expanded now: $out is this function's.
  [ -n "${OUT:-}" ] && trap "tar -czf '$OUT/ab$tag.tgz' -C '$out' ." EXIT
  python3 -m tarfile -e .gpu/ab.tar.xz "$bin" || die "cannot unpack .gpu/ab.tar.xz"
  . benches/gpu/loader.sh
  local labels round l
  labels=${AB_LABELS:-$(cat "$bin/labels")}
  for l in $labels; do
    [ -x "$bin/wgrad-$l" ] || die "no build $l in .gpu/ab.tar.xz (it holds $(cat "$bin/labels"))"
  done
  echo "builds: $labels (commit $(cat "$bin/commit")); environment: ${AB_ENV:-none}"
  for round in $(seq 1 "${ROUNDS:-2}"); do
    for l in $labels; do
      # shellcheck disable=SC2086 # AB_ENV is a list of VAR=VALUE words
      env ${AB_ENV:-} "$bin/wgrad-$l" bench --device gpu --model "${MODELS:-all}" \
        --batch-sizes "${BATCHES:-1024}" --steps "${STEPS:-20}" --warmup 5 --json \
        > "$out/$l-$round.json" 2> "$out/$l-$round.err" ||
        { echo "$l, round $round: exit status $?"; grep -v ' eta [0-9]' "$out/$l-$round.err" | tail -5; }
    done
  done
  python3 - "$out" $labels << 'PY' | tee "$out/summary.md"
import json, os, statistics, sys
out, labels = sys.argv[1], sys.argv[2:]
runs = {}  # (label, model, batch) -> [ms per round], batch on the device
uploaded = {}  # the same, each step uploading its batch (as `wgrad train` runs)
kernels = {}
kinds = {}  # (label, model, batch) -> the first round's kernels
for name in sorted(os.listdir(out)):
    if not name.endswith(".json"):
        continue
    label, _ = name[:-5].rsplit("-", 1)
    try:
        with open(os.path.join(out, name)) as f:
            b = json.load(f)
    except (OSError, ValueError):
        continue
    for r in b["results"]:
        runs.setdefault((label, r["model"], r["batch"]), []).append(r["train_resident_ms_median"])
        uploaded.setdefault((label, r["model"], r["batch"]), []).append(r["train_ms_median"])
        kernels.setdefault(label, (r["model"], r["batch"], r["kernels"]))
        kinds.setdefault((label, r["model"], r["batch"]), r["kernels"])
keys = sorted({(m, bs) for (_, m, bs) in runs}, key=lambda k: (k[0], k[1]))
for table, what in [(runs, "train ms (rounds), batch on the device"), (uploaded, "train ms with each step's upload")]:
    print("| model | batch | " + " | ".join(f"{l}: {what}" for l in labels) + " |")
    print("| --- | --- |" + " --- |" * len(labels))
    for m, bs in keys:
        cells = []
        for l in labels:
            v = table.get((l, m, bs))
            cells.append("–" if not v else f"{statistics.median(v):.3f} ({', '.join(f'{x:.3f}' for x in v)})")
        print(f"| {m} | {bs} | " + " | ".join(cells) + " |")
    print()
# Each build's kernel time by kind (first round, timed one by one): where a change moved it.
def by_kind(ks):
    sums = {"input gradients": 0.0, "weight gradients": 0.0, "split sums": 0.0, "the rest": 0.0}
    for k in ks:
        n = k["name"]
        kind = ("split sums" if n.endswith(".sum_splits") else "input gradients" if n.endswith(".dinp")
                else "weight gradients" if n.endswith(".dweight") else "the rest")
        sums[kind] += k["ms"]
    return " / ".join(f"{v:.3f}" for v in sums.values())
print("| model | batch | " + " | ".join(f"{l}: input gradients / weight gradients / split sums / the rest, ms" for l in labels) + " |")
print("| --- | --- |" + " --- |" * len(labels))
for m, bs in keys:
    print(f"| {m} | {bs} | " + " | ".join(by_kind(kinds[(l, m, bs)]) if (l, m, bs) in kinds else "–" for l in labels) + " |")
for l in labels:
    if l in kernels:
        m, bs, ks = kernels[l]
        top = sorted(ks, key=lambda k: -k["ms"])[:8]
        print(f"- {l}, {m} at {bs}, longest kernels (ms): " + ", ".join(f"`{k['name']}` {k['ms']:.3f}" for k in top))
PY
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) run ;;
  *) die "usage: benches/gpu/ab.sh pack LABEL SED [LABEL SED]... | benches/gpu/ab.sh run" ;;
esac
