#!/bin/sh
# Builds the browser page into web/dist: the engine for wasm32 (web/src), its JS bindings, and the
# static files (web/static). Needs `rustup target add wasm32-unknown-unknown` and wasm-bindgen-cli
# at the version of the wasm-bindgen crate in Cargo.lock (this script says which when it differs).
# Serve it with `cargo run --release -- serve web/dist`.
set -eu
cd "$(dirname "$0")/.."
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null 2>&1; then
    echo "web/build.sh: wasm-bindgen is not installed: cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
have=$(wasm-bindgen --version | awk '{ print $2 }')
if [ "$have" != "$want" ]; then
    echo "web/build.sh: wasm-bindgen $have is installed but Cargo.lock pins $want: cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo "web/build.sh: the wasm32 target is missing: rustup target add wasm32-unknown-unknown" >&2
    exit 1
fi
cargo build --release -p wgrad-web --target wasm32-unknown-unknown
# Built beside web/dist, then moved into place: a failed build leaves the previous page whole.
tmp=web/.dist.tmp
rm -rf "$tmp"
mkdir -p "$tmp"
wasm-bindgen --target web --no-typescript --out-dir "$tmp" target/wasm32-unknown-unknown/release/wgrad_web.wasm
cp web/static/* "$tmp"/
rm -rf web/dist
mv "$tmp" web/dist
echo "web/dist: $(du -sh web/dist | cut -f1) (serve it: cargo run --release -- serve web/dist)"
