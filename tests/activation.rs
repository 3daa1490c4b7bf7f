//! The pointwise activations (LeakyReLU, ELU, GELU both ways, SiLU, Sigmoid, Tanh): CPU (f64) vs
//! finite differences, CPU and GPU vs PyTorch (normal values and both tails, the reprs too), GPU
//! vs CPU at many lengths (one element or four per invocation), NaN passed through, a network
//! with them trained on both devices, and bad arguments.

mod common;
use common::layer::*;
use common::*;
use wgrad::functional::Call;
use wgrad::nn::{
    Approximate, BatchNorm1d, Conv2d, Flatten, LeakyReLU, Linear, Model, Sequential, SiLU, Sigmoid, Tanh, ELU, GELU,
};
use wgrad::ops::activation::{backward_cpu, forward_cpu, Activation, Function};
use wgrad::ops::interface::Op;
use wgrad::testing::assert_close;

/// Every layer, with the defaults and with other arguments.
fn layers() -> Vec<Box<dyn Op>> {
    vec![
        Box::new(LeakyReLU::default()),
        Box::new(LeakyReLU::new(0.2)),
        Box::new(ELU::default()),
        Box::new(ELU::new(0.5)),
        Box::new(GELU::new()),
        Box::new(GELU::new().approximate(Approximate::Tanh)),
        Box::new(SiLU),
        Box::new(Sigmoid),
        Box::new(Tanh),
    ]
}

