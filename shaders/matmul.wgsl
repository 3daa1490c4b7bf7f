// Strided matrix product, the kernel of Linear forward and backward:
//   c[m, n] = sum_k a[m*sam + k*sak] * b[k*sbk + n*sbn] (+ bias[n] when has_bias)
// Strides express the transposes: Linear forward y = x·Wᵀ + b, backward dx = dy·W, dW = dyᵀ·x.
// a, b: read through strides; bias: (Ncols,) (read when has_bias); c: (M, Ncols) row-major,
// overwritten; with splits > 1, k is split in chunks of `chunk`, c is (splits, M, Ncols) and
// sum_splits adds them.
// Dispatch: one invocation per split and 4 x 4 tile of c; ceil(count / 64) workgroups of 64 (2-D grid).
// Register-blocked, no workgroup memory; edge rows/columns are clamped on read, skipped on write.
struct Params {
    M: u32,
    N: u32,
    K: u32,
    has_bias: u32,
    sam: u32,
    sak: u32,
    sbk: u32,
    sbn: u32,
    splits: u32,
    chunk: u32,
    scale_at: u32,
    _pad1: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;
// Rows and columns of c per invocation: the vec4 accumulators (ops::linear::MATMUL_TILE).
const T: u32 = 4u;

// The operands' element type; the kernel's `_f16` variant reads them as f16 (crate::shaders).
alias operand = f32;
// scale_at when the output gradient is not scaled (ops::cast_f16::UNSCALED).
const UNSCALED: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<operand>;
@group(0) @binding(2) var<storage, read> b: array<operand>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = (wid.x + wid.y * nwg.x) * WG + li;
    let tiles_n = (p.N + T - 1u) / T;
    let tiles = tiles_n * ((p.M + T - 1u) / T);
    if (g >= tiles * p.splits) {
        return;
    }
    let s = g / tiles;
    let t = g % tiles;
    let k_end = min((s + 1u) * p.chunk, p.K);
    let m0 = (t / tiles_n) * T;
    let n0 = (t % tiles_n) * T;
    let ms = vec4<u32>(min(m0, p.M - 1u), min(m0 + 1u, p.M - 1u), min(m0 + 2u, p.M - 1u), min(m0 + 3u, p.M - 1u));
    let ns = vec4<u32>(min(n0, p.N - 1u), min(n0 + 1u, p.N - 1u), min(n0 + 2u, p.N - 1u), min(n0 + 3u, p.N - 1u));
    let ar = ms * p.sam;
    let bc = ns * p.sbn;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = s * p.chunk; k < k_end; k++) {
        let ak = k * p.sak;
        let bk = k * p.sbk;
        let bv = vec4<f32>(f32(b[bk + bc.x]), f32(b[bk + bc.y]), f32(b[bk + bc.z]), f32(b[bk + bc.w]));
        acc0 = fma(vec4<f32>(f32(a[ar.x + ak])), bv, acc0);
        acc1 = fma(vec4<f32>(f32(a[ar.y + ak])), bv, acc1);
        acc2 = fma(vec4<f32>(f32(a[ar.z + ak])), bv, acc2);
        acc3 = fma(vec4<f32>(f32(a[ar.w + ak])), bv, acc3);
    }
    // The output gradient may be staged scaled by 2^e, e stored at scale_at (ops::cast_f16).
    var unscale = 1.0;
    if (p.scale_at != UNSCALED) {
        unscale = exp2(-f32(a[p.scale_at]));
    }
    var bb = vec4<f32>(0.0);
    if (p.has_bias == 1u && s == 0u) {
        bb = vec4<f32>(bias[ns.x], bias[ns.y], bias[ns.z], bias[ns.w]);
    }
    let rows = array<vec4<f32>, 4>(acc0 * unscale + bb, acc1 * unscale + bb, acc2 * unscale + bb, acc3 * unscale + bb);
    for (var i = 0u; i < 4u; i++) {
        if (m0 + i < p.M) {
            for (var j = 0u; j < 4u; j++) {
                if (n0 + j < p.N) {
                    c[s * p.M * p.N + (m0 + i) * p.N + n0 + j] = rows[i][j];
                }
            }
        }
    }
}
