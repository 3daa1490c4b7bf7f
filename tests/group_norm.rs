//! GroupNorm, and LayerNorm and InstanceNorm1d/2d/3d (on GroupNorm's kernels).
//!
//! GroupNorm: CPU (f64) vs finite differences through the group statistics, CPU and GPU vs
//! PyTorch (several groups, one, one channel a group, no affine, no bias, another eps, (N, C) and
//! (N, C, L) inputs, groups with a large mean), GPU vs CPU on random sizes (groups of 1 to over
//! 20,000 values), its repr and state-dict entries, and bad input. LayerNorm: CPU and GPU vs
//! PyTorch (over one, two and three last dimensions, no affine, no bias, eps, a large mean), GPU vs
//! CPU on random sizes, repr, entries and bad input. InstanceNorm2d: CPU and GPU vs PyTorch (with
//! and without affine and bias, eps, a large mean), repr, entries and errors; InstanceNorm1d and
//! 3d: CPU and GPU vs PyTorch, errors. A network of all three trains alike on both devices.

mod common;
use common::layer::*;
use common::*;
use rand::Rng;
use wgrad::functional::Call;
use wgrad::ops::group_norm::{
    backward_cpu, forward_cpu, Geometry, GroupNorm, InstanceNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d,
    LayerNorm,
};
use wgrad::ops::interface::{Mode, Op};
use wgrad::testing::assert_close;
use wgrad::Tensor;

fn layer(c: &Case) -> GroupNorm {
    let m = &c.meta;
    let u = |k: &str| m[k].as_u64().unwrap() as usize;
    GroupNorm::new(u("num_groups"), u("num_channels"))
        .eps(m["eps"].as_f64().unwrap() as f32)
        .affine(m["affine"].as_bool().unwrap())
        .bias(m["bias"].as_bool().unwrap())
}

/// The case's layer `op` (its parameters named as the golden names them) on the case's input: its
/// repr, output (of the input's shape) and gradients as PyTorch's, on the CPU path and the GPU, in
/// train mode and (the same: no running statistics) in eval mode.
fn matches_pytorch(c: &Case, op: &dyn Op) {
    assert_eq!(op.describe(), c.str("repr").unwrap(), "PyTorch's repr");
    let (x, dout) = (tensor(c, "inp"), tensor(c, "dout"));
    let names: Vec<&str> = op.params().iter().map(|p| p.name).collect();
    let state: Vec<Tensor> = names.iter().map(|k| tensor(c, k)).collect();
    let state: Vec<&Tensor> = state.iter().collect();
    let want = Want {
        out: c.f32("out").1,
        dinputs: vec![c.f32("dinp").1],
        dparams: names.iter().map(|k| c.f32(&format!("d{k}")).1).collect(),
        ..Want::default()
    };
    let got = run(&wgrad::Device::Cpu, op, &[&x], &state, &dout, Call::default());
    assert_eq!(got.out.shape, x.shape, "{}: the output has the input's shape", c.name);
    check_devices(&c.name, op, &[&x], &state, &dout, Call::default(), &want, REDUCTION);
    let eval = Call { mode: Mode::Eval, ..Call::default() };
    let got = run(&wgrad::Device::Cpu, op, &[&x], &state, &dout, eval);
    compare(&format!("{} eval", c.name), &got, &Want { out: want.out.clone(), ..Want::default() }, REDUCTION);
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    for c in goldens("group_norm.safetensors", &["group_norm"]) {
        matches_pytorch(&c, &layer(&c));
    }
}

#[test]
fn layer_norm_matches_pytorch() {
    for c in goldens("group_norm.safetensors", &["layer_norm"]) {
        let m = &c.meta;
        let ln = LayerNorm::new(c.usizes("normalized_shape"))
            .eps(m["eps"].as_f64().unwrap() as f32)
            .elementwise_affine(m["elementwise_affine"].as_bool().unwrap())
            .bias(m["bias"].as_bool().unwrap());
        matches_pytorch(&c, &ln);
    }
}

