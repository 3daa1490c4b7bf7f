//! Conv2d: CPU vs finite differences (f64), CPU and GPU vs PyTorch, GPU vs CPU on seeded random
//! configurations (odd sizes, stride, padding, dilation, kernel 1/3/5, bias or not, batch 1 and 64,
//! channel counts off any tile size, split weight gradients), a non-finite image kept to itself,
//! and bad input.

mod common;
use common::*;
use rand::Rng;
use std::sync::Arc;
use wgrad::cpu::Real;
use wgrad::ops::conv2d::*;
use wgrad::testing::assert_close;
use wgrad::{Device, Tensor};

fn config(c: &Case) -> Conv2d {
    let pair = |k: &str| {
        let v = c.usizes(k);
        (v[0], v[1])
    };
    Conv2d {
        in_channels: c.meta["in_channels"].as_u64().unwrap() as usize,
        out_channels: c.meta["out_channels"].as_u64().unwrap() as usize,
        kernel: pair("kernel"),
        stride: pair("stride"),
        padding: pair("padding"),
        dilation: pair("dilation"),
        bias: c.meta["bias"].as_bool().unwrap(),
    }
}

struct Out<T> {
    out: Vec<T>,
    dinp: Vec<T>,
    dweight: Vec<T>,
    dbias: Option<Vec<T>>,
}

fn forward<T: Real>(g: &Geometry, x: &[T], w: &[T], b: Option<&[T]>) -> Vec<T> {
    let mut out = vec![T::zero(); g.out_shape().iter().product()];
    forward_cpu(g, &mut out, x, w, b);
    out
}

/// The CPU path's forward and backward (the code the executor runs, in f32 or f64).
fn run_cpu<T: Real>(g: &Geometry, x: &[T], w: &[T], b: Option<&[T]>, dout: &[T]) -> Out<T> {
    let mut dinp = vec![T::zero(); x.len()];
    let mut dweight = vec![T::zero(); w.len()];
    let mut dbias = b.map(|b| vec![T::zero(); b.len()]);
    backward_cpu(g, Some(&mut dinp), Some(&mut dweight), dbias.as_deref_mut(), dout, x, w);
    Out { out: forward(g, x, w, b), dinp, dweight, dbias }
}

/// The GPU kernels, through wgrad::functional.
fn run_gpu(
    gpu: &Arc<wgrad::Gpu>,
    cfg: &Conv2d,
    shape: &[usize],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    dout: &[f32],
) -> Out<f32> {
    let g = cfg.geometry(shape).unwrap();
    let t = |s: &[usize], v: &[f32]| Tensor::new(s, v.to_vec()).unwrap();
    let (x, w, dout) = (t(shape, x), t(&cfg.weight_shape(), w), t(&g.out_shape(), dout));
    let b = b.map(|b| t(&[b.len()], b));
    let r = wgrad::functional::conv2d(&Device::Gpu(gpu.clone()), cfg, &x, &w, b.as_ref(), Some(&dout)).unwrap();
    let mut dp = r.dparams.into_iter();
    Out {
        out: r.out.data,
        dinp: r.dinputs[0].data.clone(),
        dweight: dp.next().unwrap().data,
        dbias: dp.next().map(|t| t.data),
    }
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(10);
    let cfg = Conv2d {
        in_channels: 2,
        out_channels: 3,
        kernel: (3, 2),
        stride: (2, 1),
        padding: (1, 1),
        dilation: (1, 2),
        bias: true,
    };
    let g = cfg.geometry(&[2, 2, 5, 6]).unwrap();
    let x = to_f64(&uniform(&mut r, 2 * 2 * 5 * 6, -1.0, 1.0));
    let w = to_f64(&uniform(&mut r, 3 * 2 * 3 * 2, -1.0, 1.0));
    let b = to_f64(&uniform(&mut r, 3, -1.0, 1.0));
    let out_len = g.out_shape().iter().product();
    let dout = to_f64(&uniform(&mut r, out_len, -1.0, 1.0));
    let grads = run_cpu(&g, &x, &w, Some(&b), &dout);
    let h = 1e-6;
    let num_x = numeric_grad(&x, h, |xs| dot(&dout, &forward(&g, xs, &w, Some(&b))));
    let num_w = numeric_grad(&w, h, |ws| dot(&dout, &forward(&g, &x, ws, Some(&b))));
    let num_b = numeric_grad(&b, h, |bs| dot(&dout, &forward(&g, &x, &w, Some(bs))));
    assert_close("conv dinp", &grads.dinp, &num_x, 1e-6, 1e-8);
    assert_close("conv dweight", &grads.dweight, &num_w, 1e-6, 1e-8);
    assert_close("conv dbias", &grads.dbias.unwrap(), &num_b, 1e-6, 1e-8);
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    let gpu = gpu();
    for c in goldens("layers.safetensors", &["conv2d"]) {
        let cfg = config(&c);
        let (shape, x) = c.f32("inp");
        let g = cfg.geometry(&shape).unwrap();
        let (_, w) = c.f32("weight");
        let b = cfg.bias.then(|| c.f32("bias").1);
        let (_, dout) = c.f32("dout");
        // Each result against PyTorch's tensor of the same name.
        let check = |path: &str, o: &Out<f32>| {
            let results = [("out", Some(&o.out)), ("dinp", Some(&o.dinp)), ("dweight", Some(&o.dweight))];
            for (key, got) in results.into_iter().chain([("dbias", o.dbias.as_ref())]) {
                let Some(got) = got else { continue };
                let want = c.f32(key).1;
                assert_close(&format!("{} {path} {key}", c.name), got, &want, 1e-4, atol_of(&want, 1e-5));
            }
        };
        check("cpu", &run_cpu(&g, &x, &w, b.as_deref(), &dout));
        if let Some(gpu) = &gpu {
            check("gpu", &run_gpu(gpu, &cfg, &shape, &x, &w, b.as_deref(), &dout));
        }
    }
}

