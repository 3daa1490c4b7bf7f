// torch.nn.utils.clip_grad_norm_'s first half (ops::clip_grad_norm): sums of squares of the
// gradients, one per workgroup. Invocation li of workgroup g adds the squares of elements
// g * WG + li + k * (p.groups * WG), k = 0, 1, ...; the workgroup then adds its invocations' sums
// as a tree. The order is fixed, so the sums are the same every run.
// grad: (n,) f32, every parameter's gradient, one flat buffer
// partial: (p.groups,) f32, overwritten
// Dispatch: p.groups = min(ceil(n / 256), 256) workgroups of 256.
struct Params {
    n: u32,
    groups: u32,
    max_norm: f32,
    _pad: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    var acc = 0.0;
    for (var i = wid.x * WG + li; i < p.n; i += p.groups * WG) {
        let g = grad[i];
        acc += g * g;
    }
    part[li] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            part[li] += part[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        partial[wid.x] = part[0];
    }
}