/// `functional::group_norm` and `layer_norm`, as F.group_norm and F.layer_norm: the layers' output
/// and gradients on a golden case of each.
#[test]
fn functional_group_norm_and_layer_norm_are_the_layers() {
    use wgrad::functional::{group_norm, layer_norm};
    let c = goldens("group_norm.safetensors", &["group_norm"]).into_iter().find(|c| c.name == "gn_groups3").unwrap();
    let (x, dout, w, b) = (tensor(&c, "inp"), tensor(&c, "dout"), tensor(&c, "weight"), tensor(&c, "bias"));
    let got = group_norm(&wgrad::Device::Cpu, &layer(&c), &x, &[&w, &b], Some(&dout)).unwrap();
    let want = Want {
        out: c.f32("out").1,
        dinputs: vec![c.f32("dinp").1],
        dparams: vec![c.f32("dweight").1, c.f32("dbias").1],
        ..Want::default()
    };
    compare("F.group_norm", &got, &want, REDUCTION);
    let c = goldens("group_norm.safetensors", &["layer_norm"]).into_iter().find(|c| c.name == "ln_two_dims").unwrap();
    let (x, w, b) = (tensor(&c, "inp"), tensor(&c, "weight"), tensor(&c, "bias"));
    let got = layer_norm(&wgrad::Device::Cpu, &LayerNorm::new([4, 5]), &x, &[&w, &b], None).unwrap();
    compare("F.layer_norm", &got, &Want { out: c.f32("out").1, ..Want::default() }, REDUCTION);
}

#[test]
fn instance_norm_matches_pytorch() {
    fn check<const D: usize>() {
        let cases = goldens("group_norm.safetensors", &[&format!("instance_norm{D}d")]);
        assert!(cases.len() >= 2, "InstanceNorm{D}d has {} cases", cases.len());
        for c in cases {
            let m = &c.meta;
            let inorm = InstanceNorm::<D>::new(m["num_features"].as_u64().unwrap() as usize)
                .eps(m["eps"].as_f64().unwrap() as f32)
                .affine(m["affine"].as_bool().unwrap())
                .bias(m["bias"].as_bool().unwrap());
            matches_pytorch(&c, &inorm);
        }
    }
    check::<1>();
    check::<2>();
    check::<3>();
}

