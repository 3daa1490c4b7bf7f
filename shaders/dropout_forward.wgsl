// Dropout in train mode: out = x / (1 - p) where the element is kept, else 0. Element i is kept when
// u(d) >= p, d = i / plane (the element for Dropout, its channel's plane for Dropout2d), u(d) a
// uniform number in [0, 1) with 24 random bits from a counter-based hash of (the node's key, the
// training step, d): the CPU path computes the same bits
// (ops::interface::random_bits), and the backward recomputes the mask instead of storing it.
// step: [step_lo, step_hi] of the running step; inp, out: (n,) f32; out is overwritten.
// Dispatch: one invocation per element; ceil(n / 256) workgroups of 256 (2-D grid).
struct Params {
    n: u32,
    key0: u32,
    key1: u32,
    // Consecutive elements that share one draw: 1 (Dropout), H·W (Dropout2d: a channel).
    plane: u32,
    p: f32,
    scale: f32,
    _pad1: u32,
    _pad2: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> step: array<u32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// lowbias32 (Chris Wellons' integer hash).
fn mix(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn uniform01(i: u32) -> f32 {
    var h = mix(i);
    h = mix(h ^ step[1]);
    h = mix(h ^ step[0]);
    h = mix(h ^ p.key1);
    h = mix(h ^ p.key0);
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    out[i] = select(0.0, inp[i] * p.scale, uniform01(i / p.plane) >= p.p);
}
