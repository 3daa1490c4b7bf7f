//! Dropout: train mode against PyTorch's formula with wgrad's counter-based mask (the goldens pin
//! the generator: tests/golden/make_goldens.py computes the same hash), eval mode and p = 0 are the
//! identity, the GPU's mask equals the CPU path's bit for bit, about p of the elements drop, masks
//! change with the step, and a network with Dropout trains the same on both devices and after a
//! resume. Dropout2d drops whole channels, the same on both devices, about p of them.

mod common;
use common::layer::*;
use common::*;
use rand::Rng;
use wgrad::functional::Call;
use wgrad::nn::{Dropout, Dropout2d, Flatten, Linear, Model, ReLU, Sequential};
use wgrad::ops::interface::{Mode, Op, RandomKey};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::{Device, ExecOptions, Tensor};

fn key(c: &Case) -> RandomKey {
    let k = c.usizes("key");
    RandomKey { key: [k[0] as u32, k[1] as u32], step: c.meta["step"].as_u64().unwrap() }
}

#[test]
fn cpu_and_gpu_match_pytorch_with_wgrads_mask() {
    for c in goldens("dropout.safetensors", &["dropout"]) {
        let d = Dropout::new(c.meta["p"].as_f64().unwrap() as f32);
        let (x, dout) = (tensor(&c, "inp"), tensor(&c, "dout"));
        let want = Want { out: c.f32("out").1, dinputs: vec![c.f32("dinp").1], ..Want::default() };
        check_devices(&c.name, &d, &[&x], &[], &dout, Call { mode: Mode::Train, random: key(&c) }, &want, ELEMENTWISE);
    }
}

#[test]
fn eval_mode_and_p_zero_are_the_identity() {
    let mut r = rng(50);
    let x = rand_tensor(&mut r, &[4, 3, 5, 5], -1.0, 1.0);
    let dout = rand_tensor(&mut r, &[4, 3, 5, 5], -1.0, 1.0);
    let want = Want { out: x.data.clone(), dinputs: vec![dout.data.clone()], ..Want::default() };
    let random = RandomKey { key: [1, 2], step: 3 };
    check_devices("eval", &Dropout::new(0.5), &[&x], &[], &dout, Call { mode: Mode::Eval, random }, &want, ELEMENTWISE);
    check_devices("p=0", &Dropout::new(0.0), &[&x], &[], &dout, Call { mode: Mode::Train, random }, &want, ELEMENTWISE);
}

#[test]
fn the_gpu_mask_is_the_cpu_mask_and_drops_about_p() {
    let mut r = rng(51);
    let n = 1 << 20;
    let x = Tensor::new(&[n], vec![1.0; n]).unwrap();
    let dout = rand_tensor(&mut r, &[n], -1.0, 1.0);
    for (p, step) in [(0.1f32, 0u64), (0.5, 7), (0.9, 1 << 40)] {
        let call = Call { mode: Mode::Train, random: RandomKey { key: [0xdead, 0xbeef], step } };
        let cpu = run(&Device::Cpu, &Dropout::new(p), &[&x], &[], &dout, call);
        let kept = cpu.out.data.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        assert!((kept - (1.0 - p as f64)).abs() < 0.002, "p = {p}: kept {kept}");
        // The backward drops exactly what the forward dropped.
        for (o, d) in cpu.out.data.iter().zip(&cpu.dinputs[0].data) {
            assert_eq!(*o == 0.0, *d == 0.0);
        }
        if let Some(g) = gpu() {
            let gpu = run(&Device::Gpu(g), &Dropout::new(p), &[&x], &[], &dout, call);
            assert!(
                gpu.out.data.iter().zip(&cpu.out.data).all(|(a, b)| a.to_bits() == b.to_bits()),
                "p = {p}: masks differ"
            );
            assert_eq!(gpu.dinputs[0].data, cpu.dinputs[0].data);
        }
        let next = run(
            &Device::Cpu,
            &Dropout::new(p),
            &[&x],
            &[],
            &dout,
            Call { random: RandomKey { step: step + 1, ..call.random }, ..call },
        );
        assert_ne!(next.out.data, cpu.out.data, "p = {p}: the next step must draw another mask");
    }
}