#[test]
fn instance_norms_entries_and_errors_are_pytorchs() {
    let names = |i: InstanceNorm2d| i.params().iter().map(|p| p.name).collect::<Vec<_>>();
    assert!(names(InstanceNorm2d::new(3)).is_empty(), "no affine parameters by default");
    assert_eq!(names(InstanceNorm2d::new(3).affine(true)), ["weight", "bias"]);
    let plan = |i: InstanceNorm2d, shape: &[usize], mode| i.plan(&[shape], mode).err().map(|e| e.to_string());
    let e = plan(InstanceNorm2d::new(3), &[2, 3], Mode::Train).unwrap();
    assert!(e.contains("InstanceNorm2d(3, eps=1e-05") && e.contains("expected an (N, C, H, W) input"), "{e}");
    let e = plan(InstanceNorm2d::new(3), &[2, 3, 1, 1], Mode::Train).unwrap();
    assert!(e.contains("Expected more than 1 spatial element when training, got input size [2, 3, 1, 1]"), "{e}");
    assert!(plan(InstanceNorm2d::new(3), &[2, 3, 1, 1], Mode::Eval).is_none());
    // Without affine parameters the channel count is the input's (PyTorch only warns); with
    // them it must match.
    assert!(plan(InstanceNorm2d::new(3), &[2, 4, 2, 2], Mode::Train).is_none());
    let e = plan(InstanceNorm2d::new(3).affine(true), &[2, 4, 2, 2], Mode::Train).unwrap();
    assert!(e.contains("InstanceNorm2d(3") && e.contains("has 4 channels, the layer 3"), "{e}");
    let e = InstanceNorm1d::new(3).plan(&[&[2, 3, 4, 4]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("InstanceNorm1d(3, eps=1e-05") && e.contains("expected an (N, C, L) input"), "{e}");
    let e = InstanceNorm3d::new(3).plan(&[&[2, 3, 1, 1, 1]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("InstanceNorm3d(3") && e.contains("more than 1 spatial element"), "{e}");
    assert!(InstanceNorm3d::new(3).plan(&[&[2, 3, 1, 1, 2]], Mode::Train).is_ok());
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(51);
    for (shape, groups, affine) in
        [(vec![2, 6, 3, 2], 3, true), (vec![3, 4, 5], 1, true), (vec![2, 4, 2, 2], 4, false), (vec![5, 2], 2, true)]
    {
        let gn = GroupNorm::new(groups, shape[1]).affine(affine);
        let g = Geometry {
            shape: shape.clone(),
            n: shape[0],
            c: shape[1],
            groups,
            hw: shape[2..].iter().product(),
            eps: 1e-5,
            affine,
            bias: affine,
        };
        let len: usize = shape.iter().product();
        let c = shape[1];
        let x = to_f64(&uniform(&mut r, len, -1.0, 1.0));
        let w = to_f64(&uniform(&mut r, c, 0.5, 1.5));
        let b = to_f64(&uniform(&mut r, c, -0.5, 0.5));
        let dout = to_f64(&uniform(&mut r, len, -1.0, 1.0));
        let ng = shape[0] * groups;
        let f = |x: &[f64], w: &[f64], b: &[f64]| {
            let (mut out, mut mean, mut rstd) = (vec![0.0; len], vec![0.0; ng], vec![0.0; ng]);
            let (w, b) = if affine { (Some(w), Some(b)) } else { (None, None) };
            forward_cpu(&g, &mut out, &mut mean, &mut rstd, x, w, b);
            (out, mean, rstd)
        };
        let (_, mean, rstd) = f(&x, &w, &b);
        let (mut dinp, mut dw, mut db) = (vec![0.0; len], vec![0.0; c], vec![0.0; c]);
        let (dwo, dbo) = if affine { (Some(&mut dw[..]), Some(&mut db[..])) } else { (None, None) };
        backward_cpu(&g, Some(&mut dinp), dwo, dbo, &dout, &x, &mean, &rstd, affine.then_some(&w[..]));
        let name = gn.describe();
        let numeric = numeric_grad(&x, 1e-6, |v| dot(&dout, &f(v, &w, &b).0));
        assert_close(&format!("{name} dinp"), &dinp, &numeric, 1e-6, 1e-8);
        if affine {
            let numeric = numeric_grad(&w, 1e-6, |v| dot(&dout, &f(&x, v, &b).0));
            assert_close(&format!("{name} dweight"), &dw, &numeric, 1e-6, 1e-8);
            let numeric = numeric_grad(&b, 1e-6, |v| dot(&dout, &f(&x, &w, v).0));
            assert_close(&format!("{name} dbias"), &db, &numeric, 1e-6, 1e-8);
        }
    }
}

/// Random shapes and group counts: groups of a few values (fewer than a workgroup's invocations)
/// to over 20,000, with and without affine parameters and bias. Not groups of two values: each
/// normalises to ±1 whatever its values, so its input gradient is rounding error alone.
#[test]
fn gpu_matches_cpu_on_random_sizes() {
    let Some(gpu) = gpu() else { return };
    let mut r = rng(52);
    for i in 0..20 {
        let groups = [1, 2, 3, 4][r.random_range(0..4)];
        let c = groups * r.random_range(1..=5);
        let shape = match i % 4 {
            0 => vec![r.random_range(1..=5), c],
            1 => vec![r.random_range(1..=4), c, r.random_range(1..=40)],
            _ => vec![r.random_range(1..=4), c, r.random_range(1..=70), r.random_range(1..=70)],
        };
        if c / groups * shape[2..].iter().product::<usize>() == 2 {
            continue;
        }
        let gn = GroupNorm::new(groups, c).affine(i % 3 != 2).bias(i % 4 != 1);
        let x = rand_tensor(&mut r, &shape, -2.0, 3.0);
        let dout = rand_tensor(&mut r, &shape, -1.0, 1.0);
        let state = [rand_tensor(&mut r, &[c], 0.5, 1.5), rand_tensor(&mut r, &[c], -0.5, 0.5)];
        let state: Vec<&Tensor> = state.iter().take(gn.params().len()).collect();
        let name = format!("{} on {shape:?}", gn.describe());
        gpu_matches_cpu(&name, &gpu, &gn, &[&x], &state, &dout, Call::default(), REDUCTION);
    }
}

/// LayerNorm over random last dimensions of random shapes, with and without affine and bias.
#[test]
fn layer_norm_gpu_matches_cpu_on_random_sizes() {
    let Some(gpu) = gpu() else { return };
    let mut r = rng(54);
    for i in 0..12 {
        let rank = r.random_range(2..=4);
        let shape: Vec<usize> = (0..rank).map(|_| r.random_range(1..=[9, 40, 300][i % 3])).collect();
        let last = r.random_range(1..rank);
        let normalized = shape[rank - last..].to_vec();
        if normalized.iter().product::<usize>() <= 2 {
            continue;
        }
        let ln = LayerNorm::new(normalized.clone()).elementwise_affine(i % 4 != 3).bias(i % 3 != 1);
        let x = rand_tensor(&mut r, &shape, -2.0, 3.0);
        let dout = rand_tensor(&mut r, &shape, -1.0, 1.0);
        let state = [rand_tensor(&mut r, &normalized, 0.5, 1.5), rand_tensor(&mut r, &normalized, -0.5, 0.5)];
        let state: Vec<&Tensor> = state.iter().take(ln.params().len()).collect();
        let name = format!("{} on {shape:?}", ln.describe());
        gpu_matches_cpu(&name, &gpu, &ln, &[&x], &state, &dout, Call::default(), REDUCTION);
    }
}

#[test]
fn layer_norms_entries_and_errors_are_pytorchs() {
    let ln = LayerNorm::new([3, 4]);
    assert_eq!(ln.describe(), "LayerNorm((3, 4), eps=1e-05, elementwise_affine=True, bias=True)");
    let entries = |ln: &LayerNorm| ln.params().iter().map(|p| (p.name, p.shape.clone())).collect::<Vec<_>>();
    assert_eq!(entries(&ln), [("weight", vec![3, 4]), ("bias", vec![3, 4])]);
    assert_eq!(entries(&ln.clone().bias(false)), [("weight", vec![3, 4])]);
    assert!(entries(&ln.clone().elementwise_affine(false)).is_empty());
    let e = LayerNorm::new([4]).plan(&[&[2, 5]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("Given normalized_shape=[4], expected input with shape [*, 4]") && e.contains("[2, 5]"), "{e}");
    let e = LayerNorm::new([4]).plan(&[&[4]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("and a batch dimension"), "{e}");
    let e = LayerNorm::new(Vec::<usize>::new()).plan(&[&[2, 4]], Mode::Train).err().unwrap().to_string();
    assert!(e.contains("normalized_shape must be non-empty and positive"), "{e}");
}

#[test]
fn its_entries_are_pytorchs() {
    let gn = GroupNorm::new(2, 4);
    assert_eq!(gn.describe(), "GroupNorm(2, 4, eps=1e-05, affine=True, bias=True)");
    let names = |gn: GroupNorm| gn.params().iter().map(|p| (p.name, p.shape.clone())).collect::<Vec<_>>();
    assert_eq!(names(gn), [("weight", vec![4]), ("bias", vec![4])]);
    assert_eq!(names(gn.bias(false)), [("weight", vec![4])]);
    assert!(names(gn.affine(false)).is_empty());
    assert_eq!(gn.affine(false).describe(), "GroupNorm(2, 4, eps=1e-05, affine=False, bias=False)");
}

#[test]
fn bad_input_is_an_error() {
    let plan = |gn: GroupNorm, shape: &[usize]| gn.plan(&[shape], Mode::Train).err().unwrap().to_string();
    let e = plan(GroupNorm::new(3, 4), &[2, 4, 3, 3]);
    assert!(e.contains("GroupNorm(3, 4") && e.contains("num_channels (4) must be divisible by num_groups (3)"), "{e}");
    let e = plan(GroupNorm::new(2, 4), &[2, 6, 3, 3]);
    assert!(e.contains("input [2, 6, 3, 3] has 6 channels, the layer 4"), "{e}");
    let e = plan(GroupNorm::new(2, 4), &[4]);
    assert!(e.contains("expected an (N, C, *) input, got shape [4]"), "{e}");
    let e = plan(GroupNorm::new(0, 4), &[2, 4]);
    assert!(e.contains("num_groups must be positive"), "{e}");
    let e = plan(GroupNorm::new(2, 4), &[2, 4, 0]);
    assert!(e.contains("empty input"), "{e}");
    let e = plan(GroupNorm::new(2, 4).eps(0.0), &[2, 4]);
    assert!(e.contains("eps must be positive"), "{e}");
}

/// A network with GroupNorm layers (with and without bias), an InstanceNorm2d and a LayerNorm
/// trains to the same numbers on the GPU as on the CPU path, in f32 and in mixed precision
/// (looser), and evaluates alike; its entries are named as PyTorch's state dict names them.
#[test]
fn a_network_with_group_instance_and_layer_norms_trains_alike_on_both_devices() {
    use wgrad::nn::{Conv2d, Flatten, Linear, Model, ReLU, Sequential};
    // GroupNorms and an InstanceNorm2d after the convolutions, a LayerNorm after the first Linear.
    let net = Sequential::new()
        .add("conv1", Conv2d::new(3, 8, 3).padding(1).bias(false))
        .add("gn1", GroupNorm::new(4, 8))
        .add("relu1", ReLU)
        .add("conv2", Conv2d::new(8, 8, 3).stride(4).padding(1).bias(false))
        .add("gn2", GroupNorm::new(1, 8).bias(false))
        .add("in2", InstanceNorm2d::new(8).affine(true))
        .add("relu2", ReLU)
        .add("flatten", Flatten::new())
        .add("fc1", Linear::new(8 * 8 * 8, 32))
        .add("ln", LayerNorm::new([32]))
        .add("relu3", ReLU)
        .add("fc2", Linear::new(32, 10));
    let model = Model::new(&net, [3, 32, 32], 5).unwrap();
    let keys: Vec<&str> = model.params.specs.iter().map(|s| s.key.as_str()).collect();
    let want = ["conv1.weight", "gn1.weight", "gn1.bias", "conv2.weight", "gn2.weight", "in2.weight", "in2.bias"];
    assert_eq!(keys[..7], want);
    assert_eq!(keys[7..], ["fc1.weight", "fc1.bias", "ln.weight", "ln.bias", "fc2.weight", "fc2.bias"]);
    assert!(model.describe().contains("(gn1): GroupNorm(4, 8, eps=1e-05, affine=True, bias=True)"));
    let batch = 4;
    let mut r = rng(53);
    let images = uniform(&mut r, batch * 3 * 32 * 32, 0.0, 1.0);
    let targets: Vec<i64> = (0..batch as i64).map(|i| i * 3 % 10).collect();
    let opts = wgrad::ExecOptions {
        optimizer: Some(wgrad::optim::Optimizer::Sgd(wgrad::optim::Sgd::new(0.02))),
        ..Default::default()
    };
    // The parameters within half the loss's tolerance in relative L2 (in mixed precision, from the
    // f16 operands of the two convolutions and two Linears: 6.5e-4 with the InstanceNorm2d, 3.1e-3
    // without it).
    trains_alike_on_both_devices(&model, &images, &targets, &opts, 0.5);
}
