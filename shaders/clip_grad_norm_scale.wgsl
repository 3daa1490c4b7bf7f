// torch.nn.utils.clip_grad_norm_'s second half (ops::clip_grad_norm): every workgroup adds the
// p.groups partial sums of squares as a tree, in the same order, so all get the same
//   total_norm = sqrt(sum),  clip_coef = max_norm / (total_norm + 1e-6), clamped to 1
// (a NaN norm gives NaN, an infinite one 0, as torch.clamp does), then scales its gradients.
// partial: (p.groups,) f32, from clip_grad_norm_partial
// grad: (n,) f32, multiplied by clip_coef in place
// norm: (1,) f32, total_norm, overwritten (by workgroup 0)
// Dispatch: ceil(n / PER_GROUP) workgroups of 256 (2-D grid past 65,535), 4 elements an invocation.
struct Params {
    n: u32,
    groups: u32,
    max_norm: f32,
    _pad: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;
// Gradients one workgroup scales (ops::clip_grad_norm::PER_GROUP).
const PER_GROUP: u32 = 1024u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> norm: array<f32>;

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    var v = 0.0;
    if (li < p.groups) {
        v = partial[li];
    }
    part[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            part[li] += part[li + s];
        }
        workgroupBarrier();
    }
    let total = sqrt(part[0]);
    let c = p.max_norm / (total + 1e-6);
    let coef = select(c, 1.0, c > 1.0);
    if (g == 0u && li == 0u) {
        norm[0] = total;
    }
    for (var j = 0u; j < PER_GROUP / WG; j++) {
        let i = g * PER_GROUP + j * WG + li;
        if (i < p.n) {
            grad[i] *= coef;
        }
    }
}
