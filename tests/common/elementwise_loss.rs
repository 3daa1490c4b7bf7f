//! The checks L1Loss and MSELoss share (each op's test file calls them by name).

use super::*;
use wgrad::functional::Output;
use wgrad::testing::assert_close;
use wgrad::{Device, Reduction, Tensor};

/// The CPU forward (input, target, reduction) and backward (input, target, dout, reduction).
type Forward<T> = fn(&[T], &[T], Reduction) -> Vec<T>;
type Backward<T> = fn(&[T], &[T], &[T], Reduction) -> Vec<T>;

pub struct Suite {
    pub golden_op: &'static str,
    pub forward64: Forward<f64>,
    pub backward64: Backward<f64>,
    pub forward32: Forward<f32>,
    pub backward32: Backward<f32>,
    /// The functional call (wgrad::functional::l1_loss or mse_loss).
    pub call: fn(&Device, &Tensor, &Tensor, Reduction, Option<&Tensor>) -> wgrad::Result<Output>,
}

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Sum, Reduction::Mean];

impl Suite {
    pub fn cpu_matches_finite_differences(&self) {
        let mut r = rng(1);
        let x = to_f64(&uniform(&mut r, 13, -2.0, 2.0));
        let y = to_f64(&uniform(&mut r, 13, -2.0, 2.0));
        for red in REDUCTIONS {
            let out = (self.forward64)(&x, &y, red);
            let w = to_f64(&uniform(&mut r, out.len(), -1.0, 1.0));
            let num = numeric_grad(&x, 1e-6, |xs| dot(&w, &(self.forward64)(xs, &y, red)));
            let ana = (self.backward64)(&x, &y, &w, red);
            assert_close(&format!("{} {red:?} dinp vs finite differences", self.golden_op), &ana, &num, 1e-6, 1e-8);
        }
    }

    pub fn cpu_matches_pytorch(&self) {
        for c in goldens("losses.safetensors", &[self.golden_op]) {
            let red = reduction_of(&c);
            let (_, x) = c.f32("inp");
            let (_, y) = c.f32("tgt");
            let (_, dout) = c.f32("dout");
            assert_close(&format!("{} out", c.name), &(self.forward32)(&x, &y, red), &c.f32("out").1, 1e-5, 1e-7);
            assert_close(
                &format!("{} dinp", c.name),
                &(self.backward32)(&x, &y, &dout, red),
                &c.f32("dinp").1,
                1e-4,
                1e-7,
            );
        }
    }

    pub fn gpu_matches_cpu(&self) {
        let Some(gpu) = gpu() else { return };
        let gpu = Device::Gpu(gpu);
        let mut r = rng(2);
        for &n in LENGTHS {
            let x = uniform(&mut r, n, -3.0, 3.0);
            let mut y = uniform(&mut r, n, -3.0, 3.0);
            y[0] = x[0];
            let (xt, yt) = (Tensor::new(&[n], x.clone()).unwrap(), Tensor::new(&[n], y.clone()).unwrap());
            for red in REDUCTIONS {
                let shape: &[usize] = if red == Reduction::None { &[n] } else { &[] };
                let dout = Tensor::new(shape, uniform(&mut r, shape.iter().product(), -1.0, 1.0)).unwrap();
                let got = (self.call)(&gpu, &xt, &yt, red, Some(&dout)).unwrap();
                let name = format!("{} n={n} {red:?}", self.golden_op);
                assert_close(&format!("{name} out"), &got.out.data, &(self.forward32)(&x, &y, red), 1e-5, 1e-6);
                let want = (self.backward32)(&x, &y, &dout.data, red);
                assert_close(&format!("{name} dinp"), &got.dinputs[0].data, &want, 1e-5, 1e-12);
            }
        }
    }

    pub fn gpu_matches_pytorch(&self) {
        let Some(gpu) = gpu() else { return };
        let gpu = Device::Gpu(gpu);
        for c in goldens("losses.safetensors", &[self.golden_op]) {
            let red = reduction_of(&c);
            let (shape, x) = c.f32("inp");
            let (tshape, y) = c.f32("tgt");
            let (dshape, dout) = c.f32("dout");
            let (x, y, dout) = (
                Tensor::new(&shape, x).unwrap(),
                Tensor::new(&tshape, y).unwrap(),
                Tensor::new(&dshape, dout).unwrap(),
            );
            let got = (self.call)(&gpu, &x, &y, red, Some(&dout)).unwrap();
            assert_close(&format!("{} out", c.name), &got.out.data, &c.f32("out").1, 1e-5, 1e-7);
            assert_close(&format!("{} dinp", c.name), &got.dinputs[0].data, &c.f32("dinp").1, 1e-4, 1e-7);
        }
    }
}
