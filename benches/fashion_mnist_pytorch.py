#!/usr/bin/env python3
"""PyTorch's side of the Fashion-MNIST comparison (benches/fashion_mnist.sh runs both sides): a
model trained for some epochs on the same data as `wgrad train --dataset fashion-mnist` (28×28
zero-padded to 32×32, channel replicated, ToTensor, shuffled, last partial batch dropped), then
test accuracy. The networks are tests/golden/make_goldens.py's, the ones the goldens come from.

    python3 benches/fashion_mnist_pytorch.py --model cifar-net --optimizer adam --lr 1e-3 --seed 0

With --start-dir D (one epoch), the run's initial state dict (D/init.safetensors), its shuffled
order (D/order.bin, int64) and its per-step losses (D/pytorch_losses.txt) are written there, for
benches/fashion_mnist_matched.rs to train wgrad from the same start over the same batches.
"""
import argparse, gzip, json, os, sys, time
import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests', 'golden'))
from make_goldens import CifarNet, ResNet20, Tudui  # noqa: E402

DIR = '/usr/share/datasets/fashion-mnist'
MODELS = {'tudui': Tudui, 'cifar-net': CifarNet, 'resnet20': ResNet20}


def load(prefix):
    with gzip.open(os.path.join(DIR, f'{prefix}-images-idx3-ubyte.gz')) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(DIR, f'{prefix}-labels-idx1-ubyte.gz')) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    x = torch.from_numpy(np.repeat(x[:, None], 3, axis=1).astype(np.float32) / 255)
    return x, torch.from_numpy(y.astype(np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default='tudui', choices=list(MODELS))
    ap.add_argument('--optimizer', default='sgd', choices=['sgd', 'adam'])
    ap.add_argument('--lr', type=float, default=0.01)
    ap.add_argument('--momentum', type=float, default=0.0)
    ap.add_argument('--weight-decay', type=float, default=0.0)
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--json', action='store_true', help='print one JSON line with the last epoch')
    ap.add_argument('--start-dir', help='write the initial state dict, the order and the losses here (1 epoch)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = MODELS[a.model]()
    if a.start_dir:
        from safetensors.torch import save_file
        os.makedirs(a.start_dir, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(a.start_dir, 'init.safetensors'))
    step_losses = []
    xtr, ytr = load('train')
    xte, yte = load('t10k')
    opt = (torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
           if a.optimizer == 'sgd' else torch.optim.Adam(model.parameters(), lr=a.lr, weight_decay=a.weight_decay))
    loss_fn = nn.CrossEntropyLoss()
    bs = a.batch_size
    for epoch in range(a.epochs):
        t0 = time.time()
        model.train()
        perm = torch.randperm(len(xtr))
        if a.start_dir:
            perm.numpy().astype('<i8').tofile(os.path.join(a.start_dir, 'order.bin'))
        total, n = 0.0, 0
        for i in range(0, len(xtr) - bs + 1, bs):
            idx = perm[i:i + bs]
            opt.zero_grad()
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            total += loss.item()
            step_losses.append(loss.item())
            n += 1
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(xte[i:i + 256]) for i in range(0, len(xte), 256)])
        acc = (logits.argmax(1) == yte).float().mean().item()
        test_loss = loss_fn(logits, yte).item()
        secs = time.time() - t0
        if a.start_dir:
            with open(os.path.join(a.start_dir, 'pytorch_losses.txt'), 'w') as f:
                f.write(''.join(f'{v!r}\n' for v in step_losses))
        if a.json:
            if epoch == a.epochs - 1:
                print(json.dumps(dict(model=a.model, seed=a.seed, test_accuracy=acc, test_loss=test_loss, seconds=secs)))
        else:
            print(f'epoch {epoch + 1}: train loss {total / n:.4f}  test loss {test_loss:.4f}  test accuracy {100 * acc:.2f}%  {secs:.1f} s')


if __name__ == '__main__':
    main()
