//! Linear: CPU vs finite differences, CPU and GPU vs PyTorch, GPU vs CPU, bad input.

mod common;
use common::*;
use wgrad::ops::linear::*;
use wgrad::testing::assert_close;

fn run_gpu(gpu: &wgrad::Gpu, c: &Config, n: usize, x: &[f32], w: &[f32], b: &[f32], dout: &[f32]) -> Vec<Vec<f32>> {
    let (xv, wv, bv, dv) = (
        gpu.upload("x", x).unwrap(),
        gpu.upload("w", w).unwrap(),
        gpu.upload("b", b).unwrap(),
        gpu.upload("dout", dout).unwrap(),
    );
    let out = gpu.zeros("out", dout.len() as u64).unwrap();
    let (dinp, dw, db) = (
        gpu.zeros("dinp", x.len() as u64).unwrap(),
        gpu.zeros("dw", w.len() as u64).unwrap(),
        gpu.zeros("db", b.len() as u64).unwrap(),
    );
    let mut prog = wgrad::kernel::Program::default();
    prog.extend(forward_gpu(gpu, "fc", c, n, &xv, &wv, Some(&bv), &out).unwrap());
    prog.extend(backward_gpu(gpu, "fc", c, n, &xv, &wv, &dv, Some(&dinp), &dw, Some(&db)).unwrap());
    prog.run(gpu, "fc").unwrap();
    gpu.read_many(&[&out, &dinp, &dw, &db]).unwrap()
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(13);
    let c = Config::new(5, 3);
    let x = to_f64(&uniform(&mut r, 4 * 5, -1.0, 1.0));
    let w = to_f64(&uniform(&mut r, 15, -1.0, 1.0));
    let b = to_f64(&uniform(&mut r, 3, -1.0, 1.0));
    let dout = to_f64(&uniform(&mut r, 12, -1.0, 1.0));
    let g = backward_cpu(&c, 4, &x, &w, &dout, true);
    assert_close(
        "dinp",
        &g.dinp.unwrap(),
        &numeric_grad(&x, 1e-6, |v| dot(&dout, &forward_cpu(&c, 4, v, &w, Some(&b)))),
        1e-6,
        1e-8,
    );
    assert_close(
        "dweight",
        &g.dweight,
        &numeric_grad(&w, 1e-6, |v| dot(&dout, &forward_cpu(&c, 4, &x, v, Some(&b)))),
        1e-6,
        1e-8,
    );
    assert_close(
        "dbias",
        &g.dbias.unwrap(),
        &numeric_grad(&b, 1e-6, |v| dot(&dout, &forward_cpu(&c, 4, &x, &w, Some(v)))),
        1e-6,
        1e-8,
    );
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    let gpu = gpu();
    for case in goldens("layers.safetensors", &["linear"]) {
        let c = Config::new(
            case.meta["in_features"].as_u64().unwrap() as usize,
            case.meta["out_features"].as_u64().unwrap() as usize,
        );
        let (shape, x) = case.f32("inp");
        let n = c.rows(&shape).unwrap();
        let (w, b, dout) = (case.f32("weight").1, case.f32("bias").1, case.f32("dout").1);
        let want = ["out", "dinp", "dweight", "dbias"].map(|k| case.f32(k).1);
        let g = backward_cpu(&c, n, &x, &w, &dout, true);
        let cpu = [forward_cpu(&c, n, &x, &w, Some(&b)), g.dinp.unwrap(), g.dweight, g.dbias.unwrap()];
        for (i, k) in ["out", "dinp", "dweight", "dbias"].iter().enumerate() {
            assert_close(&format!("{} cpu {k}", case.name), &cpu[i], &want[i], 1e-4, atol_of(&want[i], 1e-5));
        }
        if let Some(gpu) = &gpu {
            let got = run_gpu(gpu, &c, n, &x, &w, &b, &dout);
            for (i, k) in ["out", "dinp", "dweight", "dbias"].iter().enumerate() {
                assert_close(&format!("{} gpu {k}", case.name), &got[i], &want[i], 1e-4, atol_of(&want[i], 1e-5));
            }
        }
    }
}

#[test]
fn gpu_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    check_against_cpu(&gpu, 14);
}

#[test]
fn split_k_matches_cpu() {
    let Some(gpu) = splitting_gpu() else { return };
    check_against_cpu(&gpu, 16);
}

fn check_against_cpu(gpu: &wgrad::Gpu, seed: u64) {
    let mut r = rng(seed);
    for (n, i, o) in [(1, 1, 1), (3, 7, 5), (64, 1024, 64), (64, 64, 10), (130, 33, 17)] {
        let c = Config::new(i, o);
        let x = uniform(&mut r, n * i, -1.0, 1.0);
        let w = uniform(&mut r, o * i, -1.0, 1.0);
        let b = uniform(&mut r, o, -1.0, 1.0);
        let dout = uniform(&mut r, n * o, -1.0, 1.0);
        let got = run_gpu(gpu, &c, n, &x, &w, &b, &dout);
        let g = backward_cpu(&c, n, &x, &w, &dout, true);
        let want = [forward_cpu(&c, n, &x, &w, Some(&b)), g.dinp.unwrap(), g.dweight, g.dbias.unwrap()];
        for (k, name) in ["out", "dinp", "dweight", "dbias"].iter().enumerate() {
            assert_close(&format!("({n}, {i}) -> {o} {name}"), &got[k], &want[k], 1e-4, atol_of(&want[k], 1e-5));
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let c = Config::new(1024, 64);
    let e = c.rows(&[8, 1000]).unwrap_err().to_string();
    assert!(e.contains("Linear(in_features=1024, out_features=64)") && e.contains("[8, 1000]"), "{e}");
    assert!(c.rows(&[8, 4, 256]).is_err());
    assert!(c.rows(&[0, 1024]).unwrap_err().to_string().contains("empty"));
}