#[test]
fn gpu_matches_cpu_on_random_configurations() {
    let Some(gpu) = gpu() else { return };
    random_configurations(&gpu);
}

#[test]
fn other_conv_kernels_match_cpu_on_random_configurations() {
    for gpu in other_conv_kernels_gpus(false) {
        random_configurations(&gpu);
    }
}

/// The register-blocked kernels on an adapter that splits no reduction: there their `_wide` forms
/// (16 channels per invocation) run wherever the channels are multiples of 16, as on a big GPU at
/// large batches; in f32 and, where the adapter has f16, mixed precision.
#[test]
fn wide_register_blocked_kernels_match_cpu() {
    for mixed in [false, true] {
        let Some(gpu) = own_gpu(|g| {
            g.set_conv_kernels(wgrad::ConvKernels::RegisterBlocked).unwrap();
            g.set_split_target(0);
        }) else {
            return;
        };
        if mixed && gpu.set_precision(wgrad::Precision::Mixed).is_err() {
            return skip("the adapter cannot run mixed precision", "WGRAD_REQUIRE_F16");
        }
        random_configurations(&gpu);
    }
}

fn random_configurations(gpu: &Arc<wgrad::Gpu>) {
    let mut r = rng(11);
    let mut configs = vec![
        // Tudui's conv2 at batch 2 (weight gradient split over the batch), and batch 64.
        (Conv2d::new(32, 32, 5).padding(2), [2, 32, 16, 16]),
        // More than one workgroup tile of channels (32) and of columns (128), both partial.
        (Conv2d::new(35, 40, 3).padding(1).stride(2), [3, 35, 13, 11]),
        (Conv2d::new(3, 6, 3).padding(1), [64, 3, 8, 8]),
        (Conv2d::new(1, 1, 1), [1, 1, 1, 1]),
        // Strided with input sides multiples of the strides: the register-blocked input gradient
        // takes its pixels by sub-pixel phase. ResNet's downsampling 3x3; a 1x1 whose three other
        // phases no tap reaches (their gradient is zero); unequal strides and a 5x5.
        (Conv2d::new(5, 9, 3).padding(1).stride(2), [2, 5, 8, 8]),
        (Conv2d::new(6, 4, 1).stride(2), [3, 6, 8, 10]),
        (Conv2d { stride: (3, 2), ..Conv2d::new(3, 7, 5).padding(2) }, [2, 3, 9, 8]),
        // Unit strides and kernel rows of whole tiles of 16 channels: the padded cooperative-matrix
        // forward, with channels past a block of tiles (40 = 32 + 8, 20), unequal kernel sides and
        // padding, images whose columns end in a partial tile.
        (Conv2d { bias: false, ..Conv2d::new(16, 40, 3).padding(1) }, [3, 16, 9, 10]),
        (Conv2d::new(8, 6, (1, 2)), [2, 8, 5, 6]),
        // 8 channels in kernel rows of 3: 24 reduction rows, not whole tiles of 16 (NVIDIA's),
        // which the padded forward leaves to the staged one; with 16 output channels the input
        // gradient (a convolution over them) takes the padded kernel, and without padding it
        // pads the output gradient by 2.
        (Conv2d::new(8, 4, 3).padding(1), [1, 8, 6, 9]),
        (Conv2d::new(8, 16, 3).padding(1), [2, 8, 7, 12]),
        (Conv2d::new(16, 16, 3), [2, 16, 8, 12]),
        (Conv2d { kernel: (3, 5), padding: (1, 2), ..Conv2d::new(16, 20, 3) }, [2, 16, 7, 12]),
    ];
    for _ in 0..12 {
        let k = [1, 3, 5][r.random_range(0..3)];
        let d = r.random_range(1..=2);
        let p = r.random_range(0..=2);
        let s = r.random_range(1..=2);
        let cfg = Conv2d {
            in_channels: r.random_range(1..=6),
            out_channels: r.random_range(1..=9),
            kernel: (k, [1, 3, 5][r.random_range(0..3)]),
            stride: (s, r.random_range(1..=2)),
            padding: (p, r.random_range(0..=2)),
            dilation: (d, r.random_range(1..=2)),
            bias: r.random_bool(0.5),
        };
        let shape = [[1, 2, 3][r.random_range(0..3)], cfg.in_channels, r.random_range(7..=12), r.random_range(7..=12)];
        if cfg.geometry(&shape).is_ok() {
            configs.push((cfg, shape));
        }
    }
    for (cfg, shape) in configs {
        let g = cfg.geometry(&shape).unwrap();
        let x = uniform(&mut r, shape.iter().product(), -1.0, 1.0);
        let w = uniform(&mut r, cfg.weight_shape().iter().product(), -1.0, 1.0);
        let b = cfg.bias.then(|| uniform(&mut r, cfg.out_channels, -1.0, 1.0));
        let dout = uniform(&mut r, g.out_shape().iter().product(), -1.0, 1.0);
        let want = expected(gpu, &g, &x, &w, b.as_deref(), &dout);
        let want_out = &want.out;
        let o = run_gpu(gpu, &cfg, &shape, &x, &w, b.as_deref(), &dout);
        let name = format!("{cfg:?} on {shape:?} ({:?}, {:?})", gpu.conv_kernels(), gpu.precision());
        assert_close(&format!("{name} out"), &o.out, want_out, 1e-4, atol_of(want_out, 1e-5));
        let wd = &want.dinp;
        assert_close(&format!("{name} dinp"), &o.dinp, wd, 1e-4, atol_of(wd, 1e-5));
        assert_close(&format!("{name} dweight"), &o.dweight, &want.dweight, 1e-4, atol_of(&want.dweight, 1e-5));
        if let (Some(got), Some(want)) = (o.dbias, want.dbias) {
            assert_close(&format!("{name} dbias"), &got, &want, 1e-4, atol_of(&want, 1e-5));
        }
    }
}

