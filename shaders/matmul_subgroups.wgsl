// Strided matrix product, the kernel of Linear forward and backward:
//   c[m, n] = sum_k a[m*sam + k*sak] * b[k*sbk + n*sbn] (+ bias[n] when has_bias)
// Strides express the transposes: Linear forward y = x·Wᵀ + b, backward dx = dy·W, dW = dyᵀ·x.
// a, b: read through strides; bias: (Ncols,) (read when has_bias); c: (M, Ncols) row-major,
// overwritten; with splits > 1, k is split in chunks of `chunk`, c is (splits, M, Ncols) and
// sum_splits adds them.
// Dispatch: one invocation per split, tile of TN = 16 columns and TM = 4 rows of c, `stride`
// invocations per tile of columns (at least the tiles of rows, a multiple of the subgroup size);
// ceil(count / 64) workgroups of 64 (2-D grid past 65,535).
// Register-blocked, no workgroup memory; edge rows/columns are clamped on read, skipped on write.
// The `_subgroups` form of matmul.wgsl, for CPU adapters with subgroups of at least 8 (lavapipe;
// ops::linear::matmul_kernel, with the convolutions' ConvKernels::Subgroups): lavapipe runs every
// storage load whose address varies per invocation as a loop over the SIMD lanes, and here a
// subgroup's invocations share their tile's columns of b, loaded once per subgroup and broadcast
// (tile_columns), so that a step of k loads TM + TN / 8 values per invocation for TM × TN
// multiply-adds, where matmul_wide's 8 x 8 loads 16 for 64 (docs/PERFORMANCE.md, history 72).
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
    // Invocations per tile of columns (ops::linear::matmul_kernel): at least the tiles of rows,
    // a multiple of the subgroup size.
    stride: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;
// Rows of c per invocation and columns per tile, in TV vec4s (ops::linear::SUBGROUPS_TILE).
const TM: u32 = 4u;
const TN: u32 = 16u;
const TV: u32 = TN / 4u;

// The operands' element type; the kernel's `_f16` variant reads them as f16 (crate::shaders).
alias operand = f32;
// scale_at when the output gradient is not scaled (ops::cast_f16::UNSCALED).
const UNSCALED: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<operand>;
@group(0) @binding(2) var<storage, read> b: array<operand>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// The tile's TN columns of b at step k (bk = k * sbk), column j's at cols[j / 4][j % 4] + bk:
// invocation `lane` of each subgroup loads columns lane % 8 and lane % 8 + 8, and
// subgroupBroadcast hands them round. Only vec4 components are chosen per invocation: an array
// index that varied per invocation would put the array in scratch memory.
fn tile_columns(cols: array<vec4<u32>, TV>, bk: u32, lane: u32) -> array<vec4<f32>, TV> {
    let j = lane % 8u;
    var v: array<vec4<f32>, TV>;
    for (var h = 0u; h < TV; h += 2u) {
        let m = f32(b[select(cols[h + 1u][j % 4u], cols[h][j % 4u], j < 4u) + bk]);
        v[h] = vec4<f32>(subgroupBroadcast(m, 0u), subgroupBroadcast(m, 1u), subgroupBroadcast(m, 2u), subgroupBroadcast(m, 3u));
        v[h + 1u] = vec4<f32>(subgroupBroadcast(m, 4u), subgroupBroadcast(m, 5u), subgroupBroadcast(m, 6u), subgroupBroadcast(m, 7u));
    }
    return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let g = (wid.x + wid.y * nwg.x) * WG + li;
    let L = p.stride;
    let tiles = L * ((p.N + TN - 1u) / TN);
    if (g >= tiles * p.splits) {
        return;
    }
    let s = g / tiles;
    let t = g % tiles;
    let n0 = (t / L) * TN;
    // Invocations past the last tile of rows compute the last one again and write nothing.
    let row_tiles = (p.M + TM - 1u) / TM;
    let live = t % L < row_tiles;
    let m0 = min(t % L, row_tiles - 1u) * TM;
    let k_end = min((s + 1u) * p.chunk, p.K);
    // a's rows m0 + i and b's columns n0 + j, clamped to the last, times their strides.
    let ar = min(vec4<u32>(m0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.M - 1u)) * p.sam;
    var bc: array<vec4<u32>, TV>;
    for (var v = 0u; v < TV; v++) {
        bc[v] = min(vec4<u32>(n0 + 4u * v) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.N - 1u)) * p.sbn;
    }
    // acc[i][v]: row m0 + i, columns n0 + 4v to n0 + 4v + 3.
    var acc: array<array<vec4<f32>, TV>, TM>;
    for (var k = s * p.chunk; k < k_end; k++) {
        let bv = tile_columns(bc, k * p.sbk, lane);
        let ak = k * p.sak;
        let av = vec4<f32>(f32(a[ar.x + ak]), f32(a[ar.y + ak]), f32(a[ar.z + ak]), f32(a[ar.w + ak]));
        for (var i = 0u; i < TM; i++) {
            for (var v = 0u; v < TV; v++) {
                acc[i][v] = fma(vec4<f32>(av[i]), bv[v], acc[i][v]);
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
    // Rows past the last (clamped on read) hold the last row's sums, made in the same order: they
    // are written to its place, with no test of m0 + i (as conv2d_forward_subgroups.wgsl writes
    // pixels past a row's end; a test there made lavapipe keep the accumulators in memory).
    if (live) {
        for (var i = 0u; i < TM; i++) {
            let row = s * p.M * p.N + min(m0 + i, p.M - 1u) * p.N;
            for (var v = 0u; v < TV; v++) {
                let r = acc[i][v] * unscale + bb[v];
                for (var e = 0u; e < 4u; e++) {
                    if (n0 + 4u * v + e < p.N) {
                        c[row + n0 + 4u * v + e] = r[e];
                    }
                }
            }
        }
    }
}
