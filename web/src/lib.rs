//! wgrad in a browser tab: the engine built for wasm32, running its WGSL kernels on the page's
//! WebGPU. The page (web/static) drives it through three objects:
//!
//! - [`Gpu`]: the page's WebGPU adapter and device (`await Gpu.request()`).
//! - [`Data`]: a dataset's train and test splits, parsed by the same Rust code as the CLI: the
//!   synthetic set generated from its seed (the CLI's bytes), Fashion-MNIST's four IDX .gz files,
//!   or CIFAR-10's binary batches or archive.
//! - [`Run`]: a model with its optimizer on that data, stepping exactly as `wgrad train` does (same
//!   initialisation from the seed, same shuffled order per epoch, drop_last), so its losses equal
//!   the CLI's; it also evaluates, predicts and gives or takes a PyTorch state dict.
//!
//! Nothing blocks: every read from the GPU is a mapped buffer awaited, so each call yields to the
//! page's event loop while the GPU works.

// wgrad's GPU context is shared through an Arc natively; in the browser (one thread) it is a
// plain shared handle.
#![allow(clippy::arc_with_non_send_sync)]

use js_sys::Promise;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use wgrad::data::image::Framing;
use wgrad::data::loader::{Config as LoaderConfig, DataLoader};
use wgrad::data::{cifar10, idx, synthetic, Dataset, DatasetKind, Split};
use wgrad::graph::gpu::GpuExecutor;
use wgrad::graph::{self, Executor};
use wgrad::io::state_dict;
use wgrad::models::ModelKind;
use wgrad::optim::{Adam, LrSchedule, Optimizer, ScheduleKind, ScheduleSettings, Sgd};
use wgrad::{Model, Result};

#[wasm_bindgen(start)]
fn start() {
    // A panic aborts the module, so the promise of the call that panicked never settles: besides
    // the console, the page is told (`window.wgradFatal(message)`) so it can say so.
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let global = js_sys::global();
        if let Ok(f) = js_sys::Reflect::get(&global, &JsValue::from_str("wgradFatal")) {
            if let Some(f) = f.dyn_ref::<js_sys::Function>() {
                let _ = f.call1(&global, &JsValue::from_str(&info.to_string()));
            }
        }
    }));
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// The names `model` takes, as `wgrad --model` does.
#[wasm_bindgen(js_name = modelNames)]
pub fn model_names() -> Vec<String> {
    ModelKind::ALL.iter().map(|m| m.name().to_string()).collect()
}

/// The page's WebGPU device.
#[wasm_bindgen]
pub struct Gpu {
    gpu: Arc<wgrad::Gpu>,
}

#[wasm_bindgen]
impl Gpu {
    /// Asks the browser for a WebGPU adapter and device; the error says what is missing.
    pub async fn request() -> std::result::Result<Gpu, JsValue> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::BROWSER_WEBGPU;
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| js_err(format!("this browser offers no WebGPU adapter ({e})")))?;
        // Every kernel fits WebGPU's default limits (tests/webgpu_limits.rs); the adapter's own
        // are asked for so large batches fit where the adapter allows them.
        let gpu = wgrad::Gpu::open(&adapter, adapter.limits()).await.map_err(js_err)?;
        Ok(Gpu { gpu: Arc::new(gpu) })
    }

    /// The adapter as wgpu sees it: its description (often empty in browsers, which hide
    /// details) and kind, e.g. "(BrowserWebGpu, Cpu)" for a software fallback adapter.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        let i = &self.gpu.info;
        format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type).trim().to_string()
    }
}

/// A dataset's two splits.
#[wasm_bindgen]
pub struct Data {
    train: Arc<Dataset>,
    test: Arc<Dataset>,
}

#[wasm_bindgen]
impl Data {
    /// The synthetic set, generated from wgrad's fixed seed: the bytes `wgrad train --dataset
    /// synthetic` writes and reads.
    pub fn synthetic() -> std::result::Result<Data, JsValue> {
        let train = synthetic::generate(synthetic::SEED, Split::Train).map_err(js_err)?;
        let test = synthetic::generate(synthetic::SEED, Split::Test).map_err(js_err)?;
        Ok(Data { train: Arc::new(train), test: Arc::new(test) })
    }