#[test]
fn mixed_precision_matches_cpu_on_random_configurations() {
    let Some(gpu) = mixed_precision_gpu(false) else { return };
    random_configurations(&gpu);
}

/// Mixed precision with each other kernel variant (the tiled choice computes with the
/// register-blocked kernels' f16 variants; cooperative matrices where the adapter has them),
/// splitting reductions and not (on lavapipe, which splits none, the register-blocked kernels'
/// `_wide` forms run where the channels are multiples of 16). On cooperative matrices both
/// forwards ran: the padded one where the layer allows it, the staged one elsewhere.
#[test]
fn mixed_precision_other_conv_kernels_match_cpu() {
    for gpu in [false, true].into_iter().flat_map(other_conv_kernels_gpus) {
        match gpu.set_precision(wgrad::Precision::Mixed) {
            Ok(()) => random_configurations(&gpu),
            Err(e) => return skip(&format!("the adapter cannot run mixed precision: {e}"), "WGRAD_REQUIRE_F16"),
        }
        if gpu.conv_kernels() == wgrad::ConvKernels::CooperativeMatrix {
            // Either tile's variants (`_16x16` on NVIDIA).
            let built = gpu.built_kernels();
            let ran = |padded: bool| {
                built
                    .iter()
                    .any(|k| k.starts_with("conv2d_forward_cooperative_matrix") && k.contains("_padded") == padded)
            };
            assert!(ran(false) && ran(true), "not both forwards ran: {built:?}");
        }
    }
}

/// A network's first convolution has no input gradient. On cooperative matrices, with kernel rows
/// of whole tiles, its weight gradient then runs padded alone: the output gradient is cast into its padded
/// copy only, scaled by its largest magnitude, and its channels-last copy is neither made nor
/// allocated. The executor's gradients match the CPU path's within f16's precision.
#[test]
fn mixed_precision_first_layer_weight_gradient_matches_cpu() {
    use wgrad::nn::{Flatten, Linear, Model, Sequential};
    let net = Sequential::new()
        .add("conv", Conv2d::new(16, 16, 3).padding(1))
        .add("flat", Flatten::new())
        .add("fc", Linear::new(16 * 6 * 10, 5));
    let model = Model::new(&net, [16, 6, 10], 3).unwrap();
    let mut r = rng(12);
    let images = uniform(&mut r, 2 * 16 * 6 * 10, -1.0, 1.0);
    let targets = [1, 4];
    let mut cpu = wgrad::executor(&Device::Cpu, &model, 2, wgrad::ExecOptions::default()).unwrap();
    cpu.step(&images, &targets, false).unwrap();
    let want = cpu.grads().unwrap();
    let coop = other_conv_kernels_gpus(false)
        .into_iter()
        .filter(|g| g.conv_kernels() == wgrad::ConvKernels::CooperativeMatrix);
    let mut ran = false;
    for gpu in coop {
        ran = true;
        if let Err(e) = gpu.set_precision(wgrad::Precision::Mixed) {
            return skip(&format!("the adapter cannot run mixed precision: {e}"), "WGRAD_REQUIRE_F16");
        }
        let mut ex = wgrad::executor(&Device::Gpu(gpu.clone()), &model, 2, wgrad::ExecOptions::default()).unwrap();
        ex.step(&images, &targets, false).unwrap();
        let got = ex.grads().unwrap();
        for (k, spec) in want.specs.iter().enumerate() {
            let w = want.get(k);
            assert_close(
                &format!("mixed, cooperative matrices: grad {}", spec.key),
                got.get(k),
                w,
                1e-2,
                atol_of(w, 5e-3),
            );
        }
        let built = gpu.built_kernels();
        assert!(
            built.iter().any(|k| k.starts_with("conv2d_backward_weight_cooperative_matrix_padded")),
            "the weight gradient did not run padded: {built:?}"
        );
    }
    if !ran {
        skip("the adapter multiplies no cooperative matrices", "WGRAD_REQUIRE_COOPERATIVE_MATRIX");
    }
}

