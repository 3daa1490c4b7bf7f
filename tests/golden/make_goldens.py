#!/usr/bin/env python3
"""Writes PyTorch goldens into tests/data/ (safetensors), which the Rust tests compare against.

    python3 tests/golden/make_goldens.py        # needs torch and safetensors; CI does not run it
    python3 tests/golden/make_goldens.py activations pools   # only those functions' files

Each file holds, per case, the inputs, the options (as JSON in the metadata under the case's name),
the outputs and every gradient. The Tudui files are exactly what `wgrad check` reads and writes:
a state dict (tudui_init.safetensors), batches with `images` (f32) and `targets` (i64), and the
expected output with logits.i, loss.i, grad.i.<key> and param.i.<key> after each SGD step.
"""
import json
import os
from collections import OrderedDict

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), '..', 'data')
torch.manual_seed(0)


def save(name, tensors, meta):
    tensors = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(OUT, name), metadata={k: json.dumps(v) for k, v in meta.items()})


def losses():
    t, m = {}, {}

    def case(name, op, inp, tgt, fn, opts, weight=None, grad_tgt=False):
        inp = inp.clone().requires_grad_(True)
        out = fn(inp)
        dout = torch.randn_like(out) if out.dim() > 0 else torch.tensor(1.0)
        out.backward(dout)
        t[f'{name}.inp'], t[f'{name}.out'], t[f'{name}.dout'], t[f'{name}.dinp'] = inp, out, dout, inp.grad
        if tgt is not None:
            t[f'{name}.tgt'] = tgt
        if weight is not None:
            t[f'{name}.weight'] = weight
        m[name] = dict(op=op, **opts)

    # The tutorial's cells.
    x = torch.tensor([1., 2., 3.]).reshape(1, 3)
    y = torch.tensor([1., 2., 5.]).reshape(1, 3)
    for red in ('sum', 'mean', 'none'):
        case(f'tutorial_l1_{red}', 'l1', x, y, lambda i: nn.L1Loss(reduction=red)(i, y), dict(reduction=red))
        case(f'tutorial_mse_{red}', 'mse', x, y, lambda i: nn.MSELoss(reduction=red)(i, y), dict(reduction=red))
    logits = torch.tensor([[0.1, 0.2, 0.3]])
    tgt = torch.tensor([1])
    case('tutorial_ce', 'cross_entropy', logits, tgt, lambda i: nn.CrossEntropyLoss()(i, tgt), {})

    # Random cases; ties (x == y) exercise L1's zero gradient.
    x = torch.randn(4, 5)
    y = torch.randn(4, 5)
    y[0, :3] = x[0, :3]
    for red in ('none', 'sum', 'mean'):
        case(f'l1_{red}', 'l1', x, y, lambda i: F.l1_loss(i, y, reduction=red), dict(reduction=red))
        case(f'mse_{red}', 'mse', x, y, lambda i: F.mse_loss(i, y, reduction=red), dict(reduction=red))
    for shape in [(3, 5), (2, 4, 3, 2)]:
        name = 'log_softmax_' + 'x'.join(map(str, shape))
        case(name, 'log_softmax', torch.randn(*shape) * 3, None, lambda i: F.log_softmax(i, 1), {})

    def nll_cases(prefix, op, logits, tgt, C, fn):
        w = torch.rand(C) + 0.5
        for red in ('none', 'sum', 'mean'):
            case(f'{prefix}_{red}', op, logits, tgt, lambda i: fn(i, tgt, None, -100, red, 0.0), dict(reduction=red))
            case(f'{prefix}_w_{red}', op, logits, tgt, lambda i: fn(i, tgt, w, -100, red, 0.0), dict(reduction=red), weight=w)
        return w

    tgt = torch.tensor([0, 3, -100, 2, 1, -100])
    logits = torch.randn(6, 4)
    nll = lambda i, t, w, ig, red, ls: F.nll_loss(F.log_softmax(i, 1), t, weight=w, ignore_index=ig, reduction=red)
    nll_cases('nll', 'nll_on_log_softmax', logits, tgt, 4, nll)
    ce = lambda i, t, w, ig, red, ls: F.cross_entropy(i, t, weight=w, ignore_index=ig, reduction=red, label_smoothing=ls)
    nll_cases('ce', 'cross_entropy', logits, tgt, 4, ce)
    w = torch.rand(4) + 0.5
    for red in ('none', 'sum', 'mean'):
        case(f'ce_smooth_{red}', 'cross_entropy', logits, tgt,
             lambda i: F.cross_entropy(i, tgt, weight=w, reduction=red, label_smoothing=0.1),
             dict(reduction=red, label_smoothing=0.1), weight=w)
    # ignore_index other than -100, 4-D input (N, C, H, W).
    logits4 = torch.randn(2, 3, 4, 5)
    tgt4 = torch.randint(0, 3, (2, 4, 5))
    case('ce_4d_ignore1_smooth', 'cross_entropy', logits4, tgt4,
         lambda i: F.cross_entropy(i, tgt4, ignore_index=1, label_smoothing=0.25),
         dict(reduction='mean', ignore_index=1, label_smoothing=0.25))
    case('nll_4d_ignore1', 'nll_on_log_softmax', logits4, tgt4,
         lambda i: F.nll_loss(F.log_softmax(i, 1), tgt4, ignore_index=1), dict(reduction='mean', ignore_index=1))
    # Class-probability targets.
    probs = torch.softmax(torch.randn(6, 4), 1)
    for red in ('none', 'sum', 'mean'):
        case(f'ce_prob_{red}', 'cross_entropy', logits, probs,
             lambda i: F.cross_entropy(i, probs, weight=w, reduction=red, label_smoothing=0.2),
             dict(reduction=red, label_smoothing=0.2, prob=True), weight=w)
    save('losses.safetensors', t, m)


