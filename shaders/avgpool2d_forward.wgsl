// AvgPool2d as PyTorch computes it: window [oh*SH - PH, +KH) x [ow*SW - PW, +KW), clipped to the
// padded input for the pool size, then to the input for the sum; out = sum / divisor, where the
// divisor is `divisor` when non-zero (divisor_override), else the pool size with
// count_include_pad, else the number of input elements in the window (0 elements: out = 0).
// inp: (N*C, H, W); out: (N*C, OH, OW), overwritten.
// Dispatch: one invocation per output element; ceil(count / 256) workgroups of 256 (2-D grid).
struct Params {
    planes: u32,
    H: u32,
    W: u32,
    OH: u32,
    OW: u32,
    KH: u32,
    KW: u32,
    SH: u32,
    SW: u32,
    PH: u32,
    PW: u32,
    count_include_pad: u32,
    divisor: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    let OHW = p.OH * p.OW;
    if (i >= p.planes * OHW) {
        return;
    }
    let plane = i / OHW;
    let oh = i32((i % OHW) / p.OW);
    let ow = i32(i % p.OW);
    var h0 = oh * i32(p.SH) - i32(p.PH);
    var w0 = ow * i32(p.SW) - i32(p.PW);
    var h1 = min(h0 + i32(p.KH), i32(p.H + p.PH));
    var w1 = min(w0 + i32(p.KW), i32(p.W + p.PW));
    let pool = (h1 - h0) * (w1 - w0);
    h0 = max(h0, 0);
    w0 = max(w0, 0);
    h1 = min(h1, i32(p.H));
    w1 = min(w1, i32(p.W));
    if (h0 >= h1 || w0 >= w1) {
        out[i] = 0.0;
        return;
    }
    var acc = 0.0;
    let base = plane * p.H * p.W;
    for (var h = h0; h < h1; h++) {
        for (var w = w0; w < w1; w++) {
            acc += inp[base + u32(h) * p.W + u32(w)];
        }
    }
    var div = (h1 - h0) * (w1 - w0);
    if (p.count_include_pad == 1u) {
        div = pool;
    }
    if (p.divisor != 0u) {
        div = i32(p.divisor);
    }
    out[i] = acc / f32(div);
}