    /// Fashion-MNIST from its four files, by name (train-images-idx3-ubyte.gz, …).
    #[wasm_bindgen(js_name = fashionMnist)]
    pub fn fashion_mnist(names: Vec<String>, files: Vec<js_sys::Uint8Array>) -> std::result::Result<Data, JsValue> {
        Data::idx(DatasetKind::FashionMnist, names, files)
    }

    /// MNIST from its four files, by name (train-images-idx3-ubyte.gz, …).
    pub fn mnist(names: Vec<String>, files: Vec<js_sys::Uint8Array>) -> std::result::Result<Data, JsValue> {
        Data::idx(DatasetKind::Mnist, names, files)
    }

    /// CIFAR-10 from its binary batches (data_batch_1.bin … test_batch.bin), their Python pickles,
    /// or the archive cifar-10-binary.tar.gz.
    pub fn cifar10(names: Vec<String>, files: Vec<js_sys::Uint8Array>) -> std::result::Result<Data, JsValue> {
        let files = named(names, files)?;
        let train = cifar10::from_files(Split::Train, &files).map_err(js_err)?;
        let test = cifar10::from_files(Split::Test, &files).map_err(js_err)?;
        Ok(Data { train: Arc::new(train), test: Arc::new(test) })
    }

    /// E.g. "synthetic: 10000 training and 2000 test images".
    #[wasm_bindgen(getter)]
    pub fn summary(&self) -> String {
        format!("{}: {} training and {} test images", self.train.name, self.train.len(), self.test.len())
    }
}

impl Data {
    /// A dataset of the MNIST family from its four IDX files, by name.
    fn idx(
        kind: DatasetKind,
        names: Vec<String>,
        files: Vec<js_sys::Uint8Array>,
    ) -> std::result::Result<Data, JsValue> {
        let files = named(names, files)?;
        let get = |want: &str| {
            files.iter().find(|(n, _)| n.ends_with(want)).ok_or_else(|| {
                js_err(format!(
                    "{} needs {want} among the files picked ({})",
                    kind.name(),
                    files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })
        };
        let split = |split: Split, prefix: &str| -> std::result::Result<Dataset, JsValue> {
            let (iname, ibytes) = get(&format!("{prefix}-images-idx3-ubyte.gz"))?;
            let (lname, lbytes) = get(&format!("{prefix}-labels-idx1-ubyte.gz"))?;
            idx::from_gz(kind, split, (Path::new(iname), ibytes), (Path::new(lname), lbytes)).map_err(js_err)
        };
        Ok(Data { train: Arc::new(split(Split::Train, "train")?), test: Arc::new(split(Split::Test, "t10k")?) })
    }
}

fn named(names: Vec<String>, files: Vec<js_sys::Uint8Array>) -> std::result::Result<Vec<(String, Vec<u8>)>, JsValue> {
    if names.len() != files.len() {
        return Err(js_err(format!("{} names for {} files", names.len(), files.len())));
    }
    Ok(names.into_iter().zip(files.iter().map(|f| f.to_vec())).collect())
}

/// What a run is made of, as the page's form (and URL query) gives it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    model: String,
    batch: usize,
    optimizer: String,
    lr: Option<f32>,
    /// SGD's momentum, as `wgrad train --momentum` (default: 0).
    #[serde(default)]
    momentum: Option<f32>,
    /// The optimizer's weight decay, as `wgrad train --weight-decay` (default: PyTorch's, 0; AdamW
    /// 0.01).
    #[serde(default)]
    weight_decay: Option<f32>,
    seed: u64,
    /// Test images per evaluation (default: the whole test split).
    eval_images: Option<usize>,
    /// RandomCrop(32, padding=4) and RandomHorizontalFlip() per training image, as `wgrad train
    /// --augment` (default: off).
    #[serde(default)]
    augment: bool,
    /// CrossEntropyLoss(label_smoothing=…), as `wgrad train --label-smoothing` (default: 0).
    #[serde(default)]
    label_smoothing: f32,
    /// torch.nn.utils.clip_grad_norm_'s max_norm before each step, as `wgrad train
    /// --clip-grad-norm` (default: none).
    #[serde(default)]
    clip_grad_norm: Option<f32>,
    /// The learning-rate schedule, as `wgrad train`'s flags of the same names give it:
    /// `lr_schedule` ("constant", the default; "cosine", CosineAnnealingLR to `lr_min` over the
    /// run's `steps` after the warmup; "step", "multistep", "exponential"), `warmup_steps`,
    /// `lr_min`, `lr_step_size`, `lr_milestones` and `lr_gamma`.
    #[serde(flatten)]
    schedule: ScheduleSettings,
    /// The run's length in steps, as the form's Steps gives it (0: until Stop): the cosine
    /// schedule's length.
    #[serde(default)]
    steps: u64,
}

#[derive(Serialize)]
struct StepResult {
    step: u64,
    epoch: u64,
    loss: f32,
    lr: f64,
}

#[derive(Serialize)]
struct ScoreResult {
    images: usize,
    accuracy: f64,
    loss: f64,
}

#[derive(Serialize)]
struct Guess {
    class: String,
    probability: f32,
}

/// Evaluation batch size (the last batch of a split may be smaller).
const EVAL_BATCH: usize = 250;

struct Inner {
    gpu: Arc<wgrad::Gpu>,
    model: Model,
    kind: ModelKind,
    optimizer: Optimizer,
    schedule: LrSchedule,
    train: GpuExecutor,
    loader: DataLoader,
    test: Arc<Dataset>,
    classes: Vec<String>,
    /// How a picture to predict is made into an input: as the dataset's images were.
    framing: Framing,
    eval_images: usize,
    /// Inference executors by batch size, built on first use.
    inference: HashMap<usize, GpuExecutor>,
    order: Vec<usize>,
    epoch: u64,
    /// Next batch of the epoch.
    batch: usize,
    step: u64,
}

/// A model training on a dataset.
#[wasm_bindgen]
pub struct Run {
    inner: Rc<RefCell<Inner>>,
}

/// Runs `f` on the run's state as a promise; a second call while one is running is refused.
/// The borrow is held across the awaits on purpose: it is what refuses the second call (a
/// `try_borrow_mut`, so an error, never a panic).
#[allow(clippy::await_holding_refcell_ref)]
fn with<T: Serialize + 'static>(
    inner: &Rc<RefCell<Inner>>,
    f: impl for<'a> FnOnce(&'a mut Inner) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + 'a>> + 'static,
) -> Promise {
    let inner = inner.clone();
    future_to_promise(async move {
        let mut guard =
            inner.try_borrow_mut().map_err(|_| js_err("the run is busy: wait for the previous call to finish"))?;
        let out = f(&mut guard).await.map_err(js_err)?;
        serde_json::to_string(&out).map(|s| JsValue::from_str(&s)).map_err(js_err)
    })
}

