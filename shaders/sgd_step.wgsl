// torch.optim.SGD's update over every parameter at once (parameters, gradients and momentum
// buffers are each one flat buffer with the same layout):
//   d = grad + weight_decay * param
//   momentum != 0: buf = d on the first step (st.step == 0), else momentum * buf + (1 - dampening) * d;
//                  d = d + momentum * buf (nesterov) or buf
//   param -= lr * d, with this step's learning rate st.lr (the schedule's)
// st: the step's words (see optim::StepWords); param, buf: (n,) f32, updated in place; grad: (n,) f32.
// Dispatch: ceil(n / 256) workgroups of 256 (2-D grid past 65,535), one element per invocation.
// one_minus_dampening is 1 - dampening rounded once from double on the host, as PyTorch's alpha.
struct Params {
    n: u32,
    nesterov: u32,
    _pad0: u32,
    _pad1: u32,
    momentum: f32,
    one_minus_dampening: f32,
    weight_decay: f32,
    _pad2: u32,
}

struct Step {
    step_lo: u32,
    step_hi: u32,
    lr: f32,
    step_size: f32,
    bias_correction2_sqrt: f32,
    decay: f32,
    _pad0: u32,
    _pad1: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> st: Step;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> buf: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    var d = grad[i];
    if (p.weight_decay != 0.0) {
        d += p.weight_decay * param[i];
    }
    if (p.momentum != 0.0) {
        var b = d;
        if (st.step_lo != 0u || st.step_hi != 0u) {
            b = p.momentum * buf[i] + p.one_minus_dampening * d;
        }
        buf[i] = b;
        if (p.nesterov == 1u) {
            d += p.momentum * b;
        } else {
            d = b;
        }
    }
    param[i] -= st.lr * d;
}