#[test]
fn mixed_precision_split_reductions_match_cpu() {
    let Some(gpu) = mixed_precision_gpu(true) else { return };
    split_reductions(&gpu);
}

/// A GPU of its own for every kernel family the adapter offers, in f32 and (where it can) mixed
/// precision.
fn every_family_and_precision() -> Vec<Arc<wgrad::Gpu>> {
    let Some(default) = gpu() else { return Vec::new() };
    let mut gpus = Vec::new();
    for kernels in default.conv_kernels_offered() {
        for mixed in [false, true] {
            let Some(gpu) = own_gpu(|g| g.set_conv_kernels(kernels).unwrap()) else { break };
            if !mixed || gpu.set_precision(wgrad::Precision::Mixed).is_ok() {
                gpus.push(gpu);
            }
        }
    }
    gpus
}

/// The GPU's forward of `x` (of `shape`) and the CPU path's of `cpu_x` (its first images, or
/// another input of the same shape) as the products read it (f16-rounded in mixed precision), no
/// bias.
fn forward_on(
    gpu: &Arc<wgrad::Gpu>,
    cfg: &Conv2d,
    shape: &[usize],
    x: &[f32],
    w: &[f32],
    cpu_x: &[f32],
) -> [Vec<f32>; 2] {
    // The CPU path's images: as many as `cpu_x` holds.
    let per_image: usize = shape[1..].iter().product();
    let g = cfg.geometry(&[cpu_x.len() / per_image, shape[1], shape[2], shape[3]]).unwrap();
    let (xr, wr) = match wgrad::ops::conv2d::precision(gpu, &g) {
        wgrad::Precision::Mixed => (f16_rounded(cpu_x), f16_rounded(w)),
        wgrad::Precision::F32 => (cpu_x.to_vec(), w.to_vec()),
    };
    let t = |s: &[usize], v: &[f32]| Tensor::new(s, v.to_vec()).unwrap();
    let (xt, wt) = (t(shape, x), t(&cfg.weight_shape(), w));
    let out = wgrad::functional::conv2d(&Device::Gpu(gpu.clone()), cfg, &xt, &wt, None, None).unwrap().out.data;
    [out, forward(&g, &xr, &wr, None)]
}

/// A non-finite input stays in its own image: with infinities filling image 1, image 0's outputs
/// are the CPU path's, in every kernel family the adapter offers, f32 and mixed precision. (The
/// cooperative-matrix kernels stage their reduction's last partial stage past its end; those rows
/// must be zeros there, not another image's values, which the zero weights facing them would turn
/// into NaN.)
#[test]
fn a_non_finite_input_stays_in_its_image() {
    // 27 reduction rows: a partial last stage for every kernel's tile.
    let cfg = Conv2d { bias: false, ..Conv2d::new(3, 5, 3).padding(1) };
    let shape = [2, 3, 6, 7];
    let mut r = rng(12);
    let mut x = uniform(&mut r, shape.iter().product(), -1.0, 1.0);
    let image = x.len() / 2;
    x[image..].fill(f32::INFINITY);
    let w = uniform(&mut r, cfg.weight_shape().iter().product(), -1.0, 1.0);
    for gpu in every_family_and_precision() {
        // Image 0 alone on the CPU path.
        let [out, want] = forward_on(&gpu, &cfg, &shape, &x, &w, &x[..image]);
        let name = format!("image 0 beside an infinite image 1 ({:?}, {:?})", gpu.conv_kernels(), gpu.precision());
        assert_close(&name, &out[..want.len()], &want, 1e-4, atol_of(&want, 1e-5));
    }
}

