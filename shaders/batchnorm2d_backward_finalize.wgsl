// BatchNorm2d backward, step 2 of 3: per channel, adds its chunks' partials in chunk order into
// sums[c] = sum dout and sums[C + c] = sum dout*xhat, and (affine = 1) writes the parameter
// gradients dbias = sum dout, dweight = sum dout*xhat.
// partials: (C, chunks, 2); sums: (2, C), dweight, dbias: (C,), overwritten (placeholders when
// affine = 0).
// Dispatch: one invocation per channel; ceil(C / 64) workgroups of 64.
struct Params {
    N: u32,
    C: u32,
    HW: u32,
    chunks: u32,
    per_thread: u32,
    batch_stats: u32,
    update_running: u32,
    affine: u32,
    eps: f32,
    momentum: f32,
    per_invocation: u32,
    _pad1: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;
@group(0) @binding(3) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(4) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.C) {
        return;
    }
    var sdy = 0.0;
    var sdyx = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let at = (c * p.chunks + k) * 2u;
        sdy += partials[at];
        sdyx += partials[at + 1u];
    }
    sums[c] = sdy;
    sums[p.C + c] = sdyx;
    if (p.affine == 1u) {
        dweight[c] = sdyx;
        dbias[c] = sdy;
    }
}
