enable f16;
enable wgpu_cooperative_matrix;
// The adapter's cooperative-matrix product rate as WGSL reaches it, for `wgrad bench --peak`
// (ops::peak): the inner loop of the `_cooperative_matrix` convolutions without their staging.
// Four subgroups, each with 2 x 2 tiles of T x T f32 accumulators, as there; each iteration is
// one of their stages' two steps of T reduction rows, 8 products of T x T x T f16 matrices:
//   from_workgroup_memory = 1: each step loads its four operand tiles from workgroup memory, laid
//     out (and padded) as the forward convolution lays out a stage: the reduction contiguous in
//     both, A read row-major and B column-major;
//   from_workgroup_memory = 0: the operand tiles are loaded once, and the products run from
//     registers.
// The operands are 1/16 in a stage's first T reduction rows and 1/8 in its second (exact in f16),
// so that after n iterations every accumulator element holds n * 2T / 256 from registers (the
// first rows twice) and n * 5T / 256 from workgroup memory (T / 256 + 4T / 256); each invocation
// writes the sum of its elements of its subgroup's four tiles (which tests/peak.rs checks):
//   out[g] = 4 * (T * T / SG) * n * (2T or 5T) / 256.
// m and c are unused (ops::peak::Params is shared with peak_fma.wgsl).
// out: (groups * WG,) overwritten, one value per invocation.
// Dispatch: `groups` workgroups of WG (one row of the grid). As written, T = 8 with subgroups of 8
// (lavapipe); its `_16x16` variant (crate::shaders) has T = 16 with subgroups of 32 (NVIDIA).
struct Params {
    iterations: u32,
    from_workgroup_memory: u32,
    m: f32,
    c: f32,
}

const T: u32 = 8u;
const SG: u32 = 8u;
alias tile_a = coop_mat8x8<f16, A>;
alias tile_b = coop_mat8x8<f16, B>;
alias tile_c = coop_mat8x8<f32, C>;
// Invocations per workgroup (Rust declares the same in its shaders! entry): four subgroups.
const WG: u32 = 4u * SG;
// As in conv2d_forward_cooperative_matrix.wgsl: the workgroup's tile of BM x BN, BK reduction rows
// a stage, and the workgroup-memory rows padded by PAD halves.
const BM: u32 = 4u * T;
const BN: u32 = 4u * T;
const BK: u32 = 2u * T;
const PAD: u32 = 8u;
const KS: u32 = BK + PAD;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

var<workgroup> As: array<f16, BM * KS>; // [m][k], rows of BK
var<workgroup> Bs: array<f16, BN * KS>; // [q][k], rows of BK
var<workgroup> Cs: array<f32, 4u * T * T>; // one T x T tile per subgroup

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    for (var i = li; i < BM * KS; i += WG) {
        As[i] = select(0.0625h, 0.125h, i % KS >= T);
    }
    for (var i = li; i < BN * KS; i += WG) {
        Bs[i] = select(0.0625h, 0.125h, i % KS >= T);
    }
    let sg = li / SG;
    let lane = li % SG;
    let sm = sg / 2u;
    let sn = sg % 2u;
    let slot = sg * T * T;
    for (var e = 0u; e < T * T / SG; e++) {
        Cs[slot + lane + e * SG] = 0.0;
    }
    workgroupBarrier();
    var c00 = coopLoadT<tile_c>(&Cs[slot], T);
    var c01 = c00;
    var c10 = c00;
    var c11 = c00;
    // Distinct rows and columns, so that no two products are the same computation.
    var a0 = coopLoadT<tile_a>(&As[(2u * sm) * T * KS], KS);
    var a1 = coopLoadT<tile_a>(&As[(2u * sm + 1u) * T * KS], KS);
    var b0 = coopLoad<tile_b>(&Bs[(2u * sn) * T * KS], KS);
    var b1 = coopLoad<tile_b>(&Bs[(2u * sn + 1u) * T * KS], KS);
    for (var i = 0u; i < p.iterations; i++) {
        for (var kk = 0u; kk < BK; kk += T) {
            if (p.from_workgroup_memory == 1u) {
                a0 = coopLoadT<tile_a>(&As[(2u * sm) * T * KS + kk], KS);
                a1 = coopLoadT<tile_a>(&As[(2u * sm + 1u) * T * KS + kk], KS);
                b0 = coopLoad<tile_b>(&Bs[(2u * sn) * T * KS + kk], KS);
                b1 = coopLoad<tile_b>(&Bs[(2u * sn + 1u) * T * KS + kk], KS);
            }
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
    }

    var sum = 0.0;
    for (var i = 0u; i < 4u; i++) {
        workgroupBarrier();
        if (i == 0u) {
            coopStoreT(c00, &Cs[slot], T);
        } else if (i == 1u) {
            coopStoreT(c01, &Cs[slot], T);
        } else if (i == 2u) {
            coopStoreT(c10, &Cs[slot], T);
        } else {
            coopStoreT(c11, &Cs[slot], T);
        }
        workgroupBarrier();
        for (var e = 0u; e < T * T / SG; e++) {
            sum += Cs[slot + lane + e * SG];
        }
    }
    out[wid.x * WG + li] = sum;
}
