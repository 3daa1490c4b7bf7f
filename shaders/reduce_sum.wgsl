// Tree reduction of (value, weight) pairs, shared by every loss with reduction 'sum' or 'mean'.
// inp: (n,) vec2<f32>            pairs, e.g. (loss, weight) per element
// out: (ceil(n / 1024),) vec2<f32> one partial pair per workgroup (overwritten)
// result: (1,) f32                on the last pass (n <= 1024): mode 0 'sum' -> x, mode 1 'mean' -> x / y
// Dispatch: ceil(n / 1024) workgroups of 256 (2-D grid past 65,535); each invocation adds 4 pairs,
// then the workgroup reduces as a tree. Passes repeat until one pair is left; the order is fixed,
// so results are deterministic.
struct Params {
    n: u32,
    is_last: u32,
    mode: u32,
    _pad: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;
// Pairs one workgroup reduces (ops::reduce_sum::PER_GROUP).
const PER_GROUP: u32 = 1024u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> result: array<f32>;

var<workgroup> part: array<vec2<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    var acc = vec2<f32>(0.0, 0.0);
    for (var j = 0u; j < PER_GROUP / WG; j++) {
        let i = g * PER_GROUP + j * WG + li;
        if (i < p.n) {
            acc += inp[i];
        }
    }
    part[li] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            part[li] += part[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u && g * PER_GROUP < max(p.n, 1u)) {
        let total = part[0];
        out[g] = total;
        if (p.is_last == 1u) {
            if (p.mode == 0u) {
                result[0] = total.x;
            } else {
                result[0] = total.x / total.y;
            }
        }
    }
}