#[test]
fn p_outside_0_1_is_an_error() {
    let e = Dropout::new(1.5).plan(&[&[2, 3]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("Dropout(p=1.5)") && e.contains("between 0 and 1"), "{e}");
}

fn net() -> Model {
    let net = Sequential::new()
        .add("flatten", Flatten::new())
        .add("fc1", Linear::new(48, 32))
        .add("drop", Dropout::new(0.5))
        .add("relu", ReLU)
        .add("fc2", Linear::new(32, 5));
    Model::new(&net, [3, 4, 4], 0).unwrap()
}

#[test]
fn a_network_with_dropout_trains_the_same_on_both_devices_and_after_a_resume() {
    let mut r = rng(52);
    let batches: Vec<(Vec<f32>, Vec<i64>)> =
        (0..4).map(|_| (uniform(&mut r, 8 * 48, -1.0, 1.0), (0..8).map(|_| r.random_range(0..5)).collect())).collect();
    let opts = ExecOptions { optimizer: Some(Optimizer::Sgd(Sgd::new(0.1))), seed: 9, ..Default::default() };
    let losses = |device: &Device| {
        let mut ex = wgrad::executor(device, &net(), 8, opts.clone()).unwrap();
        batches.iter().map(|(x, t)| ex.step(x, t, true).unwrap().unwrap()).collect::<Vec<f32>>()
    };
    let cpu = losses(&Device::Cpu);
    // Resumed after two steps: the same parameters, optimizer state and step counter.
    let mut first = wgrad::executor(&Device::Cpu, &net(), 8, opts.clone()).unwrap();
    for (x, t) in &batches[..2] {
        first.step(x, t, false).unwrap();
    }
    let mut resumed = wgrad::executor(&Device::Cpu, &net(), 8, opts.clone()).unwrap();
    resumed.set_params(&first.params().unwrap()).unwrap();
    resumed.set_optimizer_state(&first.optimizer_state().unwrap()).unwrap();
    let tail: Vec<f32> = batches[2..].iter().map(|(x, t)| resumed.step(x, t, true).unwrap().unwrap()).collect();
    assert_eq!(tail, cpu[2..], "a resumed run must draw the masks the uninterrupted one drew");
    if let Some(g) = gpu() {
        let gpu = losses(&Device::Gpu(g));
        wgrad::testing::assert_close("losses with dropout, GPU vs CPU", &gpu, &cpu, 1e-5, 1e-6);
    }
}

#[test]
fn dropout2d_drops_whole_channels_about_p_the_same_on_both_devices() {
    let mut r = rng(52);
    let (n, c, h, w) = (64, 32, 3, 5);
    let x = rand_tensor(&mut r, &[n, c, h, w], 0.5, 1.5);
    let dout = rand_tensor(&mut r, &[n, c, h, w], -1.0, 1.0);
    let d = Dropout2d::new(0.3);
    assert_eq!(d.describe(), "Dropout2d(p=0.3)");
    let call = Call { mode: Mode::Train, random: RandomKey { key: [7, 9], step: 11 } };
    let cpu = run(&Device::Cpu, &d, &[&x], &[], &dout, call);
    let scale = 1.0 / 0.7f32;
    let mut kept = 0;
    for (k, (out, inp)) in cpu.out.data.chunks(h * w).zip(x.data.chunks(h * w)).enumerate() {
        let dropped = out.iter().all(|&v| v == 0.0);
        let scaled = out.iter().zip(inp).all(|(&o, &i)| o == i * scale);
        assert!(dropped ^ scaled, "plane {k} is neither dropped nor kept whole: {out:?}");
        kept += scaled as usize;
        let g = &cpu.dinputs[0].data[k * h * w..(k + 1) * h * w];
        assert!(g.iter().all(|&v| (v == 0.0) == dropped), "plane {k}: the backward drops what the forward did");
    }
    let frac = kept as f64 / (n * c) as f64;
    assert!((frac - 0.7).abs() < 0.05, "kept {frac} of the channels");
    if let Some(g) = gpu() {
        let gpu = run(&Device::Gpu(g), &d, &[&x], &[], &dout, call);
        assert!(gpu.out.data.iter().zip(&cpu.out.data).all(|(a, b)| a.to_bits() == b.to_bits()), "masks differ");
        assert_eq!(gpu.dinputs[0].data, cpu.dinputs[0].data);
    }
    let want = Want { out: x.data.clone(), dinputs: vec![dout.data.clone()], ..Want::default() };
    check_devices("Dropout2d eval", &d, &[&x], &[], &dout, Call { mode: Mode::Eval, ..call }, &want, ELEMENTWISE);
    let e = d.plan(&[&[4, 8]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("Dropout2d(p=0.3)") && e.contains("expected an (N, C, H, W) input"), "{e}");
}
