//! The checks L1Loss and MSELoss share (each op's test file calls them by name).

use super::*;
use wgrad::ops::elementwise_loss::Kernels;
use wgrad::testing::assert_close;
use wgrad::{Gpu, Reduction};

pub struct Suite {
    pub golden_op: &'static str,
    pub forward64: fn(&[f64], &[f64], Reduction) -> Vec<f64>,
    pub backward64: fn(&[f64], &[f64], &[f64], Reduction) -> Vec<f64>,
    pub forward32: fn(&[f32], &[f32], Reduction) -> Vec<f32>,
    pub backward32: fn(&[f32], &[f32], &[f32], Reduction) -> Vec<f32>,
    pub build: fn(&Gpu, &str, &wgrad::buffer::View, &wgrad::buffer::View, usize, Reduction) -> wgrad::Result<Kernels>,
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
        let mut r = rng(2);
        for &n in LENGTHS {
            let x = uniform(&mut r, n, -3.0, 3.0);
            let mut y = uniform(&mut r, n, -3.0, 3.0);
            y[0] = x[0];
            let (xv, yv) = (gpu.upload("inp", &x).unwrap(), gpu.upload("tgt", &y).unwrap());
            for red in REDUCTIONS {
                let k = (self.build)(&gpu, self.golden_op, &xv, &yv, n, red).unwrap();
                let dout = uniform(&mut r, k.dout.len as usize, -1.0, 1.0);
                gpu.write(&k.dout, &dout).unwrap();
                k.forward.run(&gpu, "forward").unwrap();
                k.backward.run(&gpu, "backward").unwrap();
                let got = gpu.read_many(&[&k.out, &k.dinp]).unwrap();
                let name = format!("{} n={n} {red:?}", self.golden_op);
                assert_close(&format!("{name} out"), &got[0], &(self.forward32)(&x, &y, red), 1e-5, 1e-6);
                assert_close(&format!("{name} dinp"), &got[1], &(self.backward32)(&x, &y, &dout, red), 1e-5, 1e-12);
            }
        }
    }

    pub fn gpu_matches_pytorch(&self) {
        let Some(gpu) = gpu() else { return };
        for c in goldens("losses.safetensors", &[self.golden_op]) {
            let red = reduction_of(&c);
            let (_, x) = c.f32("inp");
            let k = (self.build)(
                &gpu,
                &c.name,
                &gpu.upload("inp", &x).unwrap(),
                &gpu.upload("tgt", &c.f32("tgt").1).unwrap(),
                x.len(),
                red,
            )
            .unwrap();
            gpu.write(&k.dout, &c.f32("dout").1).unwrap();
            k.forward.run(&gpu, "forward").unwrap();
            k.backward.run(&gpu, "backward").unwrap();
            assert_close(&format!("{} out", c.name), &gpu.read(&k.out).unwrap(), &c.f32("out").1, 1e-5, 1e-7);
            assert_close(&format!("{} dinp", c.name), &gpu.read(&k.dinp).unwrap(), &c.f32("dinp").1, 1e-4, 1e-7);
        }
    }
}
