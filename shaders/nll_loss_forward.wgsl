// NLLLoss per row: loss[n, s] = -weight[t] * inp[n, t, s] with t = tgt[n, s]; 0 where t == ignore_index.
// inp: (N, C, S) f32 log-probabilities; tgt: (N, S) i32 class indices (checked on the host);
// weight: (C,) f32
// out: reduction 'none' (0) -> (N, S) f32 losses; 'sum'/'mean' -> (N * S,) pairs (loss, weight[t])
//      stored flat, which reduce_sum reduces ('mean' divides by the sum of the weights). Overwritten.
// Dispatch: ceil(N * S / 256) workgroups of 256 (2-D grid past 65,535), one row per invocation.
struct Params {
    rows: u32,
    C: u32,
    S: u32,
    reduction: u32,
    ignore_index: i32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<i32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let r = (wid.x + wid.y * nwg.x) * WG + li;
    if (r >= p.rows) {
        return;
    }
    let t = tgt[r];
    var l = 0.0;
    var w = 0.0;
    if (t != p.ignore_index) {
        let tc = u32(clamp(t, 0, i32(p.C) - 1));
        w = weight[tc];
        l = -w * inp[(r / p.S) * p.C * p.S + tc * p.S + r % p.S];
    }
    if (p.reduction == 0u) {
        out[r] = l;
    } else {
        out[2u * r] = l;
        out[2u * r + 1u] = w;
    }
}
