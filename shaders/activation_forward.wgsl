// The pointwise activations (ops::activation): out = f(inp), NaN passed through. p.function picks
// f (Function::code), p.alpha is its argument:
//   0 LeakyReLU: x > 0 ? x : alpha · x                 (alpha = negative_slope)
//   1 ELU:       x > 0 ? x : alpha · (exp(x) − 1)
//   2 GELU:      x · Φ(x), Φ(x) = erfc(−x/√2) / 2       (approximate='none')
//   3 GELU:      x/2 · (1 + tanh(u)) = x · sigmoid(2u), u = √(2/π) · (x + 0.044715 x³)
//                (approximate='tanh'; the second form has no cancellation where u < 0)
//   4 SiLU:      x / (1 + exp(−x))
//   5 Sigmoid:   1 / (1 + exp(−x))
//   6 Tanh:      tanh(x)
// inp, out: (n,) f32; out is overwritten.
// Dispatch: one invocation per element (per vec4 in the `_vec4` variant); ceil(n / 256) workgroups
// of 256 (2-D grid).
struct Params {
    n: u32,
    function: u32,
    alpha: f32,
    _pad0: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

// The element type: f32, or four of them in the `_vec4` variant (crate::shaders::VEC4), which
// ops::elementwise picks where n is a multiple of 4 on CPU adapters (n then counts vec4s).
alias elem = f32;
// Its bits: u32 or vec4<u32>.
alias bits = u32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<elem>;
@group(0) @binding(2) var<storage, read_write> out: array<elem>;

// erfc(x) for x >= 0 (Numerical Recipes' erfcc, relative error below 1.2e-7 everywhere).
fn erfc_positive(z: elem) -> elem {
    let t = elem(1.0) / (elem(1.0) + elem(0.5) * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-z * z + poly);
}

// Φ(x), the standard normal's CDF: erfc(−x/√2) / 2, from the tail that keeps its precision.
fn normal_cdf(x: elem) -> elem {
    let z = abs(x) * 0.70710678118654752;
    let tail = elem(0.5) * erfc_positive(z);
    return select(elem(1.0) - tail, tail, x < elem(0.0));
}

// tanh without the overflow of exp(2x) that some drivers' tanh meets past |x| ≈ 44 (tanh(±10) is
// ±1 in f32).
fn tanh_clamped(x: elem) -> elem {
    return tanh(clamp(x, elem(-10.0), elem(10.0)));
}

fn f(x: elem) -> elem {
    let a = p.alpha;
    switch p.function {
        case 0u: { return select(a * x, x, x > elem(0.0)); }
        case 1u: { return select(a * (exp(min(x, elem(0.0))) - elem(1.0)), x, x > elem(0.0)); }
        case 2u: { return x * normal_cdf(x); }
        case 3u: { return x / (elem(1.0) + exp(-1.5957691216057307 * (x + 0.044715 * x * x * x))); }
        case 4u: { return x / (elem(1.0) + exp(-x)); }
        case 5u: { return elem(1.0) / (elem(1.0) + exp(-x)); }
        default: { return tanh_clamped(x); }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    let x = inp[i];
    // NaN passes through. Tested on the bits: compilers may fold comparisons and clamps as if no
    // value were NaN.
    let nan = (bitcast<bits>(x) & bits(0x7fffffffu)) > bits(0x7f800000u);
    out[i] = select(f(x), x, nan);
}
