// Bias gradient of Conv2d and Linear: dbias[c] = sum_{n, s} dout[n, c, s].
// dout: (N, C, S) with S = OH*OW for Conv2d and 1 for Linear. The sum over images may be split in
// ceil(N / chunk) parts: out[split * C + c] = sum over images [split*chunk, split*chunk + chunk)
// (then sum_splits adds them, in order); unsplit (chunk = N), out is dbias (C,). Overwritten.
// Dispatch: one workgroup of 256 per (channel, split), channel fastest (2-D grid past 65,535); the
// invocations stride over (n, s) and merge their sums in workgroup memory as a tree. The
// `_per_channel` variant (PER_CHANNEL true, crate::shaders::PER_CHANNEL; CPU adapters, unsplit:
// ops::bias::per_channel) takes one invocation per channel instead, the first PC of each
// workgroup's (ceil(C / PC) workgroups), each summing its channel's values: no workgroup memory and
// no barrier, where lavapipe switches between all of a workgroup's invocations at each barrier
// (Linear's 64 values a channel took a workgroup's tree each). A variant, not a branch on a
// parameter: lavapipe runs the straight-line code and barriers of a branch not taken too, masked.
struct Params {
    N: u32,
    C: u32,
    S: u32,
    chunk: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;
// One invocation per channel (the `_per_channel` variant), PC channels a workgroup: one SIMD group
// of lavapipe's (crate::shaders::PER_CHANNEL_WORKGROUP), the workgroups spread over its threads.
const PER_CHANNEL: bool = false;
const PC: u32 = 8u;

// dout's element type: f32, or four of them in the `_vec4` variant (crate::shaders::VEC4), which
// ops::bias takes on CPU adapters where S is a multiple of 4 (each load a loop over the SIMD lanes
// there): LANES values a load, none straddling two planes.
alias elem = f32;
const LANES: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<elem>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> part: array<f32, WG>;

// Loads a block of the one-invocation-per-channel form sums before adding it to its plane's sum.
const BLOCK: u32 = 16u;

// The sum of the LANES values of dout at `at` (a scalar made a vec4 repeats it; only its first
// is used).
fn load(at: u32) -> f32 {
    let v = vec4<f32>(dout[at]);
    var s = 0.0;
    for (var e = 0u; e < LANES; e++) {
        s += v[e];
    }
    return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (PER_CHANNEL) {
        let c = g * PC + li;
        if (li < PC && c < p.C) {
            var acc = 0.0;
            let runs = p.S / LANES;
            // Blocks of BLOCK loads summed apart (LANES sums of each, in a vec4), then each image's
            // blocks, then the images: rounding grows with their counts added, not multiplied.
            for (var n = 0u; n < p.N; n++) {
                let at = (n * p.C + c) * runs;
                var plane = 0.0;
                for (var q0 = 0u; q0 < runs; q0 += BLOCK) {
                    var block = vec4<f32>(0.0);
                    for (var q = q0; q < min(q0 + BLOCK, runs); q++) {
                        block += vec4<f32>(dout[at + q]);
                    }
                    for (var e = 0u; e < LANES; e++) {
                        plane += block[e];
                    }
                }
                acc += plane;
            }
            out[c] = acc;
        }
        return;
    }
    let splits = (p.N + p.chunk - 1u) / p.chunk;
    let c = g % p.C;
    let split = g / p.C;
    let n0 = min(split, splits - 1u) * p.chunk;
    let len = (min(n0 + p.chunk, p.N) - n0) * p.S;
    var acc = 0.0;
    // i = (image n - n0, position pos) walked without a division per value. Only GPUs run this
    // form, LANES = 1; it is written for LANES values a load because the `_vec4` family covers the
    // whole file, and its `_vec4` form (which nothing takes) must still be valid WGSL.
    let step = WG * LANES;
    var n = n0 + li * LANES / p.S;
    var pos = li * LANES % p.S;
    for (var i = li * LANES; i < len; i += step) {
        acc += load(((n * p.C + c) * p.S + pos) / LANES);
        pos += step % p.S;
        let wrap = pos >= p.S;
        pos = select(pos, pos - p.S, wrap);
        n += step / p.S + select(0u, 1u, wrap);
    }
    part[li] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            part[li] += part[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u && split < splits) {
        out[split * p.C + c] = part[0];
    }
}