def layers():
    t, m = {}, {}

    def conv(name, N, IC, OC, H, W, k, stride=1, padding=0, dilation=1, bias=True):
        c = nn.Conv2d(IC, OC, k, stride=stride, padding=padding, dilation=dilation, bias=bias)
        x = torch.randn(N, IC, H, W, requires_grad=True)
        y = c(x)
        dy = torch.randn_like(y)
        y.backward(dy)
        t.update({f'{name}.inp': x, f'{name}.weight': c.weight, f'{name}.out': y, f'{name}.dout': dy,
                  f'{name}.dinp': x.grad, f'{name}.dweight': c.weight.grad})
        if bias:
            t[f'{name}.bias'], t[f'{name}.dbias'] = c.bias, c.bias.grad
        pair = lambda v: list(v) if isinstance(v, tuple) else [v, v]
        m[name] = dict(op='conv2d', in_channels=IC, out_channels=OC, kernel=pair(k), stride=pair(stride),
                       padding=pair(padding), dilation=pair(dilation), bias=bias)

    conv('conv_7x9_k3_p1', 2, 3, 4, 7, 9, 3, padding=1)
    conv('conv_8x8_k5_s2_p2_nobias', 1, 2, 3, 8, 8, 5, stride=2, padding=2, bias=False)
    conv('conv_9x7_k3_s2_d2', 2, 3, 5, 9, 7, 3, stride=2, dilation=2)
    conv('conv_6x6_k1', 3, 1, 2, 6, 6, 1)
    conv('conv_7x10_k3x5_s1x2_p1x2', 2, 2, 3, 7, 10, (3, 5), stride=(1, 2), padding=(1, 2))
    conv('conv_tudui2', 2, 32, 32, 16, 16, 5, padding=2)

    def pool(name, x, k, stride=None, padding=0, dilation=1, ceil_mode=False):
        x = x.clone().requires_grad_(True)
        y, idx = F.max_pool2d(x, k, stride, padding, dilation, ceil_mode, return_indices=True)
        dy = torch.randn_like(y)
        y.backward(dy)
        t.update({f'{name}.inp': x, f'{name}.out': y, f'{name}.indices': idx, f'{name}.dout': dy,
                  f'{name}.dinp': x.grad})
        pair = lambda v: list(v) if isinstance(v, tuple) else [v, v]
        m[name] = dict(op='maxpool2d', kernel=pair(k), stride=pair(stride if stride is not None else k),
                       padding=pair(padding), dilation=pair(dilation), ceil_mode=ceil_mode)

    pool('pool_k2', torch.randn(2, 3, 8, 8), 2)
    pool('pool_ties_k3_s2_p1', torch.randint(0, 3, (2, 2, 7, 7)).float(), 3, 2, 1)
    pool('pool_negative_k3_s1_p1', -torch.rand(1, 2, 5, 6) - 1, 3, 1, 1)
    pool('pool_ceil_k2_7x7', torch.randn(1, 2, 7, 7), 2, ceil_mode=True)
    pool('pool_ceil_k3_s2_p1_6x6', torch.randn(1, 2, 6, 6), 3, 2, 1, ceil_mode=True)
    pool('pool_ceil_k2_s2_5x5_edge', torch.randn(1, 1, 5, 5), 2, 2, 1, ceil_mode=True)
    pool('pool_d2_k3_9x9', torch.randn(2, 2, 9, 9), 3, 1, 0, 2)

    def linear(name, N, IN, OUT):
        l = nn.Linear(IN, OUT)
        x = torch.randn(N, IN, requires_grad=True)
        y = l(x)
        dy = torch.randn_like(y)
        y.backward(dy)
        t.update({f'{name}.inp': x, f'{name}.weight': l.weight, f'{name}.bias': l.bias, f'{name}.out': y,
                  f'{name}.dout': dy, f'{name}.dinp': x.grad, f'{name}.dweight': l.weight.grad,
                  f'{name}.dbias': l.bias.grad})
        m[name] = dict(op='linear', in_features=IN, out_features=OUT)

    linear('linear_5x7_3', 5, 7, 3)
    linear('linear_3x1024_64', 3, 1024, 64)
    save('layers.safetensors', t, m)


class Tudui(nn.Module):
    def __init__(self):
        super().__init__()
        self.model1 = nn.Sequential(OrderedDict([
            ('conv1', nn.Conv2d(3, 32, 5, padding=2)), ('pool1', nn.MaxPool2d(2)),
            ('conv2', nn.Conv2d(32, 32, 5, padding=2)), ('pool2', nn.MaxPool2d(2)),
            ('conv3', nn.Conv2d(32, 64, 5, padding=2)), ('pool3', nn.MaxPool2d(2)),
            ('flatten', nn.Flatten()), ('fc1', nn.Linear(1024, 64)), ('fc2', nn.Linear(64, 10))]))

    def forward(self, x):
        return self.model1(x)


