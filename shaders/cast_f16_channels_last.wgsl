enable f16;

// x (f32, channels first) staged as f16 channels last, for the cooperative-matrix products
// (ops::cast_f16, Layout::ChannelsLast), which read the channels of a pixel RUN halves at a time:
//   out[b, i, c] = f16(x[b, c, i] * 2^e) for c < C, 0 for C <= c < CP,
// CP = C rounded up to a multiple of RUN. An input (N, C, H, W) becomes (N, H, W, CP); a weight
// (OC, IC, KH, KW) becomes (OC, KH, KW, ICP); an output gradient (N, OC, OH, OW) becomes
// (N, OH, OW, OCP). e as in cast_f16.wgsl: 0 unscaled (scaled = 0); scaled, from the largest |x|
// (top[0]), and stored after the data, at out[B * I * CP].
// x: (B, C, I) f32; top: (1,) f32 (read when scaled); out: (B * I * CP + 1,) f16 (the last
// element written only when scaled).
// Dispatch: `groups` workgroups of 256 (one row of the grid), grid-strided over the
// B * I * CP / RUN runs of channels, each invocation reading one run (its I-strided reads
// coalesced across invocations, which take consecutive i) and writing it contiguously.
struct Params {
    B: u32,
    C: u32,
    I: u32,
    scaled: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;
// Channels per run (ops::cast_f16::CHANNEL_RUN).
const RUN: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> top: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f16>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let runs = (p.C + RUN - 1u) / RUN;
    let total = p.B * p.I * runs;
    var e = 0;
    if (p.scaled == 1u) {
        let m = top[0];
        if (m > 0.0) {
            e = clamp(15 - frexp(m).exp, -100, 100);
        }
        if (wid.x == 0u && li == 0u) {
            out[total * RUN] = f16(f32(e));
        }
    }
    let scale = exp2(f32(e));
    let stride = nwg.x * WG;
    for (var t = wid.x * WG + li; t < total; t += stride) {
        let i = t % p.I;
        let run = (t / p.I) % runs;
        let b = t / (p.I * runs);
        let at = ((b * p.I + i) * runs + run) * RUN;
        for (var j = 0u; j < RUN; j++) {
            let c = run * RUN + j;
            let v = x[select(0u, (b * p.C + c) * p.I + i, c < p.C)];
            out[at + j] = select(0.0h, f16(v * scale), c < p.C);
        }
    }
}
