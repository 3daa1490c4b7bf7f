// NLLLoss backward: dinp[n, c, s] = -weight[t] * g if c == t = tgt[n, s] != ignore_index, else 0,
// with g = dout[n, s] ('none'), dout[0] ('sum') or dout[0] / total weight ('mean', stats[0].y).
// tgt: (N, S) i32; weight: (C,) f32; dout: (N, S) or (1,) f32; stats: (1,) vec2 (sum, weight) of
// the forward's reduction; dinp: (N, C, S) f32 (overwritten).
// Dispatch: ceil(N * C * S / 256) workgroups of 256 (2-D grid past 65,535), one element each.
struct Params {
    n: u32,
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
@group(0) @binding(1) var<storage, read> tgt: array<i32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> dinp: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    let s = i % p.S;
    let c = (i / p.S) % p.C;
    let r = (i / (p.C * p.S)) * p.S + s;
    let t = tgt[r];
    var v = 0.0;
    if (t != p.ignore_index && u32(t) == c) {
        var g: f32;
        if (p.reduction == 0u) {
            g = dout[r];
        } else if (p.reduction == 1u) {
            g = dout[0];
        } else {
            g = dout[0] / stats[0].y;
        }
        v = -weight[c] * g;
    }
    dinp[i] = v;
}