/// A non-finite input reaches only the outputs whose window holds it: with one infinity in the
/// input, every other output is the CPU path's (which reads a zero there), in every kernel family
/// and precision. (The cooperative-matrix forward, channels last, stages its reduction's last
/// partial stage as taps past the kernel's, rows below the window in the same image; their
/// sentinel must keep them zeros, or the zero weights facing them turn the infinity into NaN
/// outside its window. The padded one, for 16 channels unpadded, computes columns past each row
/// and image whose windows run into the next row and image, and must drop them.)
#[test]
fn a_non_finite_input_reaches_only_the_outputs_it_feeds() {
    let cases = [
        // 27 reduction rows (9 taps of 3 channels, 9 runs of 4 channels last): a partial last
        // stage for every kernel's tile. Channel 0, the bottom row, column 3.
        (Conv2d { bias: false, ..Conv2d::new(3, 5, 3).padding(1) }, [1, 3, 6, 7], [0, 0, 5, 3]),
        // The first pixel of the second image, which the first image's last columns reach.
        (Conv2d { bias: false, ..Conv2d::new(16, 5, 3) }, [2, 16, 6, 12], [1, 0, 0, 0]),
    ];
    for (cfg, shape, [n, c, ih, iw]) in cases {
        let g = cfg.geometry(&shape).unwrap();
        let mut r = rng(13);
        let x = uniform(&mut r, shape.iter().product(), -1.0, 1.0);
        let w = uniform(&mut r, cfg.weight_shape().iter().product(), -1.0, 1.0);
        let at = ((n * shape[1] + c) * shape[2] + ih) * shape[3] + iw;
        let (mut xinf, mut xzero) = (x.clone(), x.clone());
        xinf[at] = f32::INFINITY;
        xzero[at] = 0.0;
        // The outputs whose window holds (n, ih, iw) are left out.
        let outside = |at: &usize| {
            let (on, oh, ow) = (at / (g.oc * g.oh * g.ow), at / g.ow % g.oh, at % g.ow);
            let holds = |o: usize, p: usize, k: usize, i: usize| i + p >= o && i + p - o < k;
            on != n || !holds(oh, g.ph, g.kh, ih) || !holds(ow, g.pw, g.kw, iw)
        };
        for gpu in every_family_and_precision() {
            let [out, want] = forward_on(&gpu, &cfg, &shape, &xinf, &w, &xzero);
            let pick = |v: &[f32]| -> Vec<f32> { (0..v.len()).filter(outside).map(|at| v[at]).collect() };
            let name =
                format!("{cfg:?}: outputs away from an infinity ({:?}, {:?})", gpu.conv_kernels(), gpu.precision());
            let want = pick(&want);
            assert_close(&name, &pick(&out), &want, 1e-4, atol_of(&want, 1e-5));
        }
    }
}

/// The CPU path's results for what `gpu`'s kernels compute: in mixed precision the products take
/// the operands rounded to f16 (the output gradient scaled), the bias gradient the f32 one.
fn expected(gpu: &wgrad::Gpu, g: &Geometry, x: &[f32], w: &[f32], b: Option<&[f32]>, dout: &[f32]) -> Out<f32> {
    let (xr, wr, dr) = as_products_read(wgrad::ops::conv2d::precision(gpu, g), x, w, dout);
    let mut want = run_cpu(g, &xr, &wr, b, &dr);
    want.dbias = run_cpu(g, x, w, b, dout).dbias;
    want
}

#[test]
fn split_reductions_match_cpu() {
    let Some(gpu) = splitting_gpu() else { return };
    split_reductions(&gpu);
}

#[test]
fn other_conv_kernels_split_reductions_match_cpu() {
    for gpu in other_conv_kernels_gpus(true) {
        split_reductions(&gpu);
    }
}

fn split_reductions(gpu: &Arc<wgrad::Gpu>) {
    let mut r = rng(15);
    let configs = [
        (Conv2d::new(32, 32, 5).padding(2), [2, 32, 16, 16]),
        (Conv2d::new(32, 64, 5).padding(2), [3, 32, 8, 8]),
        (Conv2d::new(5, 7, 3).padding(1).stride((2, 1)).dilation((1, 2)), [2, 5, 9, 11]),
        // The input gradient by sub-pixel phase, its output channels split.
        (Conv2d::new(32, 16, 3).padding(1).stride(2), [2, 32, 8, 8]),
        // 429 output pixels in two chunks of 215: the weight gradient's split ends mid-row.
        (Conv2d::new(4, 8, 3).padding(1), [3, 4, 13, 11]),
    ];
    for (cfg, shape) in configs {
        let g = cfg.geometry(&shape).unwrap();
        let x = uniform(&mut r, shape.iter().product(), -1.0, 1.0);
        let w = uniform(&mut r, cfg.weight_shape().iter().product(), -1.0, 1.0);
        let b = uniform(&mut r, cfg.out_channels, -1.0, 1.0);
        let dout = uniform(&mut r, g.out_shape().iter().product(), -1.0, 1.0);
        let want = expected(gpu, &g, &x, &w, Some(&b), &dout);
        let o = run_gpu(gpu, &cfg, &shape, &x, &w, Some(&b), &dout);
        let name = format!("split {cfg:?} on {shape:?} ({:?}, {:?})", gpu.conv_kernels(), gpu.precision());
        assert_close(&format!("{name} out"), &o.out, &want.out, 1e-4, atol_of(&want.out, 1e-5));
        assert_close(&format!("{name} dinp"), &o.dinp, &want.dinp, 1e-4, atol_of(&want.dinp, 1e-5));
        assert_close(&format!("{name} dweight"), &o.dweight, &want.dweight, 1e-4, atol_of(&want.dweight, 1e-5));
        let (got, want) = (o.dbias.unwrap(), want.dbias.unwrap());
        assert_close(&format!("{name} dbias"), &got, &want, 1e-4, atol_of(&want, 1e-5));
    }
}

