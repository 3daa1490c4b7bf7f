// Bias gradient of Conv2d and Linear: dbias[c] = sum_{n, s} dout[n, c, s].
// dout: (N, C, S) with S = OH*OW for Conv2d and 1 for Linear. The sum over images may be split in
// ceil(N / chunk) parts: out[split * C + c] = sum over images [split*chunk, split*chunk + chunk)
// (then sum_splits adds them, in order); unsplit (chunk = N), out is dbias (C,). Overwritten.
// Dispatch: one workgroup of 256 per (channel, split), channel fastest (2-D grid past 65,535); the
// invocations stride over (n, s) and combine as a tree in workgroup memory.
struct Params {
    N: u32,
    C: u32,
    S: u32,
    chunk: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    let splits = (p.N + p.chunk - 1u) / p.chunk;
    let c = g % p.C;
    let split = g / p.C;
    let n0 = min(split, splits - 1u) * p.chunk;
    let len = (min(n0 + p.chunk, p.N) - n0) * p.S;
    var acc = 0.0;
    // i = (image n - n0, position pos) walked without a division per value (CPU adapters run
    // integer division lane by lane).
    var n = n0 + li / p.S;
    var pos = li % p.S;
    for (var i = li; i < len; i += WG) {
        acc += dout[(n * p.C + c) * p.S + pos];
        pos += WG % p.S;
        let wrap = pos >= p.S;
        pos = select(pos, pos - p.S, wrap);
        n += WG / p.S + select(0u, 1u, wrap);
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
