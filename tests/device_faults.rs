//! Device faults reach the caller as errors, with the operation's label, never as a panic or a hang:
//! a validation error (a bind group missing bindings), a buffer beyond the adapter's limits, and a
//! lost (destroyed) device. Each test opens a GPU of its own so the fault stays there.

mod common;
use common::*;
use wgrad::buffer::View;
use wgrad::kernel::{Kernel, Program};
use wgrad::ops::{elementwise_loss, l1_loss};
use wgrad::Gpu;

fn own_gpu() -> Option<Gpu> {
    gpu()?;
    Gpu::default_adapter().unwrap()
}

/// L1Loss(reduction='sum') of `n` elements: its forward program and the view it writes the loss to.
fn l1_sum(g: &Gpu, label: &str, x: &View, y: &View, n: usize) -> (Program, View) {
    let red = wgrad::Reduction::Sum;
    let scratch: Vec<View> =
        elementwise_loss::gpu_scratch(n, red).into_iter().map(|w| g.zeros("scratch", w).unwrap()).collect();
    let (out, dout, dinp) =
        (g.zeros("out", 1).unwrap(), g.zeros("dout", 1).unwrap(), g.zeros("dinp", n as u64).unwrap());
    let b = elementwise_loss::GpuBuffers {
        inp: x,
        tgt: y,
        scratch: scratch.iter().collect(),
        out: &out,
        dout: &dout,
        dinp: &dinp,
    };
    (l1_loss::forward_gpu(g, label, &b, n, red).unwrap(), out)
}

#[test]
fn a_validation_error_is_an_error_naming_the_kernel() {
    let Some(g) = own_gpu() else { return };
    let a = g.zeros("a", 4).unwrap();
    // l1_loss_forward binds three storage buffers; a bind group with one fails wgpu's validation.
    drop(l1_sum(&g, "fine", &a, &a, 4));
    let params = wgrad::ops::elementwise_loss::ForwardParams { n: 4, reduction: 0, _pad0: 0, _pad1: 0 };
    let e = Kernel::new(&g, "l1_loss_forward", "broken_kernel", &params, &[&a], wgrad::kernel::Dispatch::Workgroups(1))
        .err()
        .expect("a missing binding must be an error")
        .to_string();
    assert!(e.contains("GPU error") && e.contains("broken_kernel"), "{e}");
    // The device stays usable after a captured validation error.
    let x = g.upload("x", &[1.0f32, -2.0, 3.0, 0.0]).unwrap();
    let y = g.upload("y", &[0.0f32; 4]).unwrap();
    let (prog, out) = l1_sum(&g, "after", &x, &y, 4);
    prog.run(&g, "after").unwrap();
    assert_eq!(g.read(&out).unwrap(), vec![6.0]);
}

#[test]
fn buffers_beyond_the_adapters_limits_are_refused_before_any_dispatch() {
    let Some(g) = own_gpu() else { return };
    let e = g.zeros("huge", g.limits.max_buffer_size / 4 + 1).unwrap_err().to_string();
    assert!(e.contains("huge") && e.contains("max_buffer_size"), "{e}");
    let model = wgrad::models::tudui(0);
    // Tudui's first activation at this batch exceeds lavapipe's 128 MiB storage binding limit.
    let batch = (g.limits.max_storage_buffer_binding_size as usize / (4 * 32 * 32 * 32)) + 1;
    let g = std::sync::Arc::new(g);
    let before = g.submit_count();
    let e = wgrad::graph::gpu::GpuExecutor::new(g.clone(), &model, batch, Default::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("max_storage_buffer_binding_size") || e.contains("max_buffer_size"), "{e}");
    assert!(e.contains(&format!("batch {batch}")), "{e}");
    assert_eq!(g.submit_count(), before, "the refused executor submitted work");
}

#[test]
fn a_lost_device_is_an_error_not_a_panic_or_a_hang() {
    let Some(g) = own_gpu() else { return };
    let x = g.upload("x", &[1.0f32, 2.0]).unwrap();
    let y = g.upload("y", &[0.0f32, 0.0]).unwrap();
    let (prog, out) = l1_sum(&g, "before_loss", &x, &y, 2);
    g.device.destroy();
    let run = std::thread::spawn(move || {
        let r = prog.run(&g, "after_loss").and_then(|_| g.read(&out));
        r.map(|_| ()).map_err(|e| e.to_string())
    });
    let t = std::time::Instant::now();
    while !run.is_finished() {
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "running on a lost device hung");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let e = run.join().expect("running on a lost device must not panic").expect_err("a lost device must be an error");
    assert!(e.contains("GPU error"), "{e}");
}
