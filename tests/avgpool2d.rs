//! AvgPool2d: CPU (f64) vs finite differences, CPU and GPU vs PyTorch (padding counted or not,
//! ceil_mode, divisor_override, rectangular), GPU vs CPU on random configurations, bad input.

mod common;
use common::layer::*;
use common::*;
use rand::Rng;
use wgrad::functional::Call;
use wgrad::ops::avgpool2d::{backward_cpu, forward_cpu, AvgPool2d};
use wgrad::testing::assert_close;

fn config(c: &Case) -> AvgPool2d {
    let pair = |k: &str| {
        let v = c.usizes(k);
        (v[0], v[1])
    };
    AvgPool2d::new(pair("kernel"))
        .stride(pair("stride"))
        .padding(pair("padding"))
        .ceil_mode(c.meta["ceil_mode"].as_bool().unwrap())
        .count_include_pad(c.meta["count_include_pad"].as_bool().unwrap())
        .divisor_override(c.meta["divisor_override"].as_u64().map(|d| d as usize))
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    for c in goldens("pools.safetensors", &["avgpool2d"]) {
        let (x, dout) = (tensor(&c, "inp"), tensor(&c, "dout"));
        let want = Want { out: c.f32("out").1, dinputs: vec![c.f32("dinp").1], ..Want::default() };
        check_devices(&c.name, &config(&c), &[&x], &[], &dout, Call::default(), &want, ELEMENTWISE);
    }
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(40);
    for pool in [
        AvgPool2d::new(3).stride(2).padding(1),
        AvgPool2d::new(3).stride(2).padding(1).ceil_mode(true).count_include_pad(false),
        AvgPool2d::new((2, 3)).stride((1, 2)).divisor_override(Some(4)),
    ] {
        let g = pool.geometry(&[2, 2, 5, 6]).unwrap();
        let x = to_f64(&uniform(&mut r, 120, -1.0, 1.0));
        let n_out = 2 * 2 * g.oh * g.ow;
        let dout = to_f64(&uniform(&mut r, n_out, -1.0, 1.0));
        let f = |x: &[f64]| {
            let mut out = vec![0.0; n_out];
            forward_cpu(&g, &mut out, x);
            out
        };
        let mut dinp = vec![0.0; 120];
        backward_cpu(&g, &mut dinp, &dout);
        assert_close(&format!("{pool:?} dinp"), &dinp, &numeric_grad(&x, 1e-6, |v| dot(&dout, &f(v))), 1e-6, 1e-8);
    }
}

#[test]
fn gpu_matches_cpu_on_random_configurations() {
    let Some(gpu) = gpu() else { return };
    let mut r = rng(41);
    let mut done = 0;
    while done < 15 {
        let k = (r.random_range(1..=4), r.random_range(1..=4));
        let pool = AvgPool2d::new(k)
            .stride((r.random_range(1..=3), r.random_range(1..=3)))
            .padding((r.random_range(0..=k.0 / 2), r.random_range(0..=k.1 / 2)))
            .ceil_mode(r.random_bool(0.5))
            .count_include_pad(r.random_bool(0.5))
            .divisor_override(r.random_bool(0.2).then_some(3));
        let shape =
            [[1, 64][r.random_range(0..2)], r.random_range(1..=3), r.random_range(5..=13), r.random_range(5..=13)];
        let Ok(g) = pool.geometry(&shape) else { continue };
        let x = rand_tensor(&mut r, &shape, -1.0, 1.0);
        let dout = rand_tensor(&mut r, &[shape[0], shape[1], g.oh, g.ow], -1.0, 1.0);
        gpu_matches_cpu(
            &format!("{pool:?} on {shape:?}"),
            &gpu,
            &pool,
            &[&x],
            &[],
            &dout,
            Call::default(),
            ELEMENTWISE,
        );
        done += 1;
    }
}

#[test]
fn bad_input_is_an_error() {
    let e = AvgPool2d::new(3).padding(2).geometry(&[1, 1, 8, 8]).unwrap_err().to_string();
    assert!(e.contains("AvgPool2d") && e.contains("half of kernel size"), "{e}");
    let e = AvgPool2d::new(5).geometry(&[1, 1, 3, 3]).unwrap_err().to_string();
    assert!(e.contains("[1, 1, 3, 3]") && e.contains("empty"), "{e}");
    let e = AvgPool2d::new(2).divisor_override(Some(0)).geometry(&[1, 1, 4, 4]).unwrap_err().to_string();
    assert!(e.contains("divisor must be not zero"), "{e}");
    assert!(AvgPool2d::new(2).geometry(&[4, 4]).is_err());
}