/// The Winograd kernels (`ConvKernels::Winograd`) on a device whose storage bindings take at most
/// 256 KiB, as a small adapter's might: each layer's images go through in two chunks (six and
/// three, three and two), so every chunk after the first must find its images and tiles and add
/// its own partial sums of the weight gradient; 3 x 3 and 5 x 5 kernels, channels off the blocks
/// of 8, rows and columns ending in a partial tile, a layer without padding and one whose input
/// gradient convolves 12 output channels. Then on a device that splits reductions as a big GPU
/// would: the weight gradient's sums over 256 and 128 tiles in four and two splits.
#[test]
fn winograd_kernels_match_cpu_in_chunks_and_splits() {
    let Some(_) = gpu() else { return };
    let limits = wgpu::Limits { max_storage_buffer_binding_size: 256 << 10, ..wgpu::Limits::default() };
    let small = Arc::new(wgrad::Gpu::default_adapter_with(Some(limits)).unwrap().unwrap());
    small.set_conv_kernels(wgrad::ConvKernels::Winograd).unwrap();
    let Some(splitting) = own_gpu(|g| {
        g.set_conv_kernels(wgrad::ConvKernels::Winograd).unwrap();
        g.set_split_target(1 << 16);
    }) else {
        return;
    };
    let mut r = rng(16);
    let configs = [
        (&small, Conv2d::new(16, 16, 3).padding(1), [9, 16, 16, 16]),
        (&small, Conv2d::new(16, 12, 5).padding(2), [5, 16, 16, 15]),
        (&small, Conv2d { bias: false, ..Conv2d::new(9, 16, 3) }, [5, 9, 13, 18]),
        (&splitting, Conv2d::new(16, 16, 3).padding(1), [4, 16, 32, 32]),
        (&splitting, Conv2d::new(8, 16, 5).padding(2), [2, 8, 32, 29]),
    ];
    for (gpu, cfg, shape) in configs {
        let g = cfg.geometry(&shape).unwrap();
        let x = uniform(&mut r, shape.iter().product(), -1.0, 1.0);
        let w = uniform(&mut r, cfg.weight_shape().iter().product(), -1.0, 1.0);
        let b = cfg.bias.then(|| uniform(&mut r, cfg.out_channels, -1.0, 1.0));
        let dout = uniform(&mut r, g.out_shape().iter().product(), -1.0, 1.0);
        let want = run_cpu(&g, &x, &w, b.as_deref(), &dout);
        let o = run_gpu(gpu, &cfg, &shape, &x, &w, b.as_deref(), &dout);
        let name = format!("Winograd {cfg:?} on {shape:?}");
        assert_close(&format!("{name} out"), &o.out, &want.out, 1e-4, atol_of(&want.out, 1e-5));
        assert_close(&format!("{name} dinp"), &o.dinp, &want.dinp, 1e-4, atol_of(&want.dinp, 1e-5));
        assert_close(&format!("{name} dweight"), &o.dweight, &want.dweight, 1e-4, atol_of(&want.dweight, 1e-5));
    }
    let built = small.built_kernels();
    for kernel in ["conv2d_winograd_input", "conv2d_winograd_output_5x5", "conv2d_winograd_weight_gradient_5x5"] {
        assert!(built.contains(&kernel), "{kernel} did not run: {built:?}");
    }
}