#[wasm_bindgen]
impl Run {
    /// A run of `settings` (JSON: model, batch, optimizer "sgd" | "adam" | "adamw", lr, momentum,
    /// weight_decay, seed, eval_images, augment, label_smoothing, clip_grad_norm, lr_schedule,
    /// warmup_steps, lr_min, lr_step_size, lr_milestones, lr_gamma, steps) on `data`,
    /// initialised as `wgrad train --seed` initialises it.
    pub fn create(gpu: &Gpu, data: &Data, settings: &str) -> std::result::Result<Run, JsValue> {
        let s: Settings = serde_json::from_str(settings).map_err(|e| js_err(format!("settings {settings}: {e}")))?;
        let kind = ModelKind::parse(&s.model)
            .ok_or_else(|| js_err(format!("model {:?}: expected one of {}", s.model, model_names().join(", "))))?;
        // The CLI's defaults: SGD at 0.01 (no momentum), Adam and AdamW at 0.001.
        if s.momentum.is_some() && s.optimizer != "sgd" {
            return Err(js_err("momentum applies to SGD, not Adam or AdamW"));
        }
        let mut optimizer = match s.optimizer.as_str() {
            "sgd" => Optimizer::Sgd(Sgd::new(s.lr.unwrap_or(0.01)).momentum(s.momentum.unwrap_or(0.0))),
            "adam" => Optimizer::Adam(Adam::new(s.lr.unwrap_or(0.001))),
            "adamw" => Optimizer::AdamW(Adam::adamw(s.lr.unwrap_or(0.001))),
            o => return Err(js_err(format!("optimizer {o:?}: expected sgd, adam or adamw"))),
        };
        if let Some(wd) = s.weight_decay {
            optimizer = match optimizer {
                Optimizer::Sgd(o) => Optimizer::Sgd(o.weight_decay(wd)),
                Optimizer::Adam(o) => Optimizer::Adam(o.weight_decay(wd)),
                Optimizer::AdamW(o) => Optimizer::AdamW(o.weight_decay(wd)),
            };
        }
        optimizer.check().map_err(js_err)?;
        wgrad::ops::cross_entropy::check_label_smoothing(s.label_smoothing).map_err(js_err)?;
        if let Some(max_norm) = s.clip_grad_norm {
            wgrad::ops::clip_grad_norm::check(max_norm).map_err(js_err)?;
        }
        // As `wgrad train --max-steps N`: a cosine's T_max is the run's end, after the warmup.
        if s.schedule.lr_schedule == Some(ScheduleKind::Cosine) && s.steps == 0 {
            return Err(js_err("the cosine schedule runs over the run's steps: give Steps (not 0)"));
        }
        let schedule = s.schedule.build(None, s.steps).map_err(js_err)?;
        let model = kind.build(s.seed);
        let opts = graph::Options {
            optimizer: Some(optimizer),
            schedule: schedule.clone(),
            seed: s.seed,
            label_smoothing: s.label_smoothing,
            clip_grad_norm: s.clip_grad_norm,
            ..Default::default()
        };
        let train = GpuExecutor::new(gpu.gpu.clone(), &model, s.batch, opts).map_err(js_err)?;
        // As `wgrad train`: shuffled from the seed, a new order each epoch, whole batches only.
        let loader = DataLoader::new(
            data.train.clone(),
            LoaderConfig {
                batch_size: s.batch,
                shuffle: true,
                seed: s.seed,
                drop_last: true,
                normalize: None,
                augment: s.augment,
            },
        )
        .map_err(js_err)?;
        if loader.is_empty() {
            return Err(js_err(format!(
                "the training split has {} images, fewer than one batch of {}",
                data.train.len(),
                s.batch
            )));
        }
        let order = loader.order(0);
        let eval_images = s.eval_images.unwrap_or(data.test.len()).min(data.test.len());
        Ok(Run {
            inner: Rc::new(RefCell::new(Inner {
                gpu: gpu.gpu.clone(),
                model,
                kind,
                optimizer,
                schedule,
                train,
                loader,
                test: data.test.clone(),
                classes: data.train.classes.clone(),
                framing: Framing::of_dataset(&data.train.name),
                eval_images,
                inference: HashMap::new(),
                order,
                epoch: 0,
                batch: 0,
                step: 0,
            })),
        })
    }