fn functions() -> Vec<Function> {
    vec![
        LeakyReLU::new(0.2).function(),
        ELU::new(0.5).function(),
        GELU::new().function(),
        GELU::new().approximate(Approximate::Tanh).function(),
        SiLU.function(),
        Sigmoid.function(),
        Tanh.function(),
    ]
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(30);
    // Away from LeakyReLU's and ELU's kink at 0, on both sides.
    let x: Vec<f64> = uniform(&mut r, 60, 0.05, 4.0)
        .iter()
        .enumerate()
        .map(|(i, &v)| if i % 2 == 0 { v as f64 } else { -v as f64 })
        .collect();
    let dout = to_f64(&uniform(&mut r, 60, -1.0, 1.0));
    for f in functions() {
        let run = |x: &[f64]| {
            let mut out = vec![0.0; x.len()];
            forward_cpu(f, &mut out, x);
            out
        };
        let mut dinp = vec![0.0; x.len()];
        backward_cpu(f, &mut dinp, &dout, &x);
        let want = numeric_grad(&x, 1e-6, |v| dot(&dout, &run(v)));
        assert_close(&format!("{} dinp", f.describe()), &dinp, &want, 1e-6, 1e-8);
    }
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    let cases = goldens("activations.safetensors", &["activation"]);
    assert_eq!(cases.len(), 18, "two inputs for each of the nine layers");
    let layers = layers();
    for c in cases {
        let repr = c.str("repr").unwrap();
        let op = layers
            .iter()
            .find(|l| l.describe() == repr)
            .unwrap_or_else(|| panic!("{}: no layer describes itself as PyTorch's {repr}", c.name));
        let (x, dout) = (tensor(&c, "inp"), tensor(&c, "dout"));
        let want = Want { out: c.f32("out").1, dinputs: vec![c.f32("dinp").1], ..Want::default() };
        check_devices(
            &format!("{} {repr}", c.name),
            op.as_ref(),
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
fn gpu_matches_cpu_at_many_lengths() {
    // CPU adapters take four elements per invocation where the length is a multiple of 4 (the
    // kernels' `_vec4` variants), a GPU (one that splits reductions) one.
    for gpu in gpu().into_iter().chain(splitting_gpu()) {
        let mut r = rng(31);
        for op in layers() {
            for &n in &LENGTHS[..7] {
                let x = rand_tensor(&mut r, &[n], -6.0, 6.0);
                let dout = rand_tensor(&mut r, &[n], -1.0, 1.0);
                let name = format!("{} n={n} (split target {})", op.describe(), gpu.split_target());
                gpu_matches_cpu(&name, &gpu, op.as_ref(), &[&x], &[], &dout, Call::default(), ELEMENTWISE);
            }
        }
    }
}

/// NaN passes through, four elements an invocation (CPU adapters' `_vec4` variants) as one, and
/// ±100 (where exp overflows) give numbers, as the CPU path's.
#[test]
fn nan_passes_through_and_the_tails_stay_finite() {
    let x = vec![1.0, f32::NAN, -2.0, 100.0, -100.0, 3.0, -f32::NAN, -1.0];
    let dout = wgrad::Tensor::new(&[2, 4], vec![1.0; 8]).unwrap();
    let inp = wgrad::Tensor::new(&[2, 4], x.clone()).unwrap();
    for op in layers() {
        let name = op.describe();
        let f = function_of(op.as_ref());
        let mut want = vec![0f32; 8];
        forward_cpu(f, &mut want, &x);
        let mut dwant = vec![0f32; 8];
        backward_cpu(f, &mut dwant, &[1.0; 8], &x);
        assert!(want[1].is_nan() && want[6].is_nan(), "{name} cpu: {want:?}");
        for i in [0, 2, 3, 4, 5, 7] {
            assert!(want[i].is_finite() && dwant[i].is_finite(), "{name} cpu at {}: {} {}", x[i], want[i], dwant[i]);
        }
        let Some(g) = gpu() else { continue };
        let got = run(&wgrad::Device::Gpu(g), op.as_ref(), &[&inp], &[], &dout, Call::default());
        for (i, (g, w)) in got.out.data.iter().zip(&want).enumerate() {
            let same = (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-5 * w.abs().max(1.0);
            assert!(same, "{name} on the GPU: out[{i}] = {g}, want {w}");
        }
        for i in [0, 2, 3, 4, 5, 7] {
            let (g, w) = (got.dinputs[0].data[i], dwant[i]);
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{name} on the GPU: dinp[{i}] = {g}, want {w}");
        }
    }
}

fn function_of(op: &dyn Op) -> Function {
    functions_with_defaults().into_iter().find(|f| f.describe() == op.describe()).unwrap()
}

fn functions_with_defaults() -> Vec<Function> {
    let mut v = functions();
    v.extend([LeakyReLU::default().function(), ELU::default().function()]);
    v
}

/// A network that uses every activation (and a BatchNorm1d) trains to the same numbers on the GPU
/// as on the CPU path, evaluates alike, and names its layers as PyTorch prints them.
#[test]
fn a_network_of_every_activation_trains_alike_on_both_devices() {
    let net = Sequential::new()
        .add("conv1", Conv2d::new(3, 8, 3).padding(1))
        .add("act1", GELU::new())
        .add("conv2", Conv2d::new(8, 8, 3).stride(2).padding(1))
        .add("act2", LeakyReLU::new(0.1))
        .add("conv3", Conv2d::new(8, 8, 3).stride(2).padding(1))
        .add("act3", ELU::default())
        .add("conv4", Conv2d::new(8, 4, 3).stride(2).padding(1))
        .add("act4", SiLU)
        .add("flatten", Flatten::new())
        .add("fc1", Linear::new(64, 32))
        .add("bn", BatchNorm1d::new(32))
        .add("act5", Tanh)
        .add("fc2", Linear::new(32, 16))
        .add("act6", Sigmoid)
        .add("fc3", Linear::new(16, 10));
    let model = Model::new(&net, [3, 32, 32], 3).unwrap();
    let text = model.describe();
    for repr in ["(act1): GELU(approximate='none')", "(act2): LeakyReLU(negative_slope=0.1)", "(act3): ELU(alpha=1.0)"]
    {
        assert!(text.contains(repr), "{repr} not in\n{text}");
    }
    let batch = 4;
    let mut r = rng(32);
    let images = uniform(&mut r, batch * 3 * 32 * 32, 0.0, 1.0);
    let targets: Vec<i64> = (0..batch as i64).map(|i| i * 3 % 10).collect();
    let opts = wgrad::ExecOptions {
        optimizer: Some(wgrad::optim::Optimizer::Sgd(wgrad::optim::Sgd::new(0.1))),
        ..Default::default()
    };
    // f32, and mixed precision (f16 operands in the convolutions and Linears; the activations
    // read and write f32 either way), held to looser tolerances. The parameters within a tenth of
    // the loss's tolerance in relative L2 (f16's rounding, through a BatchNorm1d of 4 values a
    // feature, moves single small entries far more); eval mode reads BatchNorm1d's running
    // statistics.
    trains_alike_on_both_devices(&model, &images, &targets, &opts, 0.1);
    assert!(text.contains("(bn): BatchNorm1d(32, eps=1e-05"), "{text}");
    let keys: Vec<&str> = model.params.specs.iter().map(|s| s.key.as_str()).collect();
    assert!(keys.contains(&"bn.running_var") && keys.contains(&"bn.num_batches_tracked"), "{keys:?}");
}

#[test]
fn a_non_finite_argument_is_an_error_naming_the_layer() {
    for (op, repr) in [
        (Box::new(LeakyReLU::new(f32::NAN)) as Box<dyn Op>, "LeakyReLU(negative_slope=nan)"),
        (Box::new(ELU::new(f32::INFINITY)), "ELU(alpha=inf)"),
    ] {
        let e = op.plan(&[&[2, 3]], Default::default()).err().expect("planned").to_string();
        assert!(e.contains(repr) && e.contains("must be a finite number"), "{e}");
    }
}
