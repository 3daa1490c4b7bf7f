//! The CPU path allocates nothing per training step, and nothing per inference pass but the logits
//! it returns, once its executor has run a step (issue 13): every allocation in steady-state steps
//! of every model is caught with its stack. Two libraries' own are allowed: matrixmultiply's
//! packing buffers (it allocates them in each GEMM call; Linear and the im2col convolutions use
//! it) and the blocks of rayon's job queue (crossbeam-deque, reused once grown).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use wgrad::nn::models::ModelKind;
use wgrad::optim::{Optimizer, Sgd};
use wgrad::{Device, ExecOptions};

struct Watching;
static ARMED: AtomicBool = AtomicBool::new(false);
static SEEN: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
thread_local!(static INSIDE: Cell<bool> = const { Cell::new(false) });

impl Watching {
    fn note(&self, size: usize) {
        if ARMED.load(Ordering::Relaxed) && !INSIDE.with(|i| i.replace(true)) {
            let stack = std::backtrace::Backtrace::force_capture().to_string();
            SEEN.lock().unwrap().push((size, stack));
            INSIDE.with(|i| i.set(false));
        }
    }
}

unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        self.note(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        self.note(n);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Watching = Watching;

/// The allocations `f` makes that neither library explains: (size, the stack's wgrad frames).
fn unexplained(f: impl FnOnce()) -> Vec<(usize, String)> {
    SEEN.lock().unwrap().clear();
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    let seen = std::mem::take(&mut *SEEN.lock().unwrap());
    seen.into_iter()
        .filter(|(_, s)| !["matrixmultiply", "crossbeam_deque", "crossbeam-deque"].iter().any(|l| s.contains(l)))
        .map(|(n, s)| (n, s.lines().filter(|l| l.contains("wgrad")).take(8).collect::<Vec<_>>().join("\n")))
        .collect()
}

#[test]
fn steps_and_forward_passes_allocate_nothing() {
    let n = 4;
    let images: Vec<f32> = (0..n * 3 * 32 * 32).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let targets: Vec<i64> = (0..n as i64).collect();
    for kind in [ModelKind::Tudui, ModelKind::CifarNet, ModelKind::Resnet20] {
        let model = kind.build(0);
        let opts = ExecOptions { optimizer: Some(Optimizer::Sgd(Sgd::new(0.01).momentum(0.9))), ..Default::default() };
        let mut train = wgrad::executor(&Device::Cpu, &model, n, opts).unwrap();
        let mut infer = wgrad::executor(&Device::Cpu, &model, n, ExecOptions::inference()).unwrap();
        for _ in 0..2 {
            train.step(&images, &targets, true).unwrap();
            infer.forward(&images).unwrap();
        }
        let steps = unexplained(|| {
            for _ in 0..3 {
                train.step(&images, &targets, true).unwrap();
            }
        });
        assert!(
            steps.is_empty(),
            "{}: {} allocations in 3 steps, the first:\n{:?}",
            kind.name(),
            steps.len(),
            steps[0]
        );
        let logits = 4 * n * 10;
        let forwards = unexplained(|| {
            for _ in 0..3 {
                infer.forward(&images).unwrap();
            }
        });
        let extra: Vec<_> = forwards.iter().filter(|(size, _)| *size != logits).collect();
        assert!(
            forwards.len() == 3 && extra.is_empty(),
            "{}: {} allocations in 3 forward passes: {forwards:?}",
            kind.name(),
            forwards.len()
        );
    }
}