def tudui():
    """Three SGD steps (lr 0.01, momentum 0.9, weight decay 5e-4) on batches of 8."""
    model = Tudui()
    save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, os.path.join(OUT, 'tudui_init.safetensors'))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    expected = {}
    for i in (1, 2, 3):
        images = torch.randint(0, 256, (8, 3, 32, 32)).float() / 255
        targets = torch.randint(0, 10, (8,))
        save_file({'images': images, 'targets': targets}, os.path.join(OUT, f'tudui_batch{i}.safetensors'))
        opt.zero_grad()
        logits = model(images)
        loss = F.cross_entropy(logits, targets)
        loss.backward()
        expected[f'logits.{i}'] = logits.detach().clone()
        expected[f'loss.{i}'] = loss.detach().clone()
        for k, p in model.named_parameters():
            expected[f'grad.{i}.{k}'] = p.grad.detach().clone()
        opt.step()
        for k, p in model.named_parameters():
            expected[f'param.{i}.{k}'] = p.detach().clone()
    save_file(expected, os.path.join(OUT, 'tudui_sgd_expected.safetensors'),
              metadata=dict(lr='0.01', momentum='0.9', weight_decay='0.0005', torch=torch.__version__))


def second_net():
    """A network unlike Tudui (one input channel, stride, ceil_mode, dilation, no bias) for the
    executor tests: state dict, one batch, logits, loss and every gradient."""
    net = nn.Module()
    net.net = nn.Sequential(OrderedDict([
        ('c1', nn.Conv2d(1, 4, 3, stride=2, padding=1)),
        ('p1', nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
        ('c2', nn.Conv2d(4, 6, (3, 1), dilation=(2, 1), bias=False)),
        ('flat', nn.Flatten()),
        ('fc', nn.Linear(6 * 2 * 6, 7)),
        ('out', nn.Linear(7, 5))]))
    save_file({k: v.clone().contiguous() for k, v in net.state_dict().items()}, os.path.join(OUT, 'second_init.safetensors'))
    images = torch.randn(3, 1, 20, 20)
    targets = torch.tensor([4, 0, 2])
    save_file({'images': images, 'targets': targets}, os.path.join(OUT, 'second_batch.safetensors'))
    logits = net.net(images)
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    expected = {'logits.1': logits.detach().clone(), 'loss.1': loss.detach().clone()}
    for k, p in net.named_parameters():
        expected[f'grad.1.{k}'] = p.grad.detach().clone()
    save_file(expected, os.path.join(OUT, 'second_expected.safetensors'))


def relu_add():
    """ReLU (with exact zeros, whose gradient is 0, and a NaN) and Add."""
    torch.manual_seed(1)
    t, m = {}, {}
    for name, x in [('relu_4d', torch.randn(2, 3, 4, 5)), ('relu_zeros_nan', torch.tensor([[-1., 0., 2., float('nan'), 0., -0.5]]))]:
        x = x.clone().requires_grad_(True)
        y = F.relu(x)
        dy = torch.randn_like(y)
        y.backward(dy)
        t.update({f'{name}.inp': x, f'{name}.out': y, f'{name}.dout': dy, f'{name}.dinp': x.grad})
        m[name] = dict(op='relu')
    a = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = a + b
    dy = torch.randn_like(y)
    y.backward(dy)
    t.update({'add.a': a, 'add.b': b, 'add.out': y, 'add.dout': dy, 'add.da': a.grad, 'add.db': b.grad})
    m['add'] = dict(op='add')
    save('relu_add.safetensors', t, m)


def activations():
    """The pointwise activations with their defaults and other arguments, on normal values and on
    both tails (where exp overflows, and GELU's and Sigmoid's values are tiny)."""
    torch.manual_seed(2)
    t, m = {}, {}
    modules = [nn.LeakyReLU(), nn.LeakyReLU(0.2), nn.ELU(), nn.ELU(alpha=0.5), nn.GELU(),
               nn.GELU(approximate='tanh'), nn.SiLU(), nn.Sigmoid(), nn.Tanh()]
    tails = torch.tensor([[-100., -30., -9., -3., -1e-3, 0., 1e-3, 0.5, 3., 9., 30., 100.]])
    for i, mod in enumerate(modules):
        for kind, x in [('4d', torch.randn(2, 3, 4, 5) * 3), ('tails', tails)]:
            name = f'{type(mod).__name__.lower()}{i}_{kind}'
            x = x.clone().requires_grad_(True)
            y = mod(x)
            dy = torch.randn_like(y)
            y.backward(dy)
            t.update({f'{name}.inp': x, f'{name}.out': y, f'{name}.dout': dy, f'{name}.dinp': x.grad})
            m[name] = dict(op='activation', repr=repr(mod))
    save('activations.safetensors', t, m)


def batchnorm_case(t, m, name, layer, shape, train, scale=1.0, offset=0.0, **kw):
    """One BatchNorm case: the layer (nn.BatchNorm2d or nn.BatchNorm1d) with random affine
    parameters and running statistics, called on a random input in train or eval mode."""
    bn = layer(shape[1], **kw)
    with torch.no_grad():
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        if bn.track_running_stats:
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked.fill_(3)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    bn.train(train)
    x = (torch.randn(*shape) * scale + offset).requires_grad_(True)
    y = bn(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    t.update({f'{name}.inp': x, f'{name}.out': y, f'{name}.dout': dy, f'{name}.dinp': x.grad})
    for k, v in before.items():
        t[f'{name}.before.{k}'] = v
    for k, v in bn.state_dict().items():
        t[f'{name}.after.{k}'] = v
    if bn.affine:
        t[f'{name}.dweight'], t[f'{name}.dbias'] = bn.weight.grad, bn.bias.grad
    m[name] = dict(op=layer.__name__.lower(), num_features=shape[1], eps=bn.eps, momentum=bn.momentum,
                   affine=bn.affine, track_running_stats=bn.track_running_stats, train=train)


def batchnorm():
    """BatchNorm2d in train mode (batch statistics, running statistics updated), in eval mode
    (running statistics), without affine or running statistics, at a large N*H*W with a large mean
    (where a one-pass f32 variance loses every digit), and at batch 1."""
    torch.manual_seed(2)
    t, m = {}, {}

    def case(name, shape, train, **kw):
        batchnorm_case(t, m, name, nn.BatchNorm2d, shape, train, **kw)

    case('bn_train', (4, 3, 5, 6), True)
    case('bn_eval', (4, 3, 5, 6), False)
    case('bn_momentum_eps', (3, 2, 4, 4), True, momentum=0.3, eps=1e-3)
    case('bn_no_affine_no_stats', (5, 2, 3, 3), True, affine=False, track_running_stats=False)
    case('bn_no_stats_eval', (5, 2, 3, 3), False, track_running_stats=False)
    case('bn_batch1', (1, 2, 3, 3), True)
    case('bn_large_offset', (64, 2, 32, 32), True, scale=0.1, offset=10.0)
    save('batchnorm2d.safetensors', t, m)


def batchnorm1d():
    """BatchNorm1d on (N, C) and (N, C, L), in train and eval mode, without affine or running
    statistics, and with a large mean."""
    torch.manual_seed(3)
    t, m = {}, {}

    def case(name, shape, train, **kw):
        batchnorm_case(t, m, name, nn.BatchNorm1d, shape, train, **kw)

    case('bn1d_train', (8, 5), True)
    case('bn1d_eval', (8, 5), False)
    case('bn1d_train_ncl', (4, 3, 7), True)
    case('bn1d_eval_ncl', (4, 3, 7), False)
    case('bn1d_momentum_eps', (6, 4), True, momentum=0.3, eps=1e-3)
    case('bn1d_no_affine_no_stats', (5, 3), True, affine=False, track_running_stats=False)
    case('bn1d_large_offset', (256, 3), True, scale=0.1, offset=10.0)
    save('batchnorm1d.safetensors', t, m)


def group_norm():
    """GroupNorm: several groups, one group (LayerNorm over C, H, W with per-channel affine), one
    channel a group (InstanceNorm's), without affine, without bias, another eps, (N, C) and
    (N, C, L) inputs, and groups with a large mean (where a one-pass f32 variance loses every digit); LayerNorm (on
    GroupNorm's kernels) over one, two and three last dimensions, without affine or bias, another
    eps, and rows with a large mean; InstanceNorm2d (GroupNorm(C, C)) with and without affine and
    bias, another eps, and planes with a large mean; InstanceNorm1d and InstanceNorm3d."""
    torch.manual_seed(4)
    t, m = {}, {}

    def run(name, layer, shape, scale, offset, meta):
        """The layer with random affine parameters (those it has) on a random input: its output
        and every gradient, under `name`; `meta` describes it."""
        with torch.no_grad():
            if layer.weight is not None:
                layer.weight.uniform_(0.5, 1.5)
                t[f'{name}.weight'] = layer.weight
            if layer.bias is not None:
                layer.bias.uniform_(-0.5, 0.5)
                t[f'{name}.bias'] = layer.bias
        x = (torch.randn(*shape) * scale + offset).requires_grad_(True)
        y = layer(x)
        dy = torch.randn_like(y)
        y.backward(dy)
        t.update({f'{name}.inp': x, f'{name}.out': y, f'{name}.dout': dy, f'{name}.dinp': x.grad})
        if layer.weight is not None:
            t[f'{name}.dweight'] = layer.weight.grad
        if layer.bias is not None:
            t[f'{name}.dbias'] = layer.bias.grad
        m[name] = dict(eps=layer.eps, bias=layer.bias is not None, repr=repr(layer), **meta)

    def case(name, shape, groups, scale=1.0, offset=0.0, **kw):
        gn = nn.GroupNorm(groups, shape[1], **kw)
        run(name, gn, shape, scale, offset, dict(op='group_norm', num_groups=groups, num_channels=shape[1],
                                                 affine=gn.affine))

    case('gn_groups3', (2, 6, 4, 5), 3)
    case('gn_one_group', (3, 4, 3, 3), 1)
    case('gn_group_per_channel', (2, 4, 5, 5), 4)
    case('gn_no_affine', (2, 6, 3, 4), 2, affine=False)
    case('gn_no_bias', (2, 6, 3, 4), 3, bias=False)
    case('gn_eps', (2, 4, 3, 3), 2, eps=1e-3)
    case('gn_nc', (4, 6), 2)
    case('gn_ncl', (3, 4, 7), 2)
    case('gn_large_offset', (4, 8, 16, 16), 4, scale=0.1, offset=10.0)

    def layer_norm(name, shape, normalized, scale=1.0, offset=0.0, **kw):
        ln = nn.LayerNorm(normalized, **kw)
        run(name, ln, shape, scale, offset, dict(op='layer_norm', normalized_shape=list(ln.normalized_shape),
                                                 elementwise_affine=ln.elementwise_affine))

    layer_norm('ln_features', (4, 10), 10)
    layer_norm('ln_two_dims', (3, 4, 5), [4, 5])
    layer_norm('ln_last_dim', (2, 3, 6), 6)
    layer_norm('ln_chw', (2, 3, 4, 4), [3, 4, 4])
    layer_norm('ln_no_affine', (4, 8), 8, elementwise_affine=False)
    layer_norm('ln_no_bias', (4, 8), 8, bias=False)
    layer_norm('ln_eps', (4, 8), 8, eps=1e-3)
    layer_norm('ln_large_offset', (16, 256), 256, scale=0.1, offset=10.0)

    def instance_norm(name, shape, scale=1.0, offset=0.0, **kw):
        d = len(shape) - 2
        inorm = [nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d][d - 1](shape[1], **kw)
        run(name, inorm, shape, scale, offset, dict(op=f'instance_norm{d}d', num_features=shape[1], affine=inorm.affine))

    instance_norm('in_default', (2, 3, 5, 4))
    instance_norm('in_affine', (2, 4, 3, 3), affine=True)
    instance_norm('in_affine_no_bias', (2, 4, 3, 3), affine=True, bias=False)
    instance_norm('in_eps', (3, 2, 4, 4), eps=1e-3)
    instance_norm('in_large_offset', (4, 2, 16, 16), scale=0.1, offset=10.0)
    instance_norm('in1d_default', (3, 4, 9))
    instance_norm('in1d_affine', (2, 3, 7), affine=True)
    instance_norm('in3d_default', (2, 3, 3, 4, 5))
    instance_norm('in3d_affine_no_bias', (2, 2, 3, 3, 3), affine=True, bias=False)
    save('group_norm.safetensors', t, m)


def pools():
    """AvgPool2d (padding counted or not, ceil_mode, divisor_override) and AdaptiveAvgPool2d (1x1,
    output sizes that do not divide the input, larger than the input)."""
    torch.manual_seed(3)
    t, m = {}, {}
    pair = lambda v: list(v) if isinstance(v, tuple) else [v, v]

    def avg(name, shape, k, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
        x = torch.randn(*shape, requires_grad=True)
        y = F.avg_pool2d(x, k, stride, padding, ceil_mode, count_include_pad, divisor_override)
        dy = torch.randn_like(y)
        y.backward(dy)
        t.update({f'{name}.inp': x, f'{name}.out': y, f'{name}.dout': dy, f'{name}.dinp': x.grad})
        m[name] = dict(op='avgpool2d', kernel=pair(k), stride=pair(stride if stride is not None else k),
                       padding=pair(padding), ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                       divisor_override=divisor_override)

    avg('avg_k2', (2, 3, 8, 8), 2)
    avg('avg_k3_s2_p1', (2, 2, 7, 7), 3, 2, 1)
    avg('avg_k3_s2_p1_nopad', (2, 2, 7, 7), 3, 2, 1, count_include_pad=False)
    avg('avg_ceil_k3_s2_p1', (1, 2, 6, 6), 3, 2, 1, ceil_mode=True)
    avg('avg_ceil_nopad', (1, 2, 6, 6), 3, 2, 1, ceil_mode=True, count_include_pad=False)
    avg('avg_rect_divisor', (2, 1, 7, 9), (3, 2), (2, 3), (1, 1), divisor_override=5)

    def adaptive(name, shape, out):
        x = torch.randn(*shape, requires_grad=True)
        y = F.adaptive_avg_pool2d(x, out)
        dy = torch.randn_like(y)
        y.backward(dy)
        t.update({f'{name}.inp': x, f'{name}.out': y, f'{name}.dout': dy, f'{name}.dinp': x.grad})
        m[name] = dict(op='adaptive_avgpool2d', output_size=pair(out))

    adaptive('adaptive_1', (2, 4, 8, 8), 1)
    adaptive('adaptive_7x5_to_3x2', (2, 2, 7, 5), (3, 2))
    adaptive('adaptive_4_to_6', (1, 2, 4, 4), 6)
    adaptive('adaptive_6x6_to_2x3', (1, 3, 6, 6), (2, 3))
    save('pools.safetensors', t, m)


M32 = 0xffffffff


def _mix(x):
    x = x & M32
    x ^= x >> 16
    x = (x * 0x7feb352d) & M32
    x ^= x >> 15
    x = (x * 0x846ca68b) & M32
    x ^= x >> 16
    return x


def dropout_keep(key, step, n, p):
    """wgrad's Dropout mask (ops::interface::random_bits), written again here so the goldens pin it."""
    import numpy as np
    h = _mix(np.arange(n, dtype=np.uint64))
    h = _mix(h ^ np.uint64(step >> 32))
    h = _mix(h ^ np.uint64(step & M32))
    h = _mix(h ^ np.uint64(key[1]))
    h = _mix(h ^ np.uint64(key[0]))
    u = (h >> np.uint64(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    return torch.from_numpy(u >= np.float32(p))


def dropout():
    """Dropout(p) in train mode as PyTorch's formula with wgrad's mask: out = x * mask / (1 - p)."""
    torch.manual_seed(4)
    t, m = {}, {}
    for name, p, key, step in [('dropout_p05', 0.5, (12345, 678), 0), ('dropout_p02_step', 0.2, (7, 0), 2**32 + 5),
                               ('dropout_p1', 1.0, (1, 2), 3)]:
        x = torch.randn(3, 4, 5, 6, requires_grad=True)
        mask = dropout_keep(key, step, x.numel(), p).reshape(x.shape).float()
        y = x * mask / (1 - p) if p < 1 else x * mask
        dy = torch.randn_like(y)
        y.backward(dy)
        t.update({f'{name}.inp': x, f'{name}.out': y, f'{name}.dout': dy, f'{name}.dinp': x.grad})
        m[name] = dict(op='dropout', p=p, key=list(key), step=step)
    save('dropout.safetensors', t, m)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResidualNet(nn.Module):
    """A small ResNet: stem, an identity block and a projection block, global average pool, fc."""
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def residual():
    """Two SGD steps (lr 0.05, momentum 0.9, weight decay 5e-4) of ResidualNet on 3x8x8 batches of 4:
    logits, loss, every gradient, and every state-dict entry (running statistics included) after
    each step."""
    torch.manual_seed(5)
    model = ResidualNet()
    save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, os.path.join(OUT, 'residual_init.safetensors'))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    expected, batches = {}, {}
    model.train()
    for i in (1, 2):
        images = torch.randn(4, 3, 8, 8)
        targets = torch.randint(0, 10, (4,))
        batches[f'images.{i}'], batches[f'targets.{i}'] = images, targets
        opt.zero_grad()
        logits = model(images)
        loss = F.cross_entropy(logits, targets)
        loss.backward()
        expected[f'logits.{i}'] = logits.detach().clone()
        expected[f'loss.{i}'] = loss.detach().clone()
        for k, p in model.named_parameters():
            expected[f'grad.{i}.{k}'] = p.grad.detach().clone()
        opt.step()
        for k, v in model.state_dict().items():
            expected[f'param.{i}.{k}'] = v.detach().clone()
    model.eval()
    with torch.no_grad():
        expected['eval_logits'] = model(batches['images.1']).clone()
    save_file(batches, os.path.join(OUT, 'residual_batches.safetensors'))
    save_file(expected, os.path.join(OUT, 'residual_expected.safetensors'))


class CifarNet(nn.Module):
    """The network of PyTorch's "Training a Classifier" CIFAR-10 tutorial."""
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class ResNet20(nn.Module):
    """He et al. 2016, section 4.2: 3 stages x 3 basic blocks, 16/32/64 channels, projection shortcuts."""
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 16, 1), BasicBlock(16, 16, 1))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32, 1), BasicBlock(32, 32, 1))
        self.layer3 = nn.Sequential(BasicBlock(32, 64, 2), BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _batches(n):
    """The Tudui batches (8 images each) that `wgrad check` reads."""
    from safetensors.torch import load_file
    return [load_file(os.path.join(OUT, f'tudui_batch{i}.safetensors')) for i in range(1, n + 1)]


def _rel_l2(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def _steps(model, make_opt, n, init=None, save_state=False, clip=None):
    """`n` train-mode steps of `model` with the optimizer `make_opt(params)` on the Tudui batches,
    written as `wgrad check` writes them (logits.i, loss.i, grad.i.<key>, param.i.<key> for every
    state-dict entry). Each step is also taken in float64 from the same float32 state; the metadata
    `f32_error` gives, per tensor, PyTorch float32's relative L2 distance from that float64 result:
    how well float32 can be expected to agree at all (BatchNorm in train mode at initialisation
    amplifies rounding). With `save_state`, the optimizer's buffers after each step but the last go
    in as state.i.<name>.<key> (momentum, exp_avg, exp_avg_sq), so a test can start step i + 1 from
    PyTorch's own state. With `clip`, torch.nn.utils.clip_grad_norm_(parameters, clip) runs
    before each optimizer step: grad.i holds the clipped gradients, grad_norm.i the total norm it
    returned."""
    import copy
    if init is not None:
        save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, os.path.join(OUT, init))
    opt = make_opt(model.parameters())
    expected, errors = {}, {}
    model.train()
    for i, b in enumerate(_batches(n), 1):
        model64 = copy.deepcopy(model).double()
        opt64 = make_opt(model64.parameters())
        sd = copy.deepcopy(opt.state_dict())
        for st in sd['state'].values():
            for k, v in st.items():
                if torch.is_tensor(v) and v.is_floating_point() and k != 'step':
                    st[k] = v.double()
        opt64.load_state_dict(sd)
        for m, o, images in [(model, opt, b['images']), (model64, opt64, b['images'].double())]:
            o.zero_grad()
            m.train()
            logits = m(images)
            loss = F.cross_entropy(logits, b['targets'])
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(m.parameters(), clip) if clip is not None else None
            if m is model:
                if norm is not None:
                    expected[f'grad_norm.{i}'] = norm.detach().clone().float().reshape(())
                expected[f'logits.{i}'] = logits.detach().clone()
                expected[f'loss.{i}'] = loss.detach().clone()
                for k, p in model.named_parameters():
                    expected[f'grad.{i}.{k}'] = p.grad.detach().clone()
            else:
                errors[f'logits.{i}'] = _rel_l2(expected[f'logits.{i}'], logits.detach())
                if norm is not None:
                    errors[f'grad_norm.{i}'] = _rel_l2(expected[f'grad_norm.{i}'], norm.detach())
                for k, p in model64.named_parameters():
                    errors[f'grad.{i}.{k}'] = _rel_l2(expected[f'grad.{i}.{k}'], p.grad)
            o.step()
        for k, v in model.state_dict().items():
            expected[f'param.{i}.{k}'] = v.detach().clone()
        for k, v in model64.state_dict().items():
            if v.is_floating_point():
                errors[f'param.{i}.{k}'] = _rel_l2(expected[f'param.{i}.{k}'], v)
        if save_state and i < n:
            names = {'momentum_buffer': 'momentum', 'exp_avg': 'exp_avg', 'exp_avg_sq': 'exp_avg_sq'}
            for k, p in model.named_parameters():
                for sk, v in opt.state[p].items():
                    if sk in names:
                        expected[f'state.{i}.{names[sk]}.{k}'] = v.detach().clone()
    return expected, {'f32_error': json.dumps(errors)}


def models_and_optimizers():
    """cifar-net with SGD (momentum, weight decay) and resnet20 with SGD and with AdamW over 2
    steps; Tudui with Adam and with AdamW over 3 steps; resnet20's eval-mode logits and loss with
    the running statistics its SGD steps left."""
    def write(name, em):
        save_file(em[0], os.path.join(OUT, name), metadata=em[1])

    torch.manual_seed(6)
    net = CifarNet()
    write('cifar_net_sgd_expected.safetensors',
          _steps(net, lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=5e-4), 2, init='cifar_net_init.safetensors'))

    torch.manual_seed(7)
    net = ResNet20()
    init = {k: v.clone() for k, v in net.state_dict().items()}
    e, meta = _steps(net, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4), 2, init='resnet20_init.safetensors',
                     save_state=True)
    # Eval mode with the running statistics after two steps, on the third batch.
    net.eval()
    b = _batches(3)[2]
    with torch.no_grad():
        logits = net(b['images'])
    e['eval_logits'] = logits.clone()
    e['eval_loss'] = F.cross_entropy(logits, b['targets']).reshape(())
    write('resnet20_sgd_expected.safetensors', (e, meta))
    net.load_state_dict(init)
    write('resnet20_adamw_expected.safetensors',
          _steps(net, lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.05), 2, save_state=True))

    from safetensors.torch import load_file
    tudui_init = load_file(os.path.join(OUT, 'tudui_init.safetensors'))
    for name, make in [('adam', lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.8, 0.99), eps=1e-7, weight_decay=1e-3)),
                       ('adamw', lambda p: torch.optim.AdamW(p, lr=2e-3))]:
        model = Tudui()
        model.load_state_dict(tudui_init)
        write(f'tudui_{name}_expected.safetensors', _steps(model, make, 3))


