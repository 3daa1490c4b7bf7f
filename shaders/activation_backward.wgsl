// The pointwise activations' backward (ops::activation): dinp = dout · f'(inp), from the input.
// p.function picks f (Function::code), p.alpha is its argument. With s = sigmoid(z) and
// e = exp(−z) (z clamped to [−80, 80]), sigmoid'(z) = e · s², which, unlike PyTorch's s · (1 − s)
// and 1 − tanh², keeps its precision on both tails:
//   0 LeakyReLU: x > 0 ? 1 : alpha
//   1 ELU:       x > 0 ? 1 : alpha · exp(x)
//   2 GELU:      Φ(x) + x · φ(x), φ(x) = exp(−x²/2) / √(2π)
//   3 GELU tanh: s + 2x · e · s² · √(2/π) · (1 + 3 · 0.044715 x²), z = 2u as in the forward
//   4 SiLU:      s · (1 + x · e · s), z = x
//   5 Sigmoid:   e · s², z = x
//   6 Tanh:      4 · e · s², z = 2x
// inp, dout, dinp: (n,) f32; dinp is overwritten.
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

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<elem>;
@group(0) @binding(2) var<storage, read> dout: array<elem>;
@group(0) @binding(3) var<storage, read_write> dinp: array<elem>;

// As in activation_forward.wgsl.
fn erfc_positive(z: elem) -> elem {
    let t = elem(1.0) / (elem(1.0) + elem(0.5) * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-z * z + poly);
}

fn normal_cdf(x: elem) -> elem {
    let z = abs(x) * 0.70710678118654752;
    let tail = elem(0.5) * erfc_positive(z);
    return select(elem(1.0) - tail, tail, x < elem(0.0));
}

// (s, e) = (sigmoid(z), exp(−z)), z clamped to [−80, 80] so that e stays finite.
struct Sigmoid {
    s: elem,
    e: elem,
}

fn sigmoid_parts(z: elem) -> Sigmoid {
    let e = exp(-clamp(z, elem(-80.0), elem(80.0)));
    return Sigmoid(elem(1.0) / (elem(1.0) + e), e);
}

fn derivative(x: elem) -> elem {
    let a = p.alpha;
    switch p.function {
        case 0u: { return select(elem(a), elem(1.0), x > elem(0.0)); }
        case 1u: { return select(a * exp(min(x, elem(0.0))), elem(1.0), x > elem(0.0)); }
        case 2u: { return normal_cdf(x) + x * 0.39894228040143268 * exp(-0.5 * x * x); }
        case 3u: {
            let k = 0.79788456080286536;
            let g = sigmoid_parts(2.0 * k * (x + 0.044715 * x * x * x));
            return g.s + 2.0 * x * g.e * g.s * g.s * k * (elem(1.0) + 0.134145 * x * x);
        }
        case 4u: { let g = sigmoid_parts(x); return g.s * (elem(1.0) + x * g.e * g.s); }
        case 5u: { let g = sigmoid_parts(x); return g.e * g.s * g.s; }
        default: { let g = sigmoid_parts(2.0 * x); return 4.0 * g.e * g.s * g.s; }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    dinp[i] = dout[i] * derivative(inp[i]);
}
