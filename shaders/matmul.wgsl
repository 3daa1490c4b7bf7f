// Strided matrix product, the kernel of Linear forward and backward:
//   c[m, n] = sum_k a[m*sam + k*sak] * b[k*sbk + n*sbn] (+ bias[n] when has_bias)
// Strides express the transposes: Linear forward y = x·Wᵀ + b, backward dx = dy·W, dW = dyᵀ·x.
// a, b: read through strides; bias: (Ncols,) (read when has_bias); c: (M, Ncols) row-major,
// overwritten; with splits > 1, k is split in chunks of `chunk`, c is (splits, M, Ncols) and
// sum_splits adds them.
// Dispatch: one invocation per split and T x T tile of c (4 x 4; 8 x 8 in the `_wide` variant, which
// ops::linear takes on CPU adapters: twice the multiplications per load, where lavapipe runs every
// load as a loop over the SIMD lanes); ceil(count / 64) workgroups of 64 (2-D grid).
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
    // Invocations per tile of columns in matmul_subgroups.wgsl; ignored here (one per tile).
    stride: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;
// Rows and columns of c per invocation, in TV vec4s (ops::linear::MATMUL_TILE; 8 in the `_wide`
// variant, crate::shaders::WIDE, ops::linear::MATMUL_WIDE_TILE).
const WIDE: bool = false;
const T: u32 = 4u;
const TV: u32 = T / 4u;

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
    // a's rows m0 + i and b's columns n0 + j (clamped to the last) as TV vec4s, [i / 4][i % 4],
    // times their strides.
    var ar: array<vec4<u32>, TV>;
    var bc: array<vec4<u32>, TV>;
    for (var v = 0u; v < TV; v++) {
        let e = vec4<u32>(4u * v) + vec4<u32>(0u, 1u, 2u, 3u);
        ar[v] = min(vec4<u32>(m0) + e, vec4<u32>(p.M - 1u)) * p.sam;
        bc[v] = min(vec4<u32>(n0) + e, vec4<u32>(p.N - 1u)) * p.sbn;
    }
    // acc[i][v]: row m0 + i, columns n0 + 4v to n0 + 4v + 3.
    var acc: array<array<vec4<f32>, TV>, T>;
    for (var k = s * p.chunk; k < k_end; k++) {
        let ak = k * p.sak;
        let bk = k * p.sbk;
        var bv: array<vec4<f32>, TV>;
        for (var v = 0u; v < TV; v++) {
            bv[v] = vec4<f32>(f32(b[bk + bc[v].x]), f32(b[bk + bc[v].y]), f32(b[bk + bc[v].z]), f32(b[bk + bc[v].w]));
        }
        for (var v = 0u; v < TV; v++) {
            let av = vec4<f32>(f32(a[ar[v].x + ak]), f32(a[ar[v].y + ak]), f32(a[ar[v].z + ak]), f32(a[ar[v].w + ak]));
            for (var e = 0u; e < 4u; e++) {
                for (var w = 0u; w < TV; w++) {
                    acc[4u * v + e][w] = fma(vec4<f32>(av[e]), bv[w], acc[4u * v + e][w]);
                }
            }
        }
    }
    // The output gradient may be staged scaled by 2^e, e stored at scale_at (ops::cast_f16).
    var unscale = 1.0;
    if (p.scale_at != UNSCALED) {
        unscale = exp2(-f32(a[p.scale_at]));
    }
    var bb: array<vec4<f32>, TV>;
    if (p.has_bias == 1u && s == 0u) {
        for (var v = 0u; v < TV; v++) {
            let n = min(vec4<u32>(n0 + 4u * v) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.N - 1u));
            bb[v] = vec4<f32>(bias[n.x], bias[n.y], bias[n.z], bias[n.w]);
        }
    }
    for (var i = 0u; i < T; i++) {
        if (m0 + i < p.M) {
            for (var v = 0u; v < TV; v++) {
                let r = acc[i][v] * unscale + bb[v];
                for (var e = 0u; e < 4u; e++) {
                    if (n0 + 4u * v + e < p.N) {
                        c[s * p.M * p.N + (m0 + i) * p.N + n0 + 4u * v + e] = r[e];
                    }
                }
            }
        }
    }
}
