// Adds the batch splits of conv2d_backward_weight in a fixed order (deterministic, no atomics):
// dweight[i] = sum_s part[s * OC*IC*KH*KW + i].
// part: (splits, OC, IC, KH, KW); dweight: (OC, IC, KH, KW), overwritten.
// Dispatch: one invocation per weight element; ceil(count / 256) workgroups of 256 (2-D grid).
struct Params {
    N: u32,
    IC: u32,
    H: u32,
    W: u32,
    OC: u32,
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
    has_bias: u32,
    splits: u32,
    chunk: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> dweight: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + li;
    let M = p.OC * p.IC * p.KH * p.KW;
    if (i >= M) {
        return;
    }
    var acc = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        acc += part[s * M + i];
    }
    dweight[i] = acc;
}