def clip_grad_norm():
    """torch.nn.utils.clip_grad_norm_ on sets of gradients (the clipped gradients and the total
    norm it returns), and Tudui trained 3 steps with SGD (momentum) after clip_grad_norm_(0.5),
    which clips at every step."""
    torch.manual_seed(9)
    t, m = {}, {}
    cases = [('clipped', [1000, 37, 5000], 1.0, 0.5),
             ('not_clipped', [300, 3], 0.01, 10.0),
             ('one_tensor', [4099], 3.0, 2.0)]
    for name, sizes, scale, max_norm in cases:
        grads = [torch.randn(n) * scale for n in sizes]
        params = [torch.zeros(n, requires_grad=True) for n in sizes]
        for i, (p, g) in enumerate(zip(params, grads)):
            p.grad = g.clone()
            t[f'{name}.grad{i}'] = g
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        for i, p in enumerate(params):
            t[f'{name}.clipped{i}'] = p.grad.clone()
        t[f'{name}.total_norm'] = norm.reshape(1)
        m[name] = dict(op='clip_grad_norm_', max_norm=max_norm, tensors=len(sizes))
    save('clip_grad_norm.safetensors', t, m)

    from safetensors.torch import load_file
    model = Tudui()
    model.load_state_dict(load_file(os.path.join(OUT, 'tudui_init.safetensors')))
    e, meta = _steps(model, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), 3, clip=0.5)
    save_file(e, os.path.join(OUT, 'tudui_clip_expected.safetensors'), metadata=meta)


