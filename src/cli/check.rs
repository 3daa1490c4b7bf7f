//! `wgrad check`: a model (`--model`) on a PyTorch state dict and given batches, in train mode;
//! writes logits.i, loss.i, `grad.i.<key>` (and, with an optimizer, `param.i.<key>` for every
//! state-dict entry after each step; with `--clip-grad-norm`, `grad_norm.i`) to compare with
//! PyTorch. `--verify` runs the same steps on the CPU path and reports every activation's and
//! gradient's error.

use super::model_args::{OptimArgs, WeightsArgs};
use super::DeviceArgs;
use crate::graph::{self, Executor};
use crate::io::safetensors::{write, Array, File};
use crate::io::state_dict;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: WeightsArgs,
    /// Batch files (safetensors or torch.save's) holding `images` (f32, N×3×32×32) and `targets`
    /// (i64, N); repeat for several steps.
    #[arg(long = "batch", required = true)]
    batches: Vec<PathBuf>,
    /// Output file (safetensors).
    #[arg(long)]
    out: PathBuf,
    /// With --optimizer or --lr, an optimizer step follows each batch.
    #[command(flatten)]
    optim: OptimArgs,
    /// CrossEntropyLoss's label_smoothing, in [0, 1] [default: 0].
    #[arg(long = "label-smoothing", default_value_t = 0.0, allow_negative_numbers = true)]
    label_smoothing: f32,
    /// CrossEntropyLoss's weight, one per class, as W1,W2,… [default: none].
    #[arg(
        long = "class-weights",
        value_name = "W1,W2,…",
        value_delimiter = ',',
        num_args = 1,
        allow_negative_numbers = true
    )]
    class_weights: Option<Vec<f32>>,
    /// Run the same steps on the CPU path and compare every activation and gradient.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Reads a batch file: (images, targets, N).
