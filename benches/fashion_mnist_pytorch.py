#!/usr/bin/env python3
"""PyTorch's side of the Fashion-MNIST comparison: Tudui, 1 epoch, batch 64, SGD lr 0.01 momentum 0.9,
on the same data as `wgrad train --dataset fashion-mnist` (28×28 zero-padded to 32×32, channel
replicated, ToTensor, shuffled), then test accuracy.

    python3 benches/fashion_mnist_pytorch.py [--threads 2] [--epochs 1]
"""
import argparse, gzip, os, time
from collections import OrderedDict
import numpy as np
import torch
from torch import nn

DIR = '/usr/share/datasets/fashion-mnist'


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
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = nn.Sequential(OrderedDict([
        ('conv1', nn.Conv2d(3, 32, 5, padding=2)), ('pool1', nn.MaxPool2d(2)),
        ('conv2', nn.Conv2d(32, 32, 5, padding=2)), ('pool2', nn.MaxPool2d(2)),
        ('conv3', nn.Conv2d(32, 64, 5, padding=2)), ('pool3', nn.MaxPool2d(2)),
        ('flatten', nn.Flatten()), ('fc1', nn.Linear(1024, 64)), ('fc2', nn.Linear(64, 10))]))
    xtr, ytr = load('train')
    xte, yte = load('t10k')
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(a.epochs):
        t0 = time.time()
        perm = torch.randperm(len(xtr))
        total, n = 0.0, 0
        for i in range(0, len(xtr) - 63, 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            total += loss.item()
            n += 1
        with torch.no_grad():
            logits = torch.cat([model(xte[i:i + 256]) for i in range(0, len(xte), 256)])
        acc = (logits.argmax(1) == yte).float().mean().item()
        test_loss = loss_fn(logits, yte).item()
        print(f'epoch {epoch + 1}: train loss {total / n:.4f}  test loss {test_loss:.4f}  test accuracy {100 * acc:.2f}%  {time.time() - t0:.1f} s')


if __name__ == '__main__':
    main()