def schedules():
    """torch.optim.lr_scheduler's rates over 50 steps from a base rate of 0.1: CosineAnnealingLR,
    StepLR, MultiStepLR and ExponentialLR, two of them after a linear warmup (LinearLR from 1/W
    to 1 over W steps, then the schedule, in a SequentialLR: wgrad's --warmup-steps W)."""
    from torch.optim import lr_scheduler as S
    t, m = {}, {}
    cases = [('cosine', 5, lambda o: S.CosineAnnealingLR(o, T_max=45, eta_min=1e-3), dict(t_max=45, eta_min=1e-3)),
             ('step', 0, lambda o: S.StepLR(o, step_size=7, gamma=0.5), dict(step_size=7, gamma=0.5)),
             ('multistep', 3, lambda o: S.MultiStepLR(o, milestones=[10, 20, 20, 35], gamma=0.3),
              dict(milestones=[10, 20, 20, 35], gamma=0.3)),
             ('exponential', 0, lambda o: S.ExponentialLR(o, gamma=0.9), dict(gamma=0.9))]
    for name, warmup, make, kw in cases:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched = make(opt)
        if warmup:
            first = S.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1)
            sched = S.SequentialLR(opt, [first, make(opt)], milestones=[warmup])
        lrs = []
        for _ in range(50):
            lrs.append(opt.param_groups[0]['lr'])
            opt.step()
            sched.step()
        t[f'{name}.lr'] = torch.tensor(lrs, dtype=torch.float32)
        m[name] = dict(op='lr_scheduler', kind=name, warmup_steps=warmup, base_lr=0.1, **kw)
    save('schedules.safetensors', t, m)


