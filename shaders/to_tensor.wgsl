// ToTensor then Normalize on the device: out[i] = table[c·256 + byte i of pixels], with
// c = (i / plane) % channels, the channel of element i of an (N, C, H, W) batch. The table is
// what the host's loader computes for each channel and byte value ((p / 255 − mean) / std, see
// ops::to_tensor), so the device's input is bit for bit the loader's.
// pixels: ceil(n / 4) u32 words, byte i in bits 8·(i % 4) of word i / 4 (little-endian, as the
// host's bytes land); table: (channels · 256,) f32; out: (n,) f32, overwritten.
// Dispatch: one invocation per word (four outputs); ceil(ceil(n / 4) / 256) workgroups of 256
// (2-D grid).
struct Params {
    n: u32,
    plane: u32,
    channels: u32,
    _pad0: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pixels: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let w = (wid.x + wid.y * nwg.x) * WG + li;
    if (w * 4u >= p.n) {
        return;
    }
    let word = pixels[w];
    for (var k = 0u; k < 4u; k++) {
        let i = w * 4u + k;
        if (i < p.n) {
            let c = (i / p.plane) % p.channels;
            out[i] = table[c * 256u + ((word >> (8u * k)) & 0xffu)];
        }
    }
}