    /// Batches per epoch.
    #[wasm_bindgen(getter, js_name = batchesPerEpoch)]
    pub fn batches_per_epoch(&self) -> usize {
        self.inner.borrow().loader.len()
    }

    /// Parameters of the model.
    #[wasm_bindgen(getter)]
    pub fn parameters(&self) -> usize {
        self.inner.borrow().model.params.count()
    }

    /// One optimizer step on the next batch: resolves to JSON {step, epoch, loss, lr}.
    pub fn step(&self) -> Promise {
        with(&self.inner, |r| Box::pin(r.step()))
    }

    /// Accuracy and mean loss over the first `eval_images` test images in eval mode: resolves to
    /// JSON {images, accuracy, loss}.
    pub fn evaluate(&self) -> Promise {
        with(&self.inner, |r| Box::pin(r.evaluate()))
    }

    /// The top-3 classes of a PNG or JPEG (framed as the dataset's images, as `wgrad predict` does): resolves to
    /// JSON [{class, probability}].
    pub fn predict(&self, name: String, bytes: Vec<u8>) -> Promise {
        with(&self.inner, move |r| Box::pin(async move { r.predict(&name, &bytes).await }))
    }

    /// The model's state dict as a .safetensors file (PyTorch's keys): resolves to a Uint8Array.
    #[wasm_bindgen(js_name = stateDict)]
    #[allow(clippy::await_holding_refcell_ref)] // as in `with`: a training call meanwhile is refused
    pub fn state_dict(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let r = inner.try_borrow().map_err(|_| js_err("the run is busy: wait for the previous call to finish"))?;
            let params = r.train.params_async().await.map_err(js_err)?;
            let meta =
                HashMap::from([("format".to_string(), "pt".to_string()), ("model".into(), r.kind.name().into())]);
            let bytes = state_dict::to_bytes(&params, Some(meta)).map_err(js_err)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// Loads a state dict (a .safetensors file of this model's keys, e.g. one PyTorch saved) into
    /// the model; the error names the first keys that do not fit.
    #[wasm_bindgen(js_name = loadStateDict)]
    pub fn load_state_dict(&self, name: &str, bytes: &[u8]) -> std::result::Result<(), JsValue> {
        let mut r = self.inner.try_borrow_mut().map_err(|_| js_err("the run is busy"))?;
        let mut params = r.model.params.clone();
        state_dict::load_bytes(name, bytes, &mut params).map_err(js_err)?;
        r.train.set_params(&params).map_err(js_err)
    }
}

impl Inner {
    async fn step(&mut self) -> Result<StepResult> {
        if self.batch == self.loader.len() {
            self.epoch += 1;
            self.batch = 0;
            self.order = self.loader.order(self.epoch);
        }
        let b = self.loader.batch(self.epoch, &self.order, self.batch);
        let lr = self.schedule.lr(self.optimizer.lr() as f64, self.step);
        self.train.upload_pixels(&b.pixels, &b.to_tensor, Some(&b.targets))?;
        let loss = self.train.train_step_resident().await?;
        self.batch += 1;
        self.step += 1;
        if !loss.is_finite() {
            return Err(wgrad::Error::Graph(format!(
                "the loss became {loss} at step {} (epoch {}, batch {}): lower the learning rate",
                self.step,
                self.epoch,
                self.batch - 1
            )));
        }
        Ok(StepResult { step: self.step, epoch: self.epoch, loss, lr })
    }

