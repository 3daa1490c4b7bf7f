// torch.optim.SGD's update over every parameter at once (parameters, gradients and momentum
// buffers are each one flat buffer with the same layout):
//   d = grad + weight_decay * param
//   momentum != 0: buf = d on the first step, else momentum * buf + (1 - dampening) * d;
//                  d = d + momentum * buf (nesterov) or buf
//   param -= lr * d
// param, buf: (n,) f32, updated in place; grad: (n,) f32.
// Dispatch: ceil(n / 256) workgroups of 256 (2-D grid past 65,535), one element per invocation.
struct Params {
    n: u32,
    first_step: u32,
    nesterov: u32,
    _pad: u32,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + li;
    if (i >= p.n) {
        return;
    }
    var d = grad[i];
    if (p.weight_decay != 0.0) {
        d += p.weight_decay * param[i];
    }
    if (p.momentum != 0.0) {
        var b = d;
        if (p.first_step == 0u) {
            b = p.momentum * buf[i] + (1.0 - p.dampening) * d;
        }
        buf[i] = b;
        if (p.nesterov == 1u) {
            d += p.momentum * b;
        } else {
            d = b;
        }
    }
    param[i] -= p.lr * d;
}
