// The largest |x| of a tensor, in parts: part[g] = max |x[i]| over the elements workgroup g visits
// (i = g*WG + li, stepping by the grid's invocations). cast_f16's scaling runs it twice: over the
// tensor into at most ops::cast_f16::MAX_PARTS parts, then over those with one workgroup.
// x: (n,) f32; part: (groups,) f32, overwritten.
// Dispatch: `groups` workgroups of 256 (one row of the grid), grid-strided over x.
struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;

var<workgroup> m: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let stride = nwg.x * WG;
    var acc = 0.0;
    for (var i = wid.x * WG + li; i < p.n; i += stride) {
        acc = max(acc, abs(x[i]));
    }
    m[li] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            m[li] = max(m[li], m[li + s]);
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        part[wid.x] = m[0];
    }
}
