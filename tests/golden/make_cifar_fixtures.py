#!/usr/bin/env python3
"""Writes small CIFAR-10 fixtures into tests/data/cifar10/, the same random data in three forms:

  bin/cifar-10-batches-bin/   the binary layout (records of 1 label + 3072 pixel bytes)
  py2/cifar-10-batches-py/    pickles as Python 2 wrote the official files (py2 `str` keys and
                              array bytes: SHORT_BINSTRING/BINSTRING opcodes)
  py3/cifar-10-batches-py/    the same dicts re-saved by Python 3 (pickle protocol 2: bytes go
                              through _codecs.encode)

    python3 tests/golden/make_cifar_fixtures.py     # needs numpy; CI does not run it
Each py2 file is checked by loading it back with Python's own pickle (encoding='bytes').
"""
import os
import pickle
import struct

import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), '..', 'data', 'cifar10')
PER_FILE = 7
NAMES = [b'airplane', b'automobile', b'bird', b'cat', b'deer', b'dog', b'frog', b'horse', b'ship', b'truck']


def s(b):
    """A Python 2 str: SHORT_BINSTRING or BINSTRING."""
    return (b'U' + bytes([len(b)]) if len(b) < 256 else b'T' + struct.pack('<I', len(b))) + b


def py2_pickle(label, labels, data):
    n = data.shape[0]
    out = bytearray(b'\x80\x02}(')  # PROTO 2, EMPTY_DICT, MARK
    out += s(b'batch_label') + s(label)
    out += s(b'labels') + b'](' + b''.join(b'K' + bytes([l]) for l in labels) + b'e'
    out += s(b'data') + b'cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85' + s(b'b') + b'\x87R('
    out += b'K\x01M' + struct.pack('<H', n) + b'M' + struct.pack('<H', 3072) + b'\x86'
    out += b'cnumpy\ndtype\n' + s(b'u1') + b'K\x00K\x01\x87R(K\x03' + s(b'|') + b'NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb'
    out += b'\x89' + s(data.tobytes()) + b'tb'
    out += b'u.'  # SETITEMS, STOP
    return bytes(out)


def main():
    rng = np.random.default_rng(0)
    files = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    dirs = {k: os.path.join(ROOT, k, 'cifar-10-batches-' + ('bin' if k == 'bin' else 'py')) for k in ('bin', 'py2', 'py3')}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    for f in files:
        data = rng.integers(0, 256, (PER_FILE, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, PER_FILE)]
        with open(os.path.join(dirs['bin'], f + '.bin'), 'wb') as fh:
            for l, row in zip(labels, data):
                fh.write(bytes([l]) + row.tobytes())
        raw = py2_pickle(f.encode(), labels, data)
        back = pickle.loads(raw, encoding='bytes')
        assert back[b'labels'] == labels and np.array_equal(back[b'data'], data) and back[b'data'].dtype == np.uint8
        with open(os.path.join(dirs['py2'], f), 'wb') as fh:
            fh.write(raw)
        with open(os.path.join(dirs['py3'], f), 'wb') as fh:
            pickle.dump({b'batch_label': f.encode(), b'labels': labels, b'data': data, b'filenames': [b'x.png'] * PER_FILE}, fh, protocol=2)
    with open(os.path.join(dirs['bin'], 'batches.meta.txt'), 'wb') as fh:
        fh.write(b'\n'.join(NAMES) + b'\n')
    for k in ('py2', 'py3'):
        with open(os.path.join(dirs[k], 'batches.meta'), 'wb') as fh:
            pickle.dump({b'label_names': NAMES, b'num_cases_per_batch': PER_FILE, b'num_vis': 3072}, fh, protocol=2)
    print('fixtures written to', os.path.abspath(ROOT))


if __name__ == '__main__':
    main()
