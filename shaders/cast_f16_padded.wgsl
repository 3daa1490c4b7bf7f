enable f16;

// x (f32; in the `_f16` variant f16, a copy staged already) staged as f16 channels last with zeros around it, for the padded cooperative-matrix
// products (ops::cast_f16, Layout::Padded), which load their tiles straight from the copy: an
// (A, C, Y, X) view of x becomes rows of R halves,
//   out[(a * YP + y) * R + x * CP + c] = f16(x[origin + a SA + c SC + (y - OY) SY + (x - OX) SX] * 2^e),
// zero where a, c, y - OY or x - OX fall outside the view (its padding, its channels padded to
// CP, a row's tail past X' * CP and the slack after the AP * YP rows, up to `total` vec4s). The
// strides may be negative (a flipped kernel). e as in cast_f16.wgsl: 0 unscaled (scaled = 0);
// scaled, from the largest |x| (top[0]), and stored after the data, at vec4 `total`. An input
// (N, IC, H, W) with padding (PH, PW) becomes (N, H + 2 PH, W + 2 PW, IC) (OY = PH, OX = PW); a
// weight (OC, IC, KH, KW) becomes (OCP, KH, KW * IC) (OY = OX = 0), or flipped and transposed for
// the input gradient, (ICP, KH, KW * OC).
// x: f32 (f16 in the `_f16` variant); top: (1,) f32 (read when scaled); out: (total + 1,) vec4<f16> (the last written only
// when scaled). CP and R are multiples of 4.
// Dispatch: `groups` workgroups of 256 (one row of the grid), grid-strided over the vec4s, each
// invocation reading 4 channels of one pixel.
struct Params {
    A: u32,
    C: u32,
    Y: u32,
    X: u32,
    SA: i32,
    SC: i32,
    SY: i32,
    SX: i32,
    origin: u32,
    AP: u32,
    YP: u32,
    CP: u32,
    R: u32,
    OY: u32,
    OX: u32,
    total: u32,
    scaled: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

// The element type of x; the kernel's `_f16` variant reads f16 (crate::shaders).
alias operand = f32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<operand>;
@group(0) @binding(2) var<storage, read> top: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f16>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    var e = 0;
    if (p.scaled == 1u) {
        let m = top[0];
        if (m > 0.0) {
            e = clamp(15 - frexp(m).exp, -100, 100);
        }
        if (wid.x == 0u && li == 0u) {
            out[p.total] = vec4<f16>(f16(f32(e)), 0.0h, 0.0h, 0.0h);
        }
    }
    let scale = exp2(f32(e));
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
        let at = i32(p.origin) + i32(a) * p.SA + yy * p.SY + xx * p.SX;
        var v = vec4<f16>(0.0h);
        for (var j = 0u; j < 4u; j++) {
            let c = c0 + j;
            if (ok && c < p.C) {
                v[j] = f16(f32(x[u32(at + i32(c) * p.SC)]) * scale);
            }
        }
        out[t] = v;
    }
}
