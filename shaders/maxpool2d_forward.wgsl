// MaxPool2d forward: out[plane, oh, ow] = max over the window's in-bounds elements of
// inp[plane, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW] (padding counts as -inf); indices holds the
// flat position ih*W + iw of the maximum in its (H, W) plane, as PyTorch's return_indices.
// Ties go to the first maximum in row-major window order; a NaN wins and propagates.
// inp: (N*C, H, W); out, indices: (N*C, OH, OW), overwritten.
// Where the windows tile the input (kernel = stride, no padding or dilation, every window within
// it, as MaxPool2d(2): ops::maxpool2d::Geometry::tiled), the kernel's `_tiles` variant (TILES
// true, crate::shaders::TILES) runs: no bounds tests, each window's elements compared branch-free.
// A variant, not a branch on a parameter: lavapipe runs the straight-line code of a branch not
// taken too, masked (maxpool2d_backward.wgsl).
// Dispatch: one invocation per run of `run` consecutive output elements of one output row (a whole
// row on CPU adapters, where integer divisions run lane by lane; 1 on GPUs: ops::maxpool2d::run);
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

// Whether windows tile the input (the `_tiles` variant).
const TILES: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<i32>;

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let o0 = ((wid.x + wid.y * nwg.x) * WG + li) * p.run;
    let OHW = p.OH * p.OW;
    if (o0 >= p.planes * OHW) {
        return;
    }
    let plane = o0 / OHW;
    if (TILES) {
        let r = o0 % OHW;
        // Window j's first element, at0 + j * KW, in the plane at `base`.
        let at0 = (r / p.OW) * p.KH * p.W + (r % p.OW) * p.KW;
        let base = plane * p.H * p.W;
        for (var j = 0u; j < p.run; j++) {
            let first = at0 + j * p.KW;
            var best = inp[base + first];
            var best_at = first;
            for (var kh = 0u; kh < p.KH; kh++) {
                for (var kw = 0u; kw < p.KW; kw++) {
                    let at = first + kh * p.W + kw;
                    let v = inp[base + at];
                    // A later element wins when greater or NaN (the first one against itself:
                    // only when NaN, where it stays the same).
                    let take = v > best || is_nan(v);
                    best = select(best, v, take);
                    best_at = select(best_at, at, take);
                }
            }
            out[o0 + j] = best;
            indices[o0 + j] = i32(best_at);
        }
        return;
    }
    let h0 = i32(((o0 % OHW) / p.OW) * p.SH) - i32(p.PH);
    let base = plane * p.H * p.W;
    let ow0 = o0 % p.OW;
    for (var j = 0u; j < p.run; j++) {
        let i = o0 + j;
        let w0 = i32((ow0 + j) * p.SW) - i32(p.PW);
        // Any start: the first element of the window replaces it (best_at < 0), and every window
        // holds one (padding is at most half the kernel). WGSL has no infinite constant for -inf.
        var best = 0.0;
        var best_at = -1;
        for (var kh = 0u; kh < p.KH; kh++) {
            let ih = h0 + i32(kh * p.DH);
            if (ih < 0 || ih >= i32(p.H)) {
                continue;
            }
            for (var kw = 0u; kw < p.KW; kw++) {
                let iw = w0 + i32(kw * p.DW);
                if (iw < 0 || iw >= i32(p.W)) {
                    continue;
                }
                let at = ih * i32(p.W) + iw;
                let v = inp[base + u32(at)];
                if (best_at < 0 || v > best || is_nan(v)) {
                    best = v;
                    best_at = at;
                }
            }
        }
        out[i] = best;
        indices[i] = best_at;
    }
}
