// Conv2d's weight gradient by Winograd's minimal filtering (ops::conv2d::winograd_gpu), step 3 of
// 4: the gradient of the transformed weight, one product per position xi of the A x A tile, its
// sum over the chunk's tiles split in runs of TS:
//   part[(S0 + s, xi, oc, ic)] = sum over t in [s TS, (s + 1) TS) of dm[(xi, oc, t)] v[(xi, ic, t)].
// dm: (XI, OCP, TP); v: (XI, ICP, TP) (the input's transform, conv2d_winograd_input.wgsl); part:
// (parts, XI, OCP, ICP), the chunk's splits overwritten (OCP, ICP and TP multiples of 8, TS of 4).
// Dispatch: one invocation per split, xi, block of 8 output channels and block of 8 input channels
// (input channels fastest); ceil(splits XI OCP ICP / 64 / 64) workgroups (2-D grid past 65,535).
// Register-blocked: each step loads 4 tiles of 8 rows of dm and 8 of v (16 vec4) for 256
// multiply-adds.
// Params (ops::conv2d::winograd_gpu::Params, the same in every Winograd kernel): the images
// N0 .. N0 + NB of a chunk; the convolution's IC, H, W, OC, OH, OW, PH, PW (stride and dilation
// 1, kernel R x R); ICP and OCP: IC and OC rounded up to 8; TH x TW: the 4 x 4 output tiles of an
// image; TP: the chunk's tiles NB TH TW rounded up to 8; XI: A * A; the weight read at
// origin + oc SOC + ic SIC + kh SKH + kw SKW (strides may be negative: the input gradient's
// flipped, transposed weight); the weight gradient's tiles per split TS and the chunk's first
// partial sum S0.
struct Params {
    N0: u32,
    NB: u32,
    IC: u32,
    ICP: u32,
    H: u32,
    W: u32,
    OC: u32,
    OCP: u32,
    OH: u32,
    OW: u32,
    PH: u32,
    PW: u32,
    TH: u32,
    TW: u32,
    TP: u32,
    XI: u32,
    has_bias: u32,
    origin: u32,
    SOC: i32,
    SIC: i32,
    SKH: i32,
    SKW: i32,
    TS: u32,
    S0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dm: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> part: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    let ib = p.ICP / 8u;
    let ob = p.OCP / 8u;
    let splits = (p.TP + p.TS - 1u) / p.TS;
    if (i >= splits * p.XI * ob * ib) {
        return;
    }
    let i8 = i % ib;
    let o8 = (i / ib) % ob;
    let xi = (i / (ib * ob)) % p.XI;
    let s = i / (ib * ob * p.XI);
    // vec4 stride of a row (TP / 4 tiles).
    let rs = p.TP / 4u;
    let di = (xi * p.OCP + 8u * o8) * rs;
    let vi = (xi * p.ICP + 8u * i8) * rs;
    var acc: array<vec4<f32>, 16>;
    let end = min((s + 1u) * p.TS, p.TP) / 4u;
    for (var q = s * p.TS / 4u; q < end; q++) {
        var b: array<vec4<f32>, 8>;
        for (var c = 0u; c < 8u; c++) {
            b[c] = v[vi + c * rs + q];
        }
        for (var r = 0u; r < 8u; r++) {
            let x = dm[di + r * rs + q];
            acc[2u * r] += vec4<f32>(dot(x, b[0]), dot(x, b[1]), dot(x, b[2]), dot(x, b[3]));
            acc[2u * r + 1u] += vec4<f32>(dot(x, b[4]), dot(x, b[5]), dot(x, b[6]), dot(x, b[7]));
        }
    }
    let cs = p.ICP / 4u;
    var o = (((p.S0 + s) * p.XI + xi) * p.OCP + 8u * o8) * cs + 2u * i8;
    for (var r = 0u; r < 8u; r++) {
        part[o] = acc[2u * r];
        part[o + 1u] = acc[2u * r + 1u];
        o += cs;
    }
}
