// The adapter's f32 multiply-add rate as WGSL reaches it, for `wgrad bench --peak` (ops::peak):
// nothing but multiply-adds in registers. Each invocation runs iterations steps of eight
// independent vec4 chains, a = fma(a, m, c) (32 multiply-adds, 64 FLOP a step), from starts that
// differ by chain and invocation (so that no two chains are the same computation), and writes the
// sum of its 32 lanes (so that none is dead code):
//   out[g] = sum over chains k < 8 and lanes j < 4 of a[k][j] after iterations steps,
//   a[k][j] starting at (8 j + k) / 32 + (g % WG) / 2^14.
// m and c come from the uniform (the host passes 1 and 2^-20: every step then adds c exactly,
// which is what tests/peak.rs checks), so that no compiler can fold the chains.
// out: (groups * WG,) overwritten, one value per invocation.
// Dispatch: `groups` workgroups of WG (one row of the grid).
struct Params {
    iterations: u32,
    from_workgroup_memory: u32,
    m: f32,
    c: f32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lanes = vec4<f32>(0.0, 8.0, 16.0, 24.0) / 32.0 + f32(li) / 16384.0;
    var a0 = lanes;
    var a1 = lanes + 1.0 / 32.0;
    var a2 = lanes + 2.0 / 32.0;
    var a3 = lanes + 3.0 / 32.0;
    var a4 = lanes + 4.0 / 32.0;
    var a5 = lanes + 5.0 / 32.0;
    var a6 = lanes + 6.0 / 32.0;
    var a7 = lanes + 7.0 / 32.0;
    let m = vec4<f32>(p.m);
    let c = vec4<f32>(p.c);
    for (var i = 0u; i < p.iterations; i++) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
    }
    let s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    out[wid.x * WG + li] = (s.x + s.y) + (s.z + s.w);
}
