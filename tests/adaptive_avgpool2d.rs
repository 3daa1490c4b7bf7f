//! AdaptiveAvgPool2d: CPU (f64) vs finite differences, CPU and GPU vs PyTorch (1×1, output sizes
//! that do not divide the input, larger than the input), GPU vs CPU on random sizes, bad input.

mod common;
use common::layer::*;
use common::*;
use rand::Rng;
use wgrad::functional::Call;
use wgrad::ops::adaptive_avgpool2d::{backward_cpu, forward_cpu, AdaptiveAvgPool2d, Geometry};
use wgrad::ops::interface::{Mode, Op};
use wgrad::testing::assert_close;

#[test]
fn cpu_and_gpu_match_pytorch() {
    for c in goldens("pools.safetensors", &["adaptive_avgpool2d"]) {
        let o = c.usizes("output_size");
        let (x, dout) = (tensor(&c, "inp"), tensor(&c, "dout"));
        let want = Want { out: c.f32("out").1, dinputs: vec![c.f32("dinp").1], ..Want::default() };
        check_devices(
            &c.name,
            &AdaptiveAvgPool2d::new((o[0], o[1])),
            &[&x],
            &[],
            &dout,
            Call::default(),
            &want,
            ELEMENTWISE,
        );
    }
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(42);
    for (oh, ow) in [(1, 1), (3, 2), (7, 9)] {
        let g = Geometry { n: 2, c: 2, h: 5, w: 6, oh, ow };
        let x = to_f64(&uniform(&mut r, 120, -1.0, 1.0));
        let n_out = 4 * oh * ow;
        let dout = to_f64(&uniform(&mut r, n_out, -1.0, 1.0));
        let f = |x: &[f64]| {
            let mut out = vec![0.0; n_out];
            forward_cpu(&g, &mut out, x);
            out
        };
        let mut dinp = vec![0.0; 120];
        backward_cpu(&g, &mut dinp, &dout);
        assert_close(&format!("({oh}, {ow}) dinp"), &dinp, &numeric_grad(&x, 1e-6, |v| dot(&dout, &f(v))), 1e-6, 1e-8);
    }
}

/// Random sizes and global pooling (output 1 x 1, ResNet's), whose backward a CPU adapter runs a
/// whole plane per invocation, a GPU (one that splits reductions) one element.
#[test]
fn gpu_matches_cpu_on_random_sizes() {
    for gpu in gpu().into_iter().chain(splitting_gpu()) {
        random_sizes(&gpu);
    }
}

fn random_sizes(gpu: &std::sync::Arc<wgrad::Gpu>) {
    let mut r = rng(43);
    for i in 0..18 {
        let shape =
            [[1, 64][r.random_range(0..2)], r.random_range(1..=4), r.random_range(1..=13), r.random_range(1..=13)];
        let out = if i < 15 { (r.random_range(1..=9), r.random_range(1..=9)) } else { (1, 1) };
        let pool = AdaptiveAvgPool2d::new(out);
        let x = rand_tensor(&mut r, &shape, -1.0, 1.0);
        let dout = rand_tensor(&mut r, &[shape[0], shape[1], out.0, out.1], -1.0, 1.0);
        let name = format!("{out:?} on {shape:?} (split target {})", gpu.split_target());
        gpu_matches_cpu(&name, gpu, &pool, &[&x], &[], &dout, Call::default(), ELEMENTWISE);
    }
}

#[test]
fn bad_input_is_an_error() {
    let e = AdaptiveAvgPool2d::new(0).plan(&[&[1, 1, 4, 4]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("AdaptiveAvgPool2d") && e.contains("positive"), "{e}");
    let e = AdaptiveAvgPool2d::new(1).plan(&[&[2, 64]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("(N, C, H, W)") && e.contains("[2, 64]"), "{e}");
}
