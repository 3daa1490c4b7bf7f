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
    let Some(gpu) = gpu() else { return };
    let mut r = rng(22);
    for &n in LENGTHS {
        let (a, b) = (rand_tensor(&mut r, &[n], -1.0, 1.0), rand_tensor(&mut r, &[n], -1.0, 1.0));
        let dout = rand_tensor(&mut r, &[n], -1.0, 1.0);
        gpu_matches_cpu(&format!("add n={n}"), &gpu, &Add, &[&a, &b], &[], &dout, Call::default(), ELEMENTWISE);
    }
}

#[test]
fn mismatched_shapes_are_an_error() {
    let e = Add.plan(&[&[2, 3], &[3, 2]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("Add") && e.contains("[2, 3]") && e.contains("[3, 2]"), "{e}");
}
