// AdaptiveAvgPool2d, any output size: window oh covers rows [floor(oh*H/OH), ceil((oh+1)*H/OH)),
// columns likewise; out = mean of the window.
// inp: (N*C, H, W); out: (N*C, OH, OW), overwritten.
// Dispatch: one invocation per output element; ceil(count / 256) workgroups of 256 (2-D grid).
struct Params {
    planes: u32,
    H: u32,
    W: u32,
    OH: u32,
    OW: u32,
    run: u32,
    _pad1: u32,
    _pad2: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn start(o: u32, size: u32, n_out: u32) -> u32 {
    return (o * size) / n_out;
}

fn end(o: u32, size: u32, n_out: u32) -> u32 {
    return ((o + 1u) * size + n_out - 1u) / n_out;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    let OHW = p.OH * p.OW;
    if (i >= p.planes * OHW) {
        return;
    }
    let plane = i / OHW;
    let oh = (i % OHW) / p.OW;
    let ow = i % p.OW;
    let h0 = start(oh, p.H, p.OH);
    let h1 = end(oh, p.H, p.OH);
    let w0 = start(ow, p.W, p.OW);
    let w1 = end(ow, p.W, p.OW);
    let base = plane * p.H * p.W;
    var acc = 0.0;
    for (var h = h0; h < h1; h++) {
        for (var w = w0; w < w1; w++) {
            acc += inp[base + h * p.W + w];
        }
    }
    out[i] = acc / f32((h1 - h0) * (w1 - w0));
}
