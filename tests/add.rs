//! Add (the residual merge): CPU and GPU vs PyTorch; both inputs' gradients are the output's;
//! mismatched shapes are an error naming both.

mod common;
use common::layer::*;
use common::*;
use wgrad::functional::Call;
use wgrad::ops::interface::{Mode, Op};
use wgrad::ops::Add;

#[test]
fn cpu_and_gpu_match_pytorch() {
    for c in goldens("relu_add.safetensors", &["add"]) {
        let (a, b, dout) = (tensor(&c, "a"), tensor(&c, "b"), tensor(&c, "dout"));
        let want = Want { out: c.f32("out").1, dinputs: vec![c.f32("da").1, c.f32("db").1], ..Want::default() };
        check_devices(&c.name, &Add, &[&a, &b], &[], &dout, Call::default(), &want, ELEMENTWISE);
    }
}

#[test]
fn gpu_matches_cpu_at_many_lengths() {
    // CPU adapters take four elements per invocation where the length is a multiple of 4 (the
    // kernel's `_vec4` variant), a GPU (one that splits reductions) one.
    for gpu in gpu().into_iter().chain(splitting_gpu()) {
        at_many_lengths(&gpu);
    }
}

fn at_many_lengths(gpu: &std::sync::Arc<wgrad::Gpu>) {
    let mut r = rng(22);
    for &n in LENGTHS {
        let (a, b) = (rand_tensor(&mut r, &[n], -1.0, 1.0), rand_tensor(&mut r, &[n], -1.0, 1.0));
        let dout = rand_tensor(&mut r, &[n], -1.0, 1.0);
        gpu_matches_cpu(
            &format!("add n={n} (split target {})", gpu.split_target()),
            gpu,
            &Add,
            &[&a, &b],
            &[],
            &dout,
            Call::default(),
            ELEMENTWISE,
        );
    }
}

#[test]
fn mismatched_shapes_are_an_error() {
    let e = Add.plan(&[&[2, 3], &[3, 2]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("Add") && e.contains("[2, 3]") && e.contains("[3, 2]"), "{e}");
}
