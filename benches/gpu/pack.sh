#!/usr/bin/env bash
# Packs what benches/gpu/run.sh needs on a lent GPU machine that has the NVIDIA driver and CUDA
# PyTorch but no Rust, no network and no Vulkan loader (../shared/gpu/README.md):
#   .gl/   the Vulkan loader and the glvnd libraries NVIDIA's Vulkan driver loads through (Debian
#          packages, downloaded once), and ../shared/bench/pytorch_models.py
#   .gpu/  bin.tar.xz: the release `wgrad` binary and the GPU test binaries (built here, x86-64 like
#          that machine; 80 MB, 21 MB compressed), with the commit and the path the test binaries
#          look for tests/data under
# Both folders are ignored by git; the device tool carries them (carry [".gpu", ".gl"]; it allows
# 64 MB in all, hence the archive).
#
#     benches/gpu/pack.sh              # then, on the GPU machine: benches/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

# The parity tests whose kernels differ by adapter class: every convolution kernel family and
# precision, Linear on them, the models against PyTorch's goldens, the executor and the limits; and
# the peak kernels of `wgrad bench --peak`, whose rates mean nothing if a compiler dropped work.
tests=(conv2d linear tudui models executor residual webgpu_limits peak)

if ! ls .gl/libvulkan1_*.deb > /dev/null 2>&1; then
  mkdir -p .gl .gl-lists/partial
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$PWD/.gl-lists")
  apt-get "${o[@]}" update -qq
  (cd .gl && apt-get "${o[@]}" download libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libgles2 libopengl0)
  rm -rf .gl-lists
fi
if [ ! -f .gl/pytorch_models.py ]; then
  cp ../shared/bench/pytorch_models.py .gl/
fi

cargo build --release --quiet
# Only what this script and run.sh write are replaced (the archive, and the binaries run.sh unpacks
# from it, which would push the carry past 64 MB): run.sh's results under .gpu/out stay.
rm -rf .gpu/bin.tar.xz .gpu/commit .gpu/manifest-dir .gpu/wgrad .gpu/tests
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p .gpu "$stage/tests"
cp target/release/wgrad "$stage/"
for t in "${tests[@]}"; do
  bin=$(cargo test --release --no-run --test "$t" 2>&1 | grep -o "target/release/deps/$t-[0-9a-f]*" | head -1)
  [ -n "$bin" ] || { echo "pack.sh: no test binary for $t" >&2; exit 1; }
  cp "$bin" "$stage/tests/$t"
done
# xz at its default level: about 40 s here; run.sh unpacks it with Python, which that machine has.
tar -cJf .gpu/bin.tar.xz -C "$stage" wgrad tests
# Test binaries find tests/data under the path Cargo compiled into them (CARGO_MANIFEST_DIR);
# run.sh links it to the copied tree when the GPU machine's tree lives elsewhere.
echo "$PWD" > .gpu/manifest-dir
git describe --always --dirty > .gpu/commit
echo "packed $(cat .gpu/commit): $(du -sh .gpu | cut -f1) in .gpu, $(du -sh .gl | cut -f1) in .gl"
