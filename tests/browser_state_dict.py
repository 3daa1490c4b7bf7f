#!/usr/bin/env python3
"""Loads the state dicts the browser page produced (tests/browser.rs keeps them in target/browser/,
one per model: <model>.safetensors) into the PyTorch modules with strict=True, and runs a forward
pass on the synthetic set's first images in eval mode. Needs torch and safetensors; CI does not.

    python3 tests/browser_state_dict.py target/browser
"""
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), 'golden'))
from make_goldens import CifarNet, ResNet20, Tudui  # noqa: E402

MODELS = {'tudui': Tudui, 'cifar-net': CifarNet, 'resnet20': ResNet20}


def main(folder):
    found = 0
    for name, make in MODELS.items():
        path = os.path.join(folder, f'{name}.safetensors')
        if not os.path.exists(path):
            print(f'{name}: no {path}')
            continue
        model = make()
        model.load_state_dict(load_file(path), strict=True)
        model.eval()
        with torch.no_grad():
            logits = model(torch.rand(4, 3, 32, 32))
        assert logits.shape == (4, 10) and torch.isfinite(logits).all(), logits
        print(f'{name}: {path} loads with strict=True ({sum(p.numel() for p in model.parameters())} parameters)')
        found += 1
    if found == 0:
        sys.exit(f'no state dicts in {folder}')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'target/browser')
