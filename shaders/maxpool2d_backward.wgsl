// MaxPool2d backward as a gather (no atomics): each input element adds dout of every window that
// covers it and whose saved maximum it is: dinp[plane, ih, iw] = sum over (kh, kw) with
// oh = (ih + PH - kh*DH) / SH, ow = (iw + PW - kw*DW) / SW exact and in range, and
// indices[plane, oh, ow] == ih*W + iw, of dout[plane, oh, ow].
// indices, dout: (N*C, OH, OW); dinp: (N*C, H, W), overwritten.
// When windows cannot overlap (disjoint = 1: stride >= dilated kernel), the one candidate window is
// computed directly instead of looping over the kernel. Where they tile the input exactly (kernel =
// stride, no padding or dilation, H = OH*KH and W = OW*KW, as MaxPool2d(2) on even sizes), the
// kernel's `_tiles` variant (TILES true, crate::shaders::TILES) runs: each invocation takes a run
// of `run` windows along one output row and writes their KH*KW elements each: a quarter of the
// invocations and index arithmetic for 2x2 windows, and with a whole row per invocation (CPU
// adapters, which run integer divisions lane by lane; ops::maxpool2d::run) divisions once per row:
// 3.5x faster on lavapipe (history 58). A variant, not a branch on a parameter: lavapipe runs the
// straight-line code of a branch not taken too, masked (the general path's divisions made
// cifar-net's second `pool.dinp` 0.64 -> 1.8 ms, history 68).
// Dispatch: one invocation per input element (per run of windows in `_tiles`);
// ceil(count / 256) workgroups of 256 (2-D grid).
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
    DH: u32,
    DW: u32,
    disjoint: u32,
    run: u32,
    _pad2: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

// Whether windows tile the input exactly (the `_tiles` variant).
const TILES: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> indices: array<i32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dinp: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    let HW = p.H * p.W;
    if (TILES) {
        let OHW = p.OH * p.OW;
        let o0 = i * p.run;
        if (o0 >= p.planes * OHW) {
            return;
        }
        let r = o0 % OHW;
        let base = (o0 / OHW) * HW + (r / p.OW) * p.KH * p.W + (r % p.OW) * p.KW;
        let at0 = i32(base % HW);
        for (var j = 0u; j < p.run; j++) {
            let hit = indices[o0 + j];
            let d = dout[o0 + j];
            let at = at0 + i32(j * p.KW);
            for (var kh = 0u; kh < p.KH; kh++) {
                for (var kw = 0u; kw < p.KW; kw++) {
                    let off = kh * p.W + kw;
                    dinp[base + j * p.KW + off] = select(0.0, d, hit == at + i32(off));
                }
            }
        }
        return;
    }
    if (i >= p.planes * HW) {
        return;
    }
    let plane = i / HW;
    let at = i32(i % HW);
    let ih = at / i32(p.W);
    let iw = at % i32(p.W);
    let obase = plane * p.OH * p.OW;
    var acc = 0.0;
    if (p.disjoint == 1u) {
        // Windows do not overlap (stride >= dilated kernel): at most one covers this element.
        let th = ih + i32(p.PH);
        let tw = iw + i32(p.PW);
        let oh = th / i32(p.SH);
        let ow = tw / i32(p.SW);
        let rh = th - oh * i32(p.SH);
        let rw = tw - ow * i32(p.SW);
        if (oh < i32(p.OH) && ow < i32(p.OW) && rh % i32(p.DH) == 0 && rw % i32(p.DW) == 0 &&
            rh / i32(p.DH) < i32(p.KH) && rw / i32(p.DW) < i32(p.KW)) {
            let o = obase + u32(oh) * p.OW + u32(ow);
            if (indices[o] == at) {
                acc = dout[o];
            }
        }
        dinp[i] = acc;
        return;
    }
    for (var kh = 0u; kh < p.KH; kh++) {
        let th = ih + i32(p.PH) - i32(kh * p.DH);
        if (th < 0 || th % i32(p.SH) != 0 || th / i32(p.SH) >= i32(p.OH)) {
            continue;
        }
        for (var kw = 0u; kw < p.KW; kw++) {
            let tw = iw + i32(p.PW) - i32(kw * p.DW);
            if (tw < 0 || tw % i32(p.SW) != 0 || tw / i32(p.SW) >= i32(p.OW)) {
                continue;
            }
            let o = obase + u32(th / i32(p.SH)) * p.OW + u32(tw / i32(p.SW));
            if (indices[o] == at) {
                acc += dout[o];
            }
        }
    }
    dinp[i] = acc;
}