    fn inference(&mut self, batch: usize) -> Result<&mut GpuExecutor> {
        if !self.inference.contains_key(&batch) {
            let e = GpuExecutor::new(self.gpu.clone(), &self.model, batch, graph::Options::inference())?;
            self.inference.insert(batch, e);
        }
        Ok(self.inference.get_mut(&batch).expect("inserted above"))
    }

    async fn evaluate(&mut self) -> Result<ScoreResult> {
        let params = self.train.params_async().await?;
        let n = self.eval_images;
        let loader = DataLoader::new(self.test.clone(), LoaderConfig::new(EVAL_BATCH))?;
        let order: Vec<usize> = (0..n).collect();
        // The batch sizes met (whole batches, then the rest), each executor given the weights once.
        let mut sizes = vec![n.min(EVAL_BATCH), n % EVAL_BATCH];
        sizes.retain(|&s| s > 0);
        sizes.dedup();
        for size in sizes {
            self.inference(size)?.set_params(&params)?;
        }
        let (mut correct, mut loss) = (0usize, 0f64);
        for b in 0..n.div_ceil(EVAL_BATCH) {
            let batch = loader.batch(0, &order, b);
            let ex = self.inference(batch.len())?;
            ex.upload_pixels(&batch.pixels, &batch.to_tensor, None)?;
            let logits = ex.forward_resident_async().await?;
            let (c, l) = wgrad::eval::score_logits(&logits, &batch.targets, ex.plan().classes);
            correct += c;
            loss += l;
        }
        let d = n.max(1) as f64;
        Ok(ScoreResult { images: n, accuracy: correct as f64 / d, loss: loss / d })
    }

    async fn predict(&mut self, name: &str, bytes: &[u8]) -> Result<Vec<Guess>> {
        let image = wgrad::data::image::decode_image(Path::new(name), bytes, self.framing)?;
        let params = self.train.params_async().await?;
        let ex = self.inference(1)?;
        ex.set_params(&params)?;
        let logits = ex.forward_async(&image).await?;
        let ranked = wgrad::eval::top_classes(&logits, logits.len(), 3).pop().unwrap_or_default();
        Ok(ranked
            .into_iter()
            .map(|(i, p)| Guess {
                class: self.classes.get(i).cloned().unwrap_or_else(|| i.to_string()),
                probability: p,
            })
            .collect())
    }
}
