// Adds the partial results of a kernel whose reduction was split (Conv2d's forward and both
// backward products, Linear's matmul) in a fixed order: deterministic, no atomics.
// out[i] = sum_s part[s * M + i].
// part: (splits, M) f32; out: (M,) f32, overwritten.
// Each output is summed by `lanes` invocations (a power of two dividing WG, ops::sum_splits::lanes):
// lane l adds splits l, l + lanes, ..., then the lanes' sums are added pairwise in workgroup
// memory. One lane (the usual case: many outputs) adds the splits in order, alone. Several serve
// small outputs with many splits (a small layer's weight gradient split over a large batch's
// pixels), which one invocation per output would leave to a few of a GPU's cores.
// Dispatch: ceil(M * lanes / WG) workgroups of WG (2-D grid past 65,535); a workgroup sums WG /
// lanes consecutive outputs, invocation li serving output li % (WG / lanes) as lane li / (WG / lanes)
// (so that the invocations reading one split read consecutive words).
struct Params {
    M: u32,
    splits: u32,
    lanes: u32,
    _pad0: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let outs = WG / p.lanes;
    let o = li % outs;
    let lane = li / outs;
    let i = (wid.x + wid.y * nwg.x) * outs + o;
    var acc = 0.0;
    if (i < p.M) {
        for (var s = lane; s < p.splits; s += p.lanes) {
            acc += part[s * p.M + i];
        }
    }
    // Uniform: p is.
    if (p.lanes == 1u) {
        if (i < p.M) {
            out[i] = acc;
        }
        return;
    }
    sums[li] = acc;
    workgroupBarrier();
    for (var h = p.lanes / 2u; h > 0u; h >>= 1u) {
        if (lane < h) {
            sums[li] += sums[li + h * outs];
        }
        workgroupBarrier();
    }
    if (lane == 0u && i < p.M) {
        out[i] = sums[li];
    }
}
