// torch.optim.Adam and AdamW's update (amsgrad off) over every parameter at once, in PyTorch's
// order of operations; the step's scalars come from the host in double precision (st):
//   Adam:  g = grad + weight_decay * param        AdamW: param *= 1 - lr * weight_decay (st.decay)
//   exp_avg += (1 - beta1) * (g - exp_avg)          (lerp)
//   exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * g * g
//   denom = sqrt(exp_avg_sq) / sqrt(1 - beta2^t) + eps
//   param += -(lr / (1 - beta1^t)) * exp_avg / denom
// st: the step's words (see optim::StepWords); param, exp_avg, exp_avg_sq: (n,) f32, updated in
// place; grad: (n,) f32.
// Dispatch: ceil(n / 256) workgroups of 256 (2-D grid past 65,535), one element per invocation.
// one_minus_beta1/2 are 1 - beta1/2 rounded once from double on the host, as PyTorch's scalars.
struct Params {
    n: u32,
    decoupled: u32,
    _pad0: u32,
    _pad1: u32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    eps: f32,
    weight_decay: f32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
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
@group(0) @binding(4) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(5) var<storage, read_write> exp_avg_sq: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    var w = param[i];
    var g = grad[i];
    if (p.decoupled == 1u) {
        w = w * st.decay;
    } else if (p.weight_decay != 0.0) {
        g = g + p.weight_decay * w;
    }
    let m = exp_avg[i] + p.one_minus_beta1 * (g - exp_avg[i]);
    let v = exp_avg_sq[i] * p.beta2 + p.one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    let denom = sqrt(v) / st.bias_correction2_sqrt + p.eps;
    param[i] = w + (-st.step_size) * m / denom;
}
