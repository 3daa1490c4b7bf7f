//! ToTensor and Normalize for batches that cross to the device as bytes (ops::to_tensor): the
//! table is torchvision's arithmetic; the kernel looks every byte of every channel up as the host
//! does, bit for bit, whatever the batch's length; an executor given a batch as bytes
//! (`upload_pixels`) trains and infers bit for bit as on ToTensor's f32 of them, on the CPU path
//! and the GPU, and never runs on bytes an f32 batch has replaced; bad batches are refused by name.

mod common;
use common::*;
use rand::Rng;
use wgrad::kernel::Program;
use wgrad::nn::{Conv2d, Flatten, Linear, Model, ReLU, Sequential};
use wgrad::ops::to_tensor::{self, ToTensor};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::{Device, ExecOptions};

const MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
const STD: [f32; 3] = [0.247, 0.243, 0.261];

fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut r = rng(seed);
    (0..n).map(|_| r.random::<u8>()).collect()
}

#[test]
fn the_table_is_torchvision_s_arithmetic_channel_by_channel() {
    let t = ToTensor::normalized(&MEAN, &STD).unwrap();
    assert_eq!(t.channels(), 3);
    for c in 0..3 {
        for p in 0..=255u8 {
            // ToTensor: img.float().div(255); Normalize: (x - mean) / std.
            let want = (p as f32 / 255.0 - MEAN[c]) / STD[c];
            assert_eq!(t.values()[c * 256 + p as usize].to_bits(), want.to_bits(), "channel {c}, byte {p}");
        }
    }
    assert_eq!(ToTensor::new(1).values()[255], 1.0);
    // Two images of 3 planes of 2: channel c takes plane c of each image.
    let pixels = [0, 255, 10, 20, 30, 40, 255, 0, 1, 2, 3, 4];
    let mut out = [0.0; 12];
    t.apply(&pixels, 2, &mut out);
    for (i, (&o, &p)) in out.iter().zip(&pixels).enumerate() {
        assert_eq!(o, t.values()[(i / 2 % 3) * 256 + p as usize], "element {i}");
    }
}

#[test]
fn normalize_refuses_what_torchvision_would_divide_by_or_propagate() {
    for (mean, std, what) in [
        (&[0.5, 0.5][..], &[0.2, 0.0][..], "std must be positive"),
        (&[0.5][..], &[f32::NAN][..], "std must be positive"),
        (&[f32::INFINITY][..], &[1.0][..], "mean must be finite"),
        (&[0.5, 0.5][..], &[1.0][..], "one mean and one std per channel"),
    ] {
        let e = ToTensor::normalized(mean, std).unwrap_err().to_string();
        assert!(e.contains("ToTensor") && e.contains(what), "{mean:?} {std:?}: {e}");
    }
}

#[test]
fn kernel_looks_every_byte_up_as_the_table_does() {
    let Some(gpu) = gpu() else { return };
    let t = ToTensor::normalized(&MEAN, &STD).unwrap();
    // Lengths that leave 0 to 3 bytes in the last word; planes that are no multiple of 4; every
    // byte value in every channel.
    for (n, plane) in [(2 * 3 * 256, 256), (3 * 7 * 13, 7 * 13), (2 * 3 * 5 * 5, 25), (3 * 3, 1), (6 * 11, 11)] {
        let mut pixels = bytes(n as u64, n);
        if plane == 256 {
            for (i, p) in pixels.iter_mut().enumerate() {
                *p = (i % 256) as u8;
            }
        }
        let mut padded = pixels.clone();
        padded.resize(to_tensor::pixel_words(n as u64) as usize * 4, 0xAB);
        let words = gpu.upload("pixels", &padded).unwrap();
        let table = gpu.upload("table", t.values()).unwrap();
        let out = gpu.upload("out", &vec![f32::NAN; n]).unwrap();
        let k = to_tensor::to_tensor_gpu(&gpu, "to_tensor", &words, &table, plane as u64, &out).unwrap();
        Program::from(k).run(&gpu, "to_tensor").unwrap();
        let got = gpu.read(&out).unwrap();
        let mut want = vec![0.0; n];
        t.apply(&pixels, plane, &mut want);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{n} bytes, planes of {plane}");
    }
}

/// Three channels, 5×5 (75 bytes an image: batches of 3 end 1 byte into a word).
fn small_model() -> Model {
    let net = Sequential::new()
        .add("conv", Conv2d::new(3, 4, 3).padding(1))
        .add("relu", ReLU)
        .add("flat", Flatten::new())
        .add("fc", Linear::new(100, 5));
    Model::new(&net, [3, 5, 5], 7).unwrap()
}

