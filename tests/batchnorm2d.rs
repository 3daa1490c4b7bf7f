//! BatchNorm2d: CPU (f64) vs finite differences through the batch statistics, CPU and GPU vs
//! PyTorch (train mode with running statistics updated, eval mode, momentum and eps, no affine, no
//! running statistics, batch 1, a large N·H·W with a large mean), GPU vs CPU at batch 1024, and
//! PyTorch's error for a single value per channel in train mode. BatchNorm1d (the same kernels on
//! (N, C) and (N, C, L)): CPU and GPU vs PyTorch, its repr, shapes and errors.

mod common;
use common::layer::*;
use common::*;
use wgrad::functional::Call;
use wgrad::ops::batchnorm2d::{backward_cpu, forward_cpu, BatchNorm1d, BatchNorm2d, Geometry};
use wgrad::ops::interface::{Mode, Op};
use wgrad::testing::assert_close;
use wgrad::Tensor;

fn layer(c: &Case) -> (BatchNorm2d, Mode) {
    let m = &c.meta;
    let bn = BatchNorm2d::new(m["num_features"].as_u64().unwrap() as usize)
        .eps(m["eps"].as_f64().unwrap() as f32)
        .momentum(m["momentum"].as_f64().unwrap() as f32)
        .affine(m["affine"].as_bool().unwrap())
        .track_running_stats(m["track_running_stats"].as_bool().unwrap());
    (bn, if m["train"].as_bool().unwrap() { Mode::Train } else { Mode::Eval })
}

/// weight, bias, running_mean, running_var (those the layer has), from `prefix` ("before"/"after").
fn state(c: &Case, bn: &BatchNorm2d, prefix: &str) -> Vec<Tensor> {
    let mut keys = Vec::new();
    if bn.affine {
        keys.extend(["weight", "bias"]);
    }
    if bn.track_running_stats {
        keys.extend(["running_mean", "running_var"]);
    }
    keys.iter().map(|k| tensor(c, &format!("{prefix}.{k}"))).collect()
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    for c in goldens("batchnorm2d.safetensors", &["batchnorm2d"]) {
        let (bn, _) = layer(&c);
        matches_pytorch(&c, &bn);
    }
}

/// `op` (the case's layer, or its BatchNorm1d) on the case's input and state: output (of the
/// input's shape), gradients and updated state as PyTorch's, on the CPU path, the GPU and a GPU
/// that splits its reductions (the chunking a big GPU uses: lavapipe's own takes up to 64 values
/// a thread).
fn matches_pytorch(c: &Case, op: &dyn Op) {
    let (bn, mode) = layer(c);
    let (x, dout) = (tensor(c, "inp"), tensor(c, "dout"));
    let before = state(c, &bn, "before");
    let before: Vec<&Tensor> = before.iter().collect();
    let want = Want {
        out: c.f32("out").1,
        dinputs: vec![c.f32("dinp").1],
        dparams: if bn.affine { vec![c.f32("dweight").1, c.f32("dbias").1] } else { vec![] },
        state: state(c, &bn, "after").into_iter().map(|t| t.data).collect(),
    };
    let call = Call { mode, ..Call::default() };
    let got = run(&wgrad::Device::Cpu, op, &[&x], &before, &dout, call);
    assert_eq!(got.out.shape, x.shape, "{}: the output has the input's shape", c.name);
    check_devices(&c.name, op, &[&x], &before, &dout, call, &want, REDUCTION);
    if let Some(g) = splitting_gpu() {
        let got = run(&wgrad::Device::Gpu(g), op, &[&x], &before, &dout, call);
        compare(&format!("{} gpu, split", c.name), &got, &want, REDUCTION);
    }
}

