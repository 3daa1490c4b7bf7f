#!/usr/bin/env python3
"""wgrad's CPU path against PyTorch's CPU backend, every model, side by side in one run.

    python3 benches/compare_models.py [--batch-sizes 64 256] [--threads 1 2] [--steps 20]

For each model, batch size and thread count, one `wgrad bench --device cpu` process and one
PyTorch process (../shared/bench/pytorch_models.py, or $PYBENCH_MODELS) are run one after the other, so
the two see the same machine; each reports train-step and inference images/s (median of the timed
steps, the batch already in place: PyTorch's script makes its tensors once), and the peak resident memory of each process is read from the kernel (wait4's ru_maxrss).
Prints a markdown table with the ratios. Run from the repository root after `cargo build --release`.
"""
import argparse, json, os, subprocess, sys, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--models", nargs="+", default=["tudui", "cifar-net", "resnet20"])
ap.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--wgrad", default="target/release/wgrad")
ap.add_argument("--pybench", default=os.environ.get("PYBENCH_MODELS", "../shared/bench/pytorch_models.py"))
a = ap.parse_args()


def run(cmd, env):
    """Runs cmd; returns (stdout, peak RSS in MiB)."""
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        if status != 0:
            sys.exit(f"failed ({status}): {' '.join(cmd)}")
        out.seek(0)
        return out.read().decode(), usage.ru_maxrss / 1024


have_torch = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0
if not have_torch:
    print("PyTorch is not installed (pip install torch): its columns are empty")
rows = []
for model in a.models:
    for batch in a.batch_sizes:
        for t in a.threads:
            env = dict(os.environ, RAYON_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t))
            out, w_rss = run([a.wgrad, "bench", "--device", "cpu", "--model", model, "--batch-sizes", str(batch),
                              "--steps", str(a.steps), "--json"], env)
            w = json.loads(out)["results"][0]
            tr = {}
            p_rss = None
            if have_torch:
                with tempfile.NamedTemporaryFile(suffix=".json") as j:
                    _, p_rss = run([sys.executable, a.pybench, "--device", "cpu", "--model", model, "--batch-sizes",
                                    str(batch), "--threads", str(t), "--steps", str(a.steps), "--json", j.name], env)
                    tr = {r["mode"]: r["images_per_s"] for r in json.load(open(j.name))["rows"]}
            # PyTorch's script moves its batch once: wgrad's steps on the batch already in place.
            rows.append((model, batch, t, w["train_resident_images_per_s"], tr.get("train"), w["infer_resident_images_per_s"],
                         tr.get("infer"), w_rss, p_rss))
            print(f"{model} batch {batch} threads {t}: done", file=sys.stderr)

f = lambda v, fmt="{:,.0f}": "-" if v is None else fmt.format(v)
r = lambda x, y: "-" if x is None or y is None else f"{x / y:.2f}×"
print("| model | batch | threads | train wgrad | train PyTorch | ratio | infer wgrad | infer PyTorch | ratio | peak RSS wgrad | peak RSS PyTorch |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for m, b, t, wt, pt, wi, pi, wr, pr in rows:
    print(f"| {m} | {b} | {t} | {f(wt)} | {f(pt)} | {r(wt, pt)} | {f(wi)} | {f(pi)} | {r(wi, pi)} | "
          f"{f(wr, '{:.0f} MiB')} | {f(pr, '{:.0f} MiB')} |")
