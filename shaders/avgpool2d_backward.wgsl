// AvgPool2d backward as a gather (no atomics): each input element adds dout / divisor of every
// window covering it, windows in row-major order; windows and divisors as in avgpool2d_forward.wgsl.
// dout: (N*C, OH, OW); dinp: (N*C, H, W), overwritten.
// Dispatch: one invocation per input element; ceil(count / 256) workgroups of 256 (2-D grid).
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
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> dinp: array<f32>;

// The divisor of window (oh, ow).
fn divisor(oh: i32, ow: i32) -> f32 {
    if (p.divisor != 0u) {
        return f32(p.divisor);
    }
    var h0 = oh * i32(p.SH) - i32(p.PH);
    var w0 = ow * i32(p.SW) - i32(p.PW);
    var h1 = min(h0 + i32(p.KH), i32(p.H + p.PH));
    var w1 = min(w0 + i32(p.KW), i32(p.W + p.PW));
    if (p.count_include_pad == 1u) {
        return f32((h1 - h0) * (w1 - w0));
    }
    h0 = max(h0, 0);
    w0 = max(w0, 0);
    h1 = min(h1, i32(p.H));
    w1 = min(w1, i32(p.W));
    return f32((h1 - h0) * (w1 - w0));
}

// Windows along one axis covering input position x: [lo, hi] (empty when lo > hi).
fn covering(x: i32, k: u32, s: u32, pad: u32, n_out: u32) -> vec2<i32> {
    let t = x + i32(pad);
    let lo = max(0, (t - i32(k) + i32(s)) / i32(s));
    let hi = min(i32(n_out) - 1, t / i32(s));
    return vec2<i32>(lo, hi);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    let HW = p.H * p.W;
    if (i >= p.planes * HW) {
        return;
    }
    let plane = i / HW;
    let ih = i32((i % HW) / p.W);
    let iw = i32(i % p.W);
    let rh = covering(ih, p.KH, p.SH, p.PH, p.OH);
    let rw = covering(iw, p.KW, p.SW, p.PW, p.OW);
    let obase = plane * p.OH * p.OW;
    var acc = 0.0;
    for (var oh = rh.x; oh <= rh.y; oh++) {
        for (var ow = rw.x; ow <= rw.y; ow++) {
            acc += dout[obase + u32(oh) * p.OW + u32(ow)] / divisor(oh, ow);
        }
    }
    dinp[i] = acc;
}
