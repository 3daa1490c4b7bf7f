enable f16;

// x (f32) staged as f16 for the mixed-precision products (ops::cast_f16):
//   out[i] = f16(x[i] * 2^e), i < n.
// Unscaled (scaled = 0): e = 0. Scaled: m = top[0] (the largest |x|, from two cast_f16_absmax
// passes), e = 15 - frexp(m).exp (so m * 2^e < 2^15, below f16's largest finite 65504; e = 0 when
// m = 0), clamped to [-100, 100], and out[n] = e (an integer, exact in f16): the product kernels
// multiply what they accumulate by 2^-e.
// x: (n,) f32; top: (1,) f32 (read when scaled); out: (n + 1,) f16 (element n written only when
// scaled).
// Dispatch: `groups` workgroups of 256 (one row of the grid), grid-strided over x.
struct Params {
    n: u32,
    scaled: u32,
    _pad0: u32,
    _pad1: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> top: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f16>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    var e = 0;
    if (p.scaled == 1u) {
        let m = top[0];
        if (m > 0.0) {
            e = clamp(15 - frexp(m).exp, -100, 100);
        }
        if (wid.x == 0u && li == 0u) {
            out[p.n] = f16(f32(e));
        }
    }
    let scale = exp2(f32(e));
    let stride = nwg.x * WG;
    for (var i = wid.x * WG + li; i < p.n; i += stride) {
        out[i] = f16(x[i] * scale);
    }
}