fn pixels_train_and_infer_as_their_f32(device: Device) {
    let model = small_model();
    let t = ToTensor::normalized(&MEAN, &STD).unwrap();
    let opts = ExecOptions { optimizer: Some(Optimizer::Sgd(Sgd::new(0.1).momentum(0.9))), ..Default::default() };
    let mut floats = wgrad::executor(&device, &model, 3, opts.clone()).unwrap();
    let mut bytes_ex = wgrad::executor(&device, &model, 3, opts).unwrap();
    let dev = bytes_ex.describe();
    let targets = [4, 0, 2];
    for step in 0..3u64 {
        let pixels = bytes(100 + step, 3 * 75);
        let mut images = vec![0.0; pixels.len()];
        t.apply(&pixels, 25, &mut images);
        let want = floats.step(&images, &targets, true).unwrap().unwrap();
        bytes_ex.upload_pixels(&pixels, &t, Some(&targets)).unwrap();
        let got = bytes_ex.step_resident(true).unwrap().unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "{dev}: loss of step {step}");
    }
    // Queued steps on bytes, a ToTensor without Normalize.
    let plain = ToTensor::new(3);
    let (mut want, mut got) = (Vec::new(), Vec::new());
    for step in 0..6u64 {
        let pixels = bytes(200 + step, 3 * 75);
        let mut images = vec![0.0; pixels.len()];
        plain.apply(&pixels, 25, &mut images);
        want.extend(floats.step(&images, &targets, true).unwrap());
        bytes_ex.upload_pixels(&pixels, &plain, Some(&targets)).unwrap();
        bytes_ex.step_queued_resident(&mut got).unwrap();
    }
    bytes_ex.finish_queued(&mut got).unwrap();
    assert_eq!(
        got.iter().map(|o| o.loss.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|l| l.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(bytes_ex.params().unwrap().data, floats.params().unwrap().data, "{dev}");

    // An f32 batch after bytes replaces them; bytes after an f32 batch replace it.
    let (a, b) = (bytes(300, 3 * 75), bytes(301, 3 * 75));
    let f32_of = |p: &[u8]| {
        let mut v = vec![0.0; p.len()];
        t.apply(p, 25, &mut v);
        v
    };
    let mut eval = wgrad::executor(&device, &model, 3, ExecOptions::inference()).unwrap();
    let (want_a, want_b) = (eval.forward(&f32_of(&a)).unwrap(), eval.forward(&f32_of(&b)).unwrap());
    assert_ne!(want_a, want_b);
    eval.upload_pixels(&a, &t, None).unwrap();
    assert_eq!(eval.forward(&f32_of(&b)).unwrap(), want_b, "{dev}: the f32 batch uploaded after the bytes");
    assert_eq!(eval.forward_resident().unwrap(), want_b, "{dev}: ran on bytes an f32 batch had replaced");
    eval.upload_pixels(&a, &t, None).unwrap();
    assert_eq!(eval.forward_resident().unwrap(), want_a, "{dev}: the bytes uploaded after the f32 batch");
    assert_eq!(eval.forward_resident().unwrap(), want_a, "{dev}: the input made of the bytes is kept");
}

#[test]
fn pixels_train_and_infer_as_their_f32_on_cpu() {
    pixels_train_and_infer_as_their_f32(Device::Cpu);
}

#[test]
fn pixels_train_and_infer_as_their_f32_on_gpu() {
    let Some(gpu) = gpu() else { return };
    pixels_train_and_infer_as_their_f32(Device::Gpu(gpu));
}

fn bad_pixel_batches_are_refused(device: Device) {
    let model = small_model();
    let t = ToTensor::new(3);
    let mut ex = wgrad::executor(&device, &model, 3, ExecOptions::default()).unwrap();
    let dev = ex.describe();
    let pixels = bytes(1, 3 * 75);
    let e = ex.upload_pixels(&pixels[1..], &t, Some(&[0, 1, 2])).unwrap_err().to_string();
    assert!(e.contains("pixels hold 224 bytes") && e.contains("[3, 3, 5, 5] needs 225"), "{dev}: {e}");
    let e = ex.upload_pixels(&pixels, &ToTensor::new(1), Some(&[0, 1, 2])).unwrap_err().to_string();
    assert!(e.contains("a table for 1 channels") && e.contains("[3, 3, 5, 5]"), "{dev}: {e}");
    let e = ex.upload_pixels(&pixels, &t, Some(&[0, 5, 2])).unwrap_err().to_string();
    assert!(e.contains("target 5 at index 1") && e.contains("5 classes"), "{dev}: {e}");
    let e = ex.step_resident(false).unwrap_err().to_string();
    assert!(e.contains("no batch with targets"), "{dev}: a refused batch left something to run on: {e}");
    let mut eval = wgrad::executor(&device, &model, 3, ExecOptions::inference()).unwrap();
    let e = eval.upload_pixels(&pixels, &t, Some(&[0, 1, 2])).unwrap_err().to_string();
    assert!(e.contains("built for inference"), "{dev}: {e}");
}

#[test]
fn bad_pixel_batches_are_refused_on_cpu() {
    bad_pixel_batches_are_refused(Device::Cpu);
}

#[test]
fn bad_pixel_batches_are_refused_on_gpu() {
    let Some(gpu) = gpu() else { return };
    bad_pixel_batches_are_refused(Device::Gpu(gpu));
}