/// In mixed precision Winograd's layers run in f32 (`wgrad::ops::conv2d::precision`): a layer it
/// takes (3 x 3 and 5 x 5, 16 channels) matches the CPU path on its f32 operands within f32's
/// tolerance, which their f16 roundings would miss, and nothing is cast to f16; a layer it cannot
/// take (3 input channels) runs the f16 kernels on f16 copies.
#[test]
fn winograd_layers_run_in_f32_in_mixed_precision() {
    let Some(gpu) = own_gpu(|g| g.set_conv_kernels(wgrad::ConvKernels::Winograd).unwrap()) else { return };
    if let Err(e) = gpu.set_precision(wgrad::Precision::Mixed) {
        return skip(&format!("the adapter cannot run mixed precision: {e}"), "WGRAD_REQUIRE_F16");
    }
    let mut r = rng(17);
    let configs =
        [(Conv2d::new(16, 16, 5).padding(2), [2, 16, 12, 12]), (Conv2d::new(16, 8, 3).padding(1), [3, 16, 9, 10])];
    for (cfg, shape) in configs {
        let g = cfg.geometry(&shape).unwrap();
        assert_eq!(wgrad::ops::conv2d::precision(&gpu, &g), wgrad::Precision::F32, "{cfg:?}");
        let x = uniform(&mut r, shape.iter().product(), -1.0, 1.0);
        let w = uniform(&mut r, cfg.weight_shape().iter().product(), -1.0, 1.0);
        let b = uniform(&mut r, cfg.out_channels, -1.0, 1.0);
        let dout = uniform(&mut r, g.out_shape().iter().product(), -1.0, 1.0);
        let want = run_cpu(&g, &x, &w, Some(&b), &dout);
        let o = run_gpu(&gpu, &cfg, &shape, &x, &w, Some(&b), &dout);
        let name = format!("mixed precision, Winograd {cfg:?} on {shape:?}");
        assert_close(&format!("{name} out"), &o.out, &want.out, 1e-4, atol_of(&want.out, 1e-5));
        assert_close(&format!("{name} dinp"), &o.dinp, &want.dinp, 1e-4, atol_of(&want.dinp, 1e-5));
        assert_close(&format!("{name} dweight"), &o.dweight, &want.dweight, 1e-4, atol_of(&want.dweight, 1e-5));
    }
    let built = gpu.built_kernels();
    assert!(built.contains(&"conv2d_winograd_product"), "Winograd did not run: {built:?}");
    assert!(!built.iter().any(|k| k.starts_with("cast_f16") || k.ends_with("_f16")), "an f16 kernel ran: {built:?}");
    let (cfg, shape) = (Conv2d { bias: false, ..Conv2d::new(3, 16, 5).padding(2) }, [2, 3, 8, 8]);
    let g = cfg.geometry(&shape).unwrap();
    assert_eq!(wgrad::ops::conv2d::precision(&gpu, &g), wgrad::Precision::Mixed);
    let x = uniform(&mut r, shape.iter().product(), -1.0, 1.0);
    let w = uniform(&mut r, cfg.weight_shape().iter().product(), -1.0, 1.0);
    let dout = uniform(&mut r, g.out_shape().iter().product(), -1.0, 1.0);
    let want = expected(&gpu, &g, &x, &w, None, &dout);
    let o = run_gpu(&gpu, &cfg, &shape, &x, &w, None, &dout);
    assert_close("mixed precision, 3 input channels: out", &o.out, &want.out, 1e-4, atol_of(&want.out, 1e-5));
    let built = gpu.built_kernels();
    assert!(built.iter().any(|k| k.starts_with("cast_f16")), "no f16 copy was made: {built:?}");
}

/// Every kernel family the adapter offers can be chosen; one it lacks (subgroups without wgpu's
/// SUBGROUP feature, as on GL) is refused with a message naming the adapter.
#[test]
fn conv_kernels_the_adapter_lacks_are_refused() {
    let Some(_) = gpu() else { return };
    let g = wgrad::Gpu::default_adapter().unwrap().unwrap();
    use wgrad::ConvKernels::*;
    for k in [RegisterBlocked, Subgroups, Tiled, CooperativeMatrix, Winograd] {
        match g.set_conv_kernels(k) {
            Ok(()) => assert!(g.offers(k) && g.conv_kernels() == k, "{k:?} chosen though not offered"),
            Err(e) => {
                let e = e.to_string();
                assert!(!g.offers(k), "{k:?} offered but refused: {e}");
                let (feature, name) = if k == CooperativeMatrix {
                    ("EXPERIMENTAL_COOPERATIVE_MATRIX", "the cooperative-matrix convolution kernels")
                } else {
                    ("SUBGROUP", "the subgroups convolution kernels")
                };
                // Named as WGRAD_CONV_KERNELS spells them.
                assert!(e.contains(feature) && e.contains(&g.describe()) && e.contains(name), "{e}");
            }
        }
    }
}

/// The `_16x16` variant of the cooperative-matrix kernels (what NVIDIA runs, with its `_narrow`
/// form for products of at most 32 rows) on lavapipe's cooperative matrices, forced.
#[test]
fn cooperative_matrix_16x16_variant_matches_cpu_on_lavapipe() {
    let Some(gpu) = forced_cooperative_16x16_gpu() else { return };
    random_configurations(&gpu);
    // Both forms ran (the narrow one needs more workgroup memory than WebGPU's default, which
    // lavapipe offers). The padded forward does not run here (ops::conv2d::padded_forward says why).
    let built = gpu.built_kernels();
    for kernel in ["conv2d_forward_cooperative_matrix_16x16", "conv2d_forward_cooperative_matrix_16x16_narrow"] {
        assert!(built.contains(&kernel), "{kernel} did not run: {built:?}");
    }
}

/// A cooperative-matrix kernel that cannot be built (here: on an adapter without cooperative
/// matrices, where wgrad never builds one unasked) fails with wgpu's message and how to do without.
#[test]
fn a_cooperative_matrix_kernel_that_fails_to_build_says_how_to_do_without() {
    // A device of its own: the failed build goes through its error scope, apart from other tests.
    let Some(g) = own_gpu(|_| {}) else { return };
    if g.offers(wgrad::ConvKernels::CooperativeMatrix) {
        // It builds here (the tests above run it).
        return;
    }
    let e =
        g.pipeline("conv2d_forward_cooperative_matrix").expect_err("built without cooperative matrices").to_string();
    assert!(e.contains("creating pipeline conv2d_forward_cooperative_matrix"), "{e}");
    assert!(e.contains("WGRAD_CONV_KERNELS=register-blocked"), "{e}");
}