fn geometry(n: usize, c: usize, h: usize, w: usize, batch_stats: bool) -> Geometry {
    Geometry {
        rank: 4,
        n,
        c,
        hw: h * w,
        h,
        w,
        eps: 1e-5,
        momentum: 0.1,
        affine: true,
        batch_stats,
        update_running: false,
        running: !batch_stats,
    }
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(30);
    for batch_stats in [true, false] {
        let g = geometry(3, 2, 2, 3, batch_stats);
        let n = 3 * 2 * 6;
        let x = to_f64(&uniform(&mut r, n, -2.0, 2.0));
        let (w, b) = (to_f64(&uniform(&mut r, 2, 0.5, 1.5)), to_f64(&uniform(&mut r, 2, -0.5, 0.5)));
        let (rm, rv) = (to_f64(&uniform(&mut r, 2, -0.5, 0.5)), to_f64(&uniform(&mut r, 2, 0.5, 2.0)));
        let dout = to_f64(&uniform(&mut r, n, -1.0, 1.0));
        let fwd = |x: &[f64], w: &[f64], b: &[f64]| {
            let (mut out, mut mean, mut invstd) = (vec![0.0; n], vec![0.0; 2], vec![0.0; 2]);
            let (mut rm, mut rv) = (rm.clone(), rv.clone());
            let stats = batch_stats.then_some((&mut mean[..], &mut invstd[..]));
            let running = (!batch_stats).then_some(());
            forward_cpu(
                &g,
                &mut out,
                stats,
                x,
                Some(w),
                Some(b),
                running.map(|_| &mut rm[..]),
                running.map(|_| &mut rv[..]),
            );
            (out, mean, invstd)
        };
        let (_, mean, invstd) = fwd(&x, &w, &b);
        let (m, s) = if batch_stats { (&mean, &invstd) } else { (&rm, &rv) };
        let (mut dx, mut dw, mut db) = (vec![0.0; n], vec![0.0; 2], vec![0.0; 2]);
        backward_cpu(&g, Some(&mut dx), Some(&mut dw), Some(&mut db), &dout, &x, m, s, Some(&w));
        let what = if batch_stats { "batch statistics" } else { "running statistics" };
        let num = |f: &dyn Fn(&[f64]) -> Vec<f64>, at: &[f64]| numeric_grad(at, 1e-6, |v| dot(&dout, &f(v)));
        assert_close(&format!("{what} dinp"), &dx, &num(&|v| fwd(v, &w, &b).0, &x), 1e-6, 1e-8);
        assert_close(&format!("{what} dweight"), &dw, &num(&|v| fwd(&x, v, &b).0, &w), 1e-6, 1e-8);
        assert_close(&format!("{what} dbias"), &db, &num(&|v| fwd(&x, &w, v).0, &b), 1e-6, 1e-8);
    }
}

#[test]
fn gpu_matches_cpu_on_random_shapes_and_at_batch_1024() {
    // Both chunkings of the statistics: the CPU adapter's (up to 64 values a thread) and a big
    // GPU's (up to 64 chunks a channel).
    for gpu in gpu().into_iter().chain(splitting_gpu()) {
        random_shapes_and_batch_1024(&gpu);
    }
}

fn random_shapes_and_batch_1024(gpu: &std::sync::Arc<wgrad::Gpu>) {
    let mut r = rng(31);
    // Odd sizes, one spatial element, batch 1024 with values around 1 ± 0.1 (262,144 values per
    // channel: a one-pass f32 Σx² − (Σx)²/M would lose most of the variance), and more.
    for (shape, scale, offset) in [
        ([3, 5, 7, 9], 1.0, 0.0),
        ([2, 3, 1, 1], 1.0, 0.5),
        ([1, 4, 5, 5], 2.0, -1.0),
        ([1024, 2, 16, 16], 0.1, 1.0),
        // Many values a thread over planes smaller and larger than a workgroup's 256 that do
        // not divide it: the statistics' walk over (image, position) wraps mid-plane.
        ([64, 3, 7, 9], 1.0, 0.0),
        ([8, 2, 30, 30], 1.0, 0.25),
        // Planes of runs of 16 but not 64 elements (CPU adapters' normalisation takes runs of the
        // largest of 64, 16 and 4 that divides a plane).
        ([4, 3, 4, 12], 1.0, 0.0),
    ] {
        let c = shape[1];
        let x = Tensor::new(
            &shape,
            uniform(&mut r, shape.iter().product(), -1.0, 1.0).iter().map(|v| v * scale + offset).collect(),
        )
        .unwrap();
        let dout = rand_tensor(&mut r, &shape, -1.0, 1.0);
        let state = [
            rand_tensor(&mut r, &[c], 0.5, 1.5),
            rand_tensor(&mut r, &[c], -0.5, 0.5),
            rand_tensor(&mut r, &[c], -0.5, 0.5),
            rand_tensor(&mut r, &[c], 0.5, 2.0),
        ];
        let st: Vec<&Tensor> = state.iter().collect();
        for mode in [Mode::Train, Mode::Eval] {
            let call = Call { mode, ..Call::default() };
            gpu_matches_cpu(
                &format!("{shape:?} {mode:?} (split target {})", gpu.split_target()),
                gpu,
                &BatchNorm2d::new(c),
                &[&x],
                &st,
                &dout,
                call,
                REDUCTION,
            );
        }
    }
}

