// ReLU backward from the forward's output, as PyTorch's threshold_backward: dinp = 0 where
// out <= 0 (the gradient at 0 is 0), else dout.
// out, dout, dinp: (n,) f32; dinp is overwritten.
// Dispatch: one invocation per element (per vec4 in the `_vec4` variant); ceil(n / 256) workgroups
// of 256 (2-D grid).
struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

// The element type: f32, or four of them in the `_vec4` variant (crate::shaders::VEC4), which
// ops::elementwise picks where n is a multiple of 4 on CPU adapters (n then counts vec4s).
alias elem = f32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> out: array<elem>;
@group(0) @binding(2) var<storage, read> dout: array<elem>;
@group(0) @binding(3) var<storage, read_write> dinp: array<elem>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    dinp[i] = select(dout[i], elem(0.0), out[i] <= elem(0.0));
}
