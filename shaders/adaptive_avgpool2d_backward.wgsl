// AdaptiveAvgPool2d backward as a gather (no atomics): each input element adds dout / window size
// of every window covering it (windows as in adaptive_avgpool2d_forward.wgsl), in row-major order.
// dout: (N*C, OH, OW); dinp: (N*C, H, W), overwritten.
// Global pooling (OH = OW = 1) gives every element of a plane its dout / (H*W), `run` elements an
// invocation: a whole plane on CPU adapters, which run integer divisions lane by lane, 1 on GPUs
// (ops::adaptive_avgpool2d::run). Other output sizes take one element an invocation (run = 1).
// Dispatch: one invocation per run of input elements; ceil(count / 256) workgroups of 256 (2-D
// grid).
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
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> dinp: array<f32>;

fn start(o: u32, size: u32, n_out: u32) -> u32 {
    return (o * size) / n_out;
}

fn end(o: u32, size: u32, n_out: u32) -> u32 {
    return ((o + 1u) * size + n_out - 1u) / n_out;
}

// The first window whose end passes x: every window from it on starts at or before x until one
// starts after x.
fn first(x: u32, size: u32, n_out: u32) -> u32 {
    return (x * n_out) / size;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = ((wid.x + wid.y * nwg.x) * WG + li) * p.run;
    let HW = p.H * p.W;
    if (i >= p.planes * HW) {
        return;
    }
    if (p.OH == 1u && p.OW == 1u) {
        let d = dout[i / HW] / f32(HW);
        for (var j = 0u; j < p.run; j++) {
            dinp[i + j] = d;
        }
        return;
    }
    let plane = i / HW;
    let ih = (i % HW) / p.W;
    let iw = i % p.W;
    let obase = plane * p.OH * p.OW;
    var acc = 0.0;
    for (var oh = first(ih, p.H, p.OH); oh < p.OH && start(oh, p.H, p.OH) <= ih; oh++) {
        let h0 = start(oh, p.H, p.OH);
        let h1 = end(oh, p.H, p.OH);
        if (ih >= h1) {
            continue;
        }
        for (var ow = first(iw, p.W, p.OW); ow < p.OW && start(ow, p.W, p.OW) <= iw; ow++) {
            let w0 = start(ow, p.W, p.OW);
            let w1 = end(ow, p.W, p.OW);
            if (iw >= w1) {
                continue;
            }
            acc += dout[obase + oh * p.OW + ow] / f32((h1 - h0) * (w1 - w0));
        }
    }
    dinp[i] = acc;
}