def optimizers():
    """torch.optim.SGD (momentum, dampening, nesterov, weight decay), Adam and AdamW on one tensor
    over three steps with given gradients: the parameter after each step."""
    torch.manual_seed(8)
    t, m = {}, {}
    cases = [('sgd_plain', 'sgd', dict(lr=0.1)),
             ('sgd_momentum_dampening', 'sgd', dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2)),
             ('sgd_nesterov', 'sgd', dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=5e-4)),
             ('adam', 'adam', dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=1e-2)),
             ('adamw', 'adamw', dict(lr=1e-2, weight_decay=0.1))]
    for name, kind, kw in cases:
        p = torch.randn(1000, requires_grad=True)
        t[f'{name}.param0'] = p.detach().clone()
        opt = {'sgd': torch.optim.SGD, 'adam': torch.optim.Adam, 'adamw': torch.optim.AdamW}[kind]([p], **kw)
        for i in (1, 2, 3):
            g = torch.randn(1000) * (0.1 if i == 2 else 1.0)
            g[:10] = 0.0
            t[f'{name}.grad{i}'] = g
            p.grad = g.clone()
            opt.step()
            t[f'{name}.param{i}'] = p.detach().clone()
        m[name] = dict(op=kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()})
    save('optimizers.safetensors', t, m)


