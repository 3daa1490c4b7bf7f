#!/usr/bin/env python3
"""The tables of docs/PERFORMANCE.md from one benches/gpu/run.sh call's results.

    python3 benches/gpu/table.py OUT_DIR

Reads, in OUT_DIR: peak.json (`wgrad bench --peak --json`), bench-LABEL.json (`wgrad bench
--json`, one per precision and kernel family), pytorch.json (../shared/bench/pytorch_models.py
--json), pytorch_memory.json (benches/gpu/pytorch_memory.py --json) and train-MODEL-BATCH.csv
(`wgrad train`'s metrics.csv); any of them may be missing. Prints the adapter's arithmetic rates in WGSL; then, per bench file, a
markdown table of every model and batch: wgrad's train and inference images/s with the batch
already on the device (as PyTorch's script times it) and with each step's upload (as `wgrad train`
runs), PyTorch's, the ratio of the like-for-like pair, and both memories; then the longest kernels
of each model's largest batch.
"""
import glob, json, os, sys

out = sys.argv[1] if len(sys.argv) > 1 else ".gpu/out"


def load(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


torch = load("pytorch.json") or {"rows": []}
rate = {(r["model"], r["mode"], r["batch"]): r["images_per_s"] for r in torch["rows"]}
memory = {(r["model"], r["batch"]): r for r in (load("pytorch_memory.json") or {"rows": []})["rows"]}
num = lambda v: "–" if v is None else f"{v:,.0f}" if v >= 10 else f"{v:.2g}"
ratio = lambda a, b: "–" if a is None or b is None else f"{a / b:.2f}×"
mib = lambda b: "–" if b is None else f"{b / 2**20:,.1f}"

devices = os.path.join(out, "devices.txt")
if os.path.exists(devices):
    with open(devices) as f:
        print("".join(f.readlines()[:2]).strip() + "\n")
if torch["rows"]:
    print(f"PyTorch {torch.get('torch', '?')} on {torch.get('device', '?')} ({torch.get('name', '?')})\n")
peak = load("peak.json")
if peak:
    print(f"Arithmetic rates in WGSL (`wgrad bench --peak`, {peak['timing']}):\n")
    for p in peak["peaks"]:
        print(f"- {p['peak']}: {num(p['gflops'])} GFLOP/s ({p['workgroups']} workgroups x {p['iterations']} iterations)")
    print()
# In the order run.sh ran them.
files = sorted(glob.glob(os.path.join(out, "bench-*.json")), key=os.path.getmtime)
if not files:
    print(f"no bench-*.json in {out}")
for path in files:
    label = os.path.basename(path)[len("bench-"):-len(".json")]
    try:
        with open(path) as f:
            b = json.load(f)
    except (OSError, ValueError) as e:
        print(f"### {label}: unreadable ({e})\n")
        continue
    print(f"### {label}: {b['device']}, {b['optimizer']}, {b['startup_ms']:.0f} ms of pipeline creation\n")
    print("| model | batch | wgrad train img/s (ms), batch on the device | with each step's upload | PyTorch train |"
          " ratio | wgrad infer img/s (ms) | PyTorch infer | ratio | wgrad memory train / infer MiB |"
          " PyTorch peak train / infer MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in b["results"]:
        m, bs = r["model"], r["batch"]
        pt, pi = rate.get((m, "train", bs)), rate.get((m, "infer", bs))
        mem = memory.get((m, bs), {})
        print(f"| {m} | {bs} | {num(r['train_resident_images_per_s'])} ({r['train_resident_ms_median']:.2f})"
              f" | {num(r['train_images_per_s'])} ({r['train_ms_median']:.2f}) | {num(pt)}"
              f" | {ratio(r['train_resident_images_per_s'], pt)}"
              f" | {num(r['infer_resident_images_per_s'])} ({r['infer_resident_ms_median']:.2f}) | {num(pi)}"
              f" | {ratio(r['infer_resident_images_per_s'], pi)}"
              f" | {mib(r['memory_bytes'])} / {mib(r['infer_memory_bytes'])}"
              f" | {mib(mem.get('train_peak_bytes'))} / {mib(mem.get('infer_peak_bytes'))} |")
    print()
    largest = {}
    for r in b["results"]:
        if r["batch"] >= largest.get(r["model"], {"batch": 0})["batch"]:
            largest[r["model"]] = r
    for m, r in largest.items():
        total = sum(k["ms"] for k in r["kernels"])
        top = ", ".join(
            f"`{k['name']}` {k['ms']:.3f}"
            + (f" ({num(k['gflops'])} GFLOP/s)" if k.get("gflops") else f" ({num(k['gbps'])} GB/s)" if k.get("gbps") else "")
            for k in r["kernels"][:6])
        print(f"- {m} at {r['batch']}: the kernels, timed one by one, {total:.3f} ms in all against a"
              f" {r['train_resident_ms_median']:.3f} ms step (batch on the device); the longest, ms: {top}")
    print()

# `wgrad train` against bench (f32): the median epoch after the first, data loading, the queued
# steps and the drain at the epoch's end included.
f32 = load("bench-f32.json")
bench = {(r["model"], r["batch"]): r for r in (f32 or {"results": []})["results"]}
trains = sorted(glob.glob(os.path.join(out, "train-*.csv")))
if trains:
    print("### `wgrad train` against `wgrad bench` (f32, synthetic set, median of epochs 2 to 5)\n")
    print("| model | batch | train img/s | bench, with each step's upload | bench, batch on the device | train / with upload | train / on the device |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    import csv, statistics
    rows = []
    for path in trains:
        model, batch = os.path.basename(path)[len("train-"):-len(".csv")].rsplit("-", 1)
        with open(path) as f:
            epochs = list(csv.DictReader(f))
        rate = statistics.median(float(e["images_per_s"]) for e in epochs[1:]) if len(epochs) > 1 else None
        rows.append((model, int(batch), rate))
    for model, batch, rate in sorted(rows, key=lambda r: (r[0], r[1])):
        r = bench.get((model, batch), {})
        up, res = r.get("train_images_per_s"), r.get("train_resident_images_per_s")
        print(f"| {model} | {batch} | {num(rate)} | {num(up)} | {num(res)} | {ratio(rate, up)} | {ratio(rate, res)} |")
    print()