/// Where CI says the adapter multiplies cooperative matrices (Mesa 26's lavapipe,
/// .ci/cooperative-matrix sets WGRAD_REQUIRE_COOPERATIVE_MATRIX=1), the kernels must be offered, so
/// that the tests above run them rather than pass without them.
#[test]
fn cooperative_matrix_kernels_run_where_required() {
    let Some(g) = gpu() else { return };
    if !g.offers(wgrad::ConvKernels::CooperativeMatrix) {
        skip(
            &format!("{} offers no cooperative matrices the kernels can use", g.describe()),
            "WGRAD_REQUIRE_COOPERATIVE_MATRIX",
        );
    }
}

#[test]
fn bad_input_is_an_error() {
    let cfg = Conv2d::new(3, 4, 5);
    let e = cfg.geometry(&[1, 3, 3, 3]).unwrap_err().to_string();
    assert!(
        e.contains("Conv2d(3, 4") && e.contains("larger than the padded input") && e.contains("[1, 3, 3, 3]"),
        "{e}"
    );
    let e = cfg.geometry(&[1, 2, 8, 8]).unwrap_err().to_string();
    assert!(e.contains("has 2 channels but the weight expects 3"), "{e}");
    let e = cfg.stride((0, 1)).geometry(&[1, 3, 8, 8]).unwrap_err().to_string();
    assert!(e.contains("stride must be positive"), "{e}");
    assert!(cfg.geometry(&[3, 8, 8]).unwrap_err().to_string().contains("(N, C, H, W)"));
    assert!(cfg.geometry(&[0, 3, 8, 8]).unwrap_err().to_string().contains("empty batch"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn cpu_path_equals_the_definition(
            n in 1usize..20, ic in 1usize..5, oc in 1usize..6, h in 1usize..10, w in 1usize..10,
            kh in 1usize..4, kw in 1usize..4, sh in 1usize..3, sw in 1usize..3,
            ph in 0usize..3, pw in 0usize..3, dh in 1usize..3, dw in 1usize..3, bias: bool, seed in 0u64..1000,
        ) {
            let cfg = Conv2d::new(ic, oc, (kh, kw)).stride((sh, sw)).padding((ph, pw)).dilation((dh, dw)).bias(bias);
            let Ok(g) = cfg.geometry(&[n, ic, h, w]) else { return Ok(()) };
            let mut r = rng(seed);
            let x = to_f64(&uniform(&mut r, n * ic * h * w, -1.0, 1.0));
            let wt = to_f64(&uniform(&mut r, oc * ic * kh * kw, -1.0, 1.0));
            let b = bias.then(|| to_f64(&uniform(&mut r, oc, -1.0, 1.0)));
            let dout = to_f64(&uniform(&mut r, n * oc * g.oh * g.ow, -1.0, 1.0));
            // The CPU path (im2col + GEMM in chunks of images) against the definition.
            let got = run_cpu(&g, &x, &wt, b.as_deref(), &dout);
            let want = reference::forward(&g, &x, &wt, b.as_deref());
            let (gx, gw, gb) = reference::backward(&g, &dout, &x, &wt);
            let at = format!("{cfg:?} on [{n}, {ic}, {h}, {w}]");
            for (what, got, want) in [("out", &got.out, &want), ("dinp", &got.dinp, &gx), ("dweight", &got.dweight, &gw)] {
                for (i, (a, b)) in got.iter().zip(want).enumerate() {
                    prop_assert!((a - b).abs() < 1e-9, "{at}: {what}[{i}] = {a}, want {b}");
                }
            }
            if let Some(got) = &got.dbias {
                for (i, (a, b)) in got.iter().zip(&gb).enumerate() {
                    prop_assert!((a - b).abs() < 1e-9, "{at}: dbias[{i}] = {a}, want {b}");
                }
            }
            // The definition's gradients are the adjoints of its forward (bilinearity):
            // <dout, conv(x) - bias> = <gx, x> = <gw, w>, and <dout, bias> = <gb, bias>.
            let plain = reference::forward(&g, &x, &wt, None);
            let lhs = dot(&dout, &plain);
            prop_assert!((dot(&gx, &x) - lhs).abs() < 1e-9 * (1.0 + lhs.abs()));
            prop_assert!((dot(&gw, &wt) - lhs).abs() < 1e-9 * (1.0 + lhs.abs()));
            if let Some(b) = &b {
                let with_bias = dot(&dout, &want) - lhs;
                prop_assert!((dot(&gb, b) - with_bias).abs() < 1e-9 * (1.0 + with_bias.abs()));
            }
        }
    }
}
