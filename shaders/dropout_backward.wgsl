// Dropout backward: dinp = dout / (1 - p) where the forward kept the element, else 0; the mask is
// recomputed from the same counter-based hash of (the node's key, the step, i / plane) as
// dropout_forward.wgsl.
// step: [step_lo, step_hi] of the step being differentiated; dout, dinp: (n,) f32; dinp is overwritten.
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
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dinp: array<f32>;

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
    dinp[i] = select(0.0, dout[i] * p.scale, uniform01(i / p.plane) >= p.p);
}