def torch_files():
    """State dicts as `torch.save` writes them, into tests/data/torch/, for wgrad's reader of
    PyTorch's own files: each holds the entries of residual_init.safetensors (or
    cifar_net_init.safetensors), which wgrad must read back equal (the f16 file: their f16
    rounding).

    residual_state_dict.pth      torch.save(model.state_dict()): the ZIP archive of PyTorch >= 1.6
    residual_legacy.pth          the same, _use_new_zipfile_serialization=False (the format before 1.6)
    residual_checkpoint.pth      a training checkpoint: {'epoch', 'model_state_dict',
                                 'optimizer_state_dict' (SGD momentum buffers), 'loss'}, with
                                 fc.weight stored transposed (a strided view of its storage)
    residual_model.pth           torch.save(model): the whole module, as PyTorch's tutorials save it
    residual_half.pth            model.half().state_dict(): f16 (num_batches_tracked stays int64)
    residual_data_parallel.pth   nn.DataParallel(model).state_dict(): every key under 'module.'
    residual_sequential.pth      the same layers in an nn.Sequential(*layers), whose children PyTorch
                                 names by position ('0.weight', '3.1.downsample.0.weight'), saved
                                 whole (torch.save(seq)), as the tutorial's Tudui is
    cifar_net.pth                cifar-net's initial state dict, for `wgrad eval` and `predict`
    tudui_batch1.pt              the first Tudui batch ({'images', 'targets'}), for `wgrad check`
    two_models.pth               {'model': state dict, 'ema': state dict}: which one is meant is not
                                 wgrad's guess to make
    mask.pth                     a bool and an int32 tensor beside a float one, which no state dict
                                 of wgrad's holds
    expanded.pth                 one float expanded to 10^9 (a view of stride 0): 4 GB to read from a
                                 file of 1.5 KB
    """
    from safetensors.torch import load_file
    out = os.path.join(OUT, 'torch')
    os.makedirs(out, exist_ok=True)
    model = ResidualNet()
    model.load_state_dict(load_file(os.path.join(OUT, 'residual_init.safetensors')))
    sd = model.state_dict()
    torch.save(sd, os.path.join(out, 'residual_state_dict.pth'))
    torch.save(sd, os.path.join(out, 'residual_legacy.pth'), _use_new_zipfile_serialization=False)
    moved = ResidualNet()
    moved.load_state_dict(sd)
    opt = torch.optim.SGD(moved.parameters(), lr=0.05, momentum=0.9)
    batch = load_file(os.path.join(OUT, 'residual_batches.safetensors'))
    F.cross_entropy(moved(batch['images.1']), batch['targets.1']).backward()
    opt.step()
    weights = OrderedDict(sd)
    weights['fc.weight'] = sd['fc.weight'].t().contiguous().t()
    assert not weights['fc.weight'].is_contiguous()
    torch.save({'epoch': 1, 'model_state_dict': weights, 'optimizer_state_dict': opt.state_dict(), 'loss': 2.3},
               os.path.join(out, 'residual_checkpoint.pth'))
    torch.save(model, os.path.join(out, 'residual_model.pth'))
    half = ResidualNet()
    half.load_state_dict(sd)
    torch.save(half.half().state_dict(), os.path.join(out, 'residual_half.pth'))
    torch.save(nn.DataParallel(model).state_dict(), os.path.join(out, 'residual_data_parallel.pth'))
    seq = nn.Sequential(model.conv1, model.bn1, model.relu, model.layer1, model.avgpool, nn.Flatten(), model.fc)
    assert '3.1.downsample.0.weight' in seq.state_dict()
    torch.save(seq, os.path.join(out, 'residual_sequential.pth'))
    torch.save(load_file(os.path.join(OUT, 'cifar_net_init.safetensors')), os.path.join(out, 'cifar_net.pth'))
    torch.save(_batches(1)[0], os.path.join(out, 'tudui_batch1.pt'))
    torch.save({'model': sd, 'ema': sd}, os.path.join(out, 'two_models.pth'))
    torch.save({'weight': torch.ones(2), 'mask': torch.ones(3, dtype=torch.bool), 'ids': torch.arange(4, dtype=torch.int32)},
               os.path.join(out, 'mask.pth'))
    torch.save({'weight': torch.ones(1).expand(10**9)}, os.path.join(out, 'expanded.pth'))
    # What was written loads back in PyTorch as saved.
    back = torch.load(os.path.join(out, 'residual_checkpoint.pth'))['model_state_dict']
    assert all(torch.equal(back[k], v) for k, v in sd.items())


if __name__ == '__main__':
    import sys
    os.makedirs(OUT, exist_ok=True)
    every = [losses, layers, tudui, second_net, relu_add, activations, batchnorm, batchnorm1d, group_norm, pools, dropout, residual,
             models_and_optimizers, clip_grad_norm, schedules, optimizers, torch_files]
    # Names given (`make_goldens.py activations`): only those files, the others left as they are.
    wanted = sys.argv[1:] or [f.__name__ for f in every]
    unknown = set(wanted) - {f.__name__ for f in every}
    if unknown:
        sys.exit(f'unknown: {sorted(unknown)}; choose from {[f.__name__ for f in every]}')
    for f in every:
        if f.__name__ in wanted:
            f()
    print('goldens written to', os.path.abspath(OUT))