pub fn read_batch(path: &Path) -> crate::Result<(Vec<f32>, Vec<i64>, usize)> {
    let f = File::read(path)?;
    let (ishape, images) = f.f32(path, "images")?;
    if ishape.len() != 4 || ishape[1..] != [3, 32, 32] {
        return Err(crate::Error::file(path, format!("images must be (N, 3, 32, 32), got {ishape:?}")));
    }
    let (tshape, targets) = f.i64(path, "targets")?;
    if tshape != [ishape[0]] {
        return Err(crate::Error::file(
            path,
            format!("targets must be ({},) to match images {ishape:?}, got {tshape:?}", ishape[0]),
        ));
    }
    if let Some(i) = images.iter().position(|v| !v.is_finite()) {
        return Err(crate::Error::file(path, format!("images hold a non-finite value at flat index {i}")));
    }
    Ok((images.to_vec(), targets.to_vec(), ishape[0]))
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    use crate::io::safetensors::{has_metadata_key, CHECK_MARK};
    crate::io::check_named_output(&a.out, "an output of `wgrad check`", |p| has_metadata_key(p, CHECK_MARK))?;
    crate::ops::cross_entropy::check_label_smoothing(a.label_smoothing)?;
    a.device.check_verify(a.verify)?;
    let device = a.device.select()?;
    let (kind, mut model) = a.weights.model.build(&a.weights.path)?;
    // A checkpoint's folder stands for its newest checkpoint, as in eval and predict.
    let weights = crate::io::checkpoint::resolve(&a.weights.path)?;
    state_dict::load_into(&weights, &mut model.params).map_err(|e| a.weights.model.hint(kind, &a.weights.path, e))?;
    let optimizer = if a.optim.given() { Some(a.optim.optimizer(None)?) } else { None };
    let schedule = a.optim.schedule(None, a.batches.len() as u64)?;
    let clip_grad_norm = a.optim.clip_grad_norm(None)?;
    if let Some(w) = &a.class_weights {
        let classes = graph::Plan::new(&model, 1, crate::ops::interface::Mode::Train)?.classes;
        if w.len() != classes {
            bail!("--class-weights: {} weights given but the model gives {classes} class scores", w.len());
        }
    }
    let batches: Vec<_> = a.batches.iter().map(|p| read_batch(p)).collect::<Result<_, _>>()?;
    let opts = graph::Options {
        optimizer,
        schedule,
        keep_all: a.verify,
        label_smoothing: a.label_smoothing,
        clip_grad_norm,
        loss_weight: a.class_weights.clone(),
        ..Default::default()
    };
    let mut ex: Option<Box<dyn Executor>> = None;
    let mut reference: Option<Box<dyn Executor>> = None;
    let mut out = Vec::new();
    let mut all_ok = true;
    for (i, (images, targets, n)) in batches.iter().enumerate() {
        let step = i + 1;
        // One executor per batch size; parameters and optimizer state carry over.
        if ex.as_ref().is_none_or(|e| e.plan().batch != *n) {
            let mut next = graph::executor(&device, &model, *n, opts.clone())?;
            if let Some(prev) = &ex {
                next.set_params(&prev.params()?)?;
                next.set_optimizer_state(&prev.optimizer_state()?)?;
            }
            ex = Some(next);
            if a.verify {
                let mut r = graph::executor(&crate::Device::Cpu, &model, *n, opts.clone())?;
                if let Some(prev) = &reference {
                    r.set_params(&prev.params()?)?;
                    r.set_optimizer_state(&prev.optimizer_state()?)?;
                }
                reference = Some(r);
            }
        }
        let e = ex.as_mut().unwrap();
        let before = match &reference {
            Some(_) => Some((e.params()?, e.optimizer_state()?)),
            None => None,
        };
        let name = a.batches[i].display();
        let loss = e.step(images, targets, true).with_context(|| format!("step {step} on {name}"))?.unwrap_or(f32::NAN);
        println!("step {step}: loss {loss:.6}  ({name}, {n} images)");
        let classes = e.plan().classes;
        out.push((format!("logits.{step}"), Array::F32 { shape: vec![*n, classes], data: e.logits()? }));
        out.push((format!("loss.{step}"), Array::F32 { shape: vec![], data: vec![loss] }));
        if let Some(norm) = e.grad_norm()? {
            out.push((format!("grad_norm.{step}"), Array::F32 { shape: vec![], data: vec![norm] }));
        }
        let grads = e.grads()?;
        out.extend(state_dict::tensors(&grads, &format!("grad.{step}.")));
        if optimizer.is_some() {
            out.extend(state_dict::tensors(&e.params()?, &format!("param.{step}.")));
        }
        if let (Some(r), Some((params, state))) = (reference.as_mut(), before) {
            // Each step is verified from the same state: ResNet-20 at batch 8 is chaotic enough
            // that two float32 runs drift apart over a few steps (tests/models.rs).
            r.set_params(&params)?;
            r.set_optimizer_state(&state)?;
            r.step(images, targets, false)?;
            let c = graph::compare(e.as_ref(), r.as_ref())?;
            print!("step {step}: {c}");
            all_ok &= c.ok();
        }
        if !loss.is_finite() {
            bail!("step {step}: the loss is {loss} (run with --verify to find the first node that produced a non-finite value)");
        }
    }
    // The mark by which a later run knows this file as wgrad's, to replace it.
    let mark = [(crate::io::safetensors::CHECK_MARK.to_string(), env!("CARGO_PKG_VERSION").to_string())].into();
    write(&a.out, &out, Some(mark))?;
    println!("wrote {} tensors to {}", out.len(), a.out.display());
    if !all_ok {
        eprintln!(
            "error: --verify found tensors beyond tolerance (relative L2 error above {:.0e} for activations, {:.0e} for gradients)",
            graph::VERIFY_TOL,
            graph::VERIFY_GRAD_TOL
        );
        return Ok(1);
    }
    Ok(0)
}