#[test]
fn batch_statistics_are_accurate_at_batch_1024() {
    // With momentum 1 the running statistics become the batch's mean and unbiased variance: on the
    // GPU (f32 Welford per chunk, Chan's merge) they match the CPU path's f64 sums to 1e-5 for
    // values around 10 ± 0.06, where the variance is 3e-5 of the mean square.
    for gpu in gpu().into_iter().chain(splitting_gpu()) {
        accurate_at_batch_1024(gpu);
    }
}

fn accurate_at_batch_1024(gpu: std::sync::Arc<wgrad::Gpu>) {
    let mut r = rng(32);
    let shape = [1024, 2, 16, 16];
    let x = Tensor::new(&shape, uniform(&mut r, shape.iter().product(), -0.1, 0.1).iter().map(|v| v + 10.0).collect())
        .unwrap();
    let dout = rand_tensor(&mut r, &shape, -1.0, 1.0);
    let state =
        [Tensor::new(&[2], vec![1.0; 2]).unwrap(), Tensor::zeros(&[2]), Tensor::zeros(&[2]), Tensor::zeros(&[2])];
    let st: Vec<&Tensor> = state.iter().collect();
    let bn = BatchNorm2d::new(2).momentum(1.0);
    let cpu = run(&wgrad::Device::Cpu, &bn, &[&x], &st, &dout, Call::default());
    let got = run(&wgrad::Device::Gpu(gpu), &bn, &[&x], &st, &dout, Call::default());
    assert_close("batch mean", &got.state[2].data, &cpu.state[2].data, 1e-6, 0.0);
    assert_close("batch variance", &got.state[3].data, &cpu.state[3].data, 1e-5, 0.0);
}

#[test]
fn one_value_per_channel_in_train_mode_is_pytorchs_error() {
    let bn = BatchNorm2d::new(3);
    let e = bn.plan(&[&[1, 3, 1, 1]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("Expected more than 1 value per channel when training") && e.contains("[1, 3, 1, 1]"), "{e}");
    assert!(bn.plan(&[&[1, 3, 1, 1]], Mode::Eval).is_ok(), "eval mode uses the running statistics");
    let e = bn.plan(&[&[2, 4, 3, 3]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("BatchNorm2d(3") && e.contains("4 channels"), "{e}");
}

#[test]
fn batchnorm1d_cpu_and_gpu_match_pytorch() {
    let cases = goldens("batchnorm1d.safetensors", &["batchnorm1d"]);
    assert_eq!(cases.len(), 7);
    for c in cases {
        matches_pytorch(&c, &BatchNorm1d(layer(&c).0));
    }
}

#[test]
fn batchnorm1d_is_pytorchs_repr_shapes_and_errors() {
    let bn = BatchNorm1d::new(4).momentum(0.2);
    assert_eq!(bn.describe(), "BatchNorm1d(4, eps=1e-05, momentum=0.2, affine=True, track_running_stats=True)");
    let keys: Vec<String> = bn.params().iter().map(|p| p.name.to_string()).collect();
    assert_eq!(keys, ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]);
    for shape in [&[2usize, 4][..], &[2, 4, 5]] {
        assert_eq!(bn.plan(&[shape], Mode::Train).unwrap().out_shape(), shape);
    }
    let e = bn.plan(&[&[2, 4, 3, 3]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("BatchNorm1d(4") && e.contains("expected an (N, C) or (N, C, L) input"), "{e}");
    let e = bn.plan(&[&[1, 4]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("BatchNorm1d(4") && e.contains("Expected more than 1 value per channel when training"), "{e}");
    let e = bn.plan(&[&[3, 5]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("5 channels"), "{e}");
}
