#!/usr/bin/env python3
"""PyTorch's peak CUDA memory for each network and batch: the column next to `wgrad bench`'s memory.

    python3 benches/gpu/pytorch_memory.py --models-py .gl/pytorch_models.py \
        [--model tudui cifar-net resnet20] [--batch-sizes 64 256 1024] [--device cuda] [--json OUT]

The networks are ../shared/bench/pytorch_models.py's (its path is given, since that file lives
outside the project), trained as that script does: SGD(lr=0.01), CrossEntropyLoss, the batch made
on the device once. For each model and batch, after a warm-up step, torch.cuda.max_memory_allocated()
from a reset of the peak: over one training step (parameters, gradients, the batch, the activations
autograd keeps; SGD without momentum keeps no buffers) and over one inference forward (eval mode,
no_grad). That is what PyTorch's caching allocator handed out, not what it reserved from the driver
(also reported). On a device without these counters (the CPU) the figures are null.
"""
import argparse, importlib.util, json

import torch
from torch import nn

ap = argparse.ArgumentParser()
ap.add_argument("--models-py", required=True, help="the path of pytorch_models.py")
ap.add_argument("--model", nargs="+", default=["tudui", "cifar-net", "resnet20"])
ap.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256, 1024])
ap.add_argument("--device", default="cuda")
ap.add_argument("--json")
a = ap.parse_args()

spec = importlib.util.spec_from_file_location("pytorch_models", a.models_py)
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)
dev = torch.device(a.device)
cuda = dev.type == "cuda"


def peak(fn):
    """Peak (allocated, reserved) bytes while fn runs, or (None, None) without CUDA's counters."""
    if not cuda:
        fn()
        return None, None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()


rows = []
mib = lambda b: "-" if b is None else f"{b / 2**20:.1f}"
print(f"{'model':10s} {'batch':>5s} {'train peak MiB':>15s} {'infer peak MiB':>15s} {'reserved MiB':>13s}")
for name in a.model:
    torch.manual_seed(0)
    model = peers.MODELS[name]().to(dev)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for bs in a.batch_sizes:
        g = torch.Generator().manual_seed(bs)
        x = (torch.randint(0, 256, (bs, 3, 32, 32), generator=g).float() / 255).to(dev)
        y = torch.randint(0, 10, (bs,), generator=g).to(dev)

        def train():
            model.train()
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

        def infer():
            model.eval()
            with torch.no_grad():
                model(x)

        train()
        train_peak, train_reserved = peak(train)
        infer()
        infer_peak, _ = peak(infer)
        rows.append(dict(model=name, batch=bs, train_peak_bytes=train_peak, infer_peak_bytes=infer_peak,
                         train_reserved_bytes=train_reserved))
        print(f"{name:10s} {bs:5d} {mib(train_peak):>15s} {mib(infer_peak):>15s} {mib(train_reserved):>13s}", flush=True)
        del x, y
    del model, opt
    if cuda:
        torch.cuda.empty_cache()
if a.json:
    with open(a.json, "w") as f:
        json.dump(dict(torch=torch.__version__, device=a.device, rows=rows), f, indent=1)
