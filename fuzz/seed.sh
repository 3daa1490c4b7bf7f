#!/usr/bin/env bash
# Seeds each fuzz target's corpus (fuzz/corpus/<target>) with valid inputs from tests/data.
set -euo pipefail
cd "$(dirname "$0")"
d=../tests/data
mkdir -p corpus/{cifar_bin,cifar_pickle,idx_gz,safetensors,image,pytorch}
cp $d/cifar10/bin/cifar-10-batches-bin/test_batch.bin corpus/cifar_bin/
cp $d/cifar10/py2/cifar-10-batches-py/test_batch corpus/cifar_pickle/py2_test_batch
cp $d/cifar10/py3/cifar-10-batches-py/test_batch corpus/cifar_pickle/py3_test_batch
cp $d/cifar10/py2/cifar-10-batches-py/batches.meta corpus/cifar_pickle/meta
cp $d/second_init.safetensors $d/second_batch.safetensors corpus/safetensors/
cp $d/fuzz/*.idx.gz corpus/idx_gz/
cp $d/fuzz/small.* corpus/image/
cp $d/torch/residual_state_dict.pth $d/torch/residual_legacy.pth $d/torch/residual_half.pth $d/torch/mask.pth \
   $d/torch/expanded.pth corpus/pytorch/
