enable f16;

// x (f32, channels first) staged as f16 channels last with zeros around it, for the padded
// cooperative-matrix forward (ops::cast_f16, Layout::Padded), which loads its tiles straight from
// the copy: an (A, C, Y, X) tensor becomes rows of R halves,
//   out[(a * YP + y) * R + x * CP + c] = f16(x[a, c, y - OY, x - OX]),
// zero where a, c, y - OY or x - OX fall outside the tensor (its padding, its channels padded to
// CP, a row's tail past X' * CP and the slack after the AP * YP rows, up to `total` vec4s). An
// input (N, IC, H, W) with padding (PH, PW) becomes (N, H + 2 PH, W + 2 PW, ICP) (OY = PH,
// OX = PW); a weight (OC, IC, KH, KW) becomes (OCP, KH, J): each kernel row's KW * ICP halves
// then zeros to J (OY = OX = 0).
// x: (A, C, Y, X) f32; out: (total,) vec4<f16>. CP and R are multiples of 4.
// Dispatch: `groups` workgroups of 256 (one row of the grid), grid-strided over the vec4s, each
// invocation reading 4 channels of one pixel.
struct Params {
    A: u32,
    C: u32,
    Y: u32,
    X: u32,
    AP: u32,
    YP: u32,
    CP: u32,
    R: u32,
    OY: u32,
    OX: u32,
    total: u32,
    _pad: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f16>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let stride = nwg.x * WG;
    for (var t = wid.x * WG + li; t < p.total; t += stride) {
        let o = 4u * t;
        let row = o / p.R;
        let r = o % p.R;
        let a = row / p.YP;
        let yy = i32(row % p.YP) - i32(p.OY);
        let xx = i32(r / p.CP) - i32(p.OX);
        let c0 = r % p.CP;
        let ok = a < p.A && yy >= 0 && yy < i32(p.Y) && xx >= 0 && xx < i32(p.X);
        var v = vec4<f16>(0.0h);
        for (var j = 0u; j < 4u; j++) {
            let c = c0 + j;
            if (ok && c < p.C) {
                v[j] = f16(x[((a * p.C + c) * p.Y + u32(yy)) * p.X + u32(xx)]);
            }
        }
        out[t] = v;
    }
}
