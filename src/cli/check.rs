//! `wgrad check`: Tudui on a PyTorch state dict and given batches; writes logits.i, loss.i,
//! grad.i.<key> (and param.i.<key> after each SGD step) to compare with PyTorch. `--verify` runs
//! the same steps on the CPU path and reports every activation's and gradient's error.

use super::DeviceArgs;
use crate::graph::{self, Executor};
use crate::io::safetensors::{write, Array, File};
use crate::io::state_dict;
use crate::nn::models;
use crate::ops::sgd;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// State dict (safetensors) with Tudui's keys, e.g. from safetensors.torch.save_file(model.state_dict(), path).
    #[arg(long)]
    weights: PathBuf,
    /// Batch files (safetensors) holding `images` (f32, N×3×32×32) and `targets` (i64, N); repeat for several steps.
    #[arg(long = "batch", required = true)]
    batches: Vec<PathBuf>,
    /// Output file (safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Take an SGD step after each batch with this learning rate.
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f32>,
    #[arg(long, default_value_t = 0.0, requires = "lr", allow_negative_numbers = true)]
    momentum: f32,
    #[arg(long = "weight-decay", default_value_t = 0.0, requires = "lr", allow_negative_numbers = true)]
    weight_decay: f32,
    #[arg(long, default_value_t = 0.0, requires = "lr", allow_negative_numbers = true)]
    dampening: f32,
    #[arg(long, requires = "lr")]
    nesterov: bool,
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
    let device = a.device.select()?;
    let mut model = models::tudui(0);
    state_dict::load_into(&a.weights, &mut model.params)?;
    let sgd = match a.lr {
        Some(lr) => {
            let c = sgd::Config {
                lr,
                momentum: a.momentum,
                dampening: a.dampening,
                weight_decay: a.weight_decay,
                nesterov: a.nesterov,
            };
            c.check()?;
            Some(c)
        }
        None => None,
    };
    let batches: Vec<_> = a.batches.iter().map(|p| read_batch(p)).collect::<Result<_, _>>()?;
    let opts = graph::Options { sgd, keep_all: a.verify, ..Default::default() };
    let mut ex: Option<Box<dyn Executor>> = None;
    let mut reference: Option<Box<dyn Executor>> = None;
    let mut out = Vec::new();
    let mut all_ok = true;
    for (i, (images, targets, n)) in batches.iter().enumerate() {
        let step = i + 1;
        // One executor per batch size; parameters and optimizer state carry over.
        if ex.as_ref().is_none_or(|e| e.plan().batch != *n) {
            let mut next = graph::executor(&device, &model, *n, opts)?;
            if let Some(prev) = &ex {
                next.set_params(&prev.params()?)?;
                let (m, s) = prev.optimizer_state()?;
                next.set_optimizer_state(&m, s)?;
            }
            ex = Some(next);
            if a.verify {
                let mut r = graph::executor(&crate::Device::Cpu, &model, *n, opts)?;
                if let Some(prev) = &reference {
                    r.set_params(&prev.params()?)?;
                    let (m, s) = prev.optimizer_state()?;
                    r.set_optimizer_state(&m, s)?;
                }
                reference = Some(r);
            }
        }
        let e = ex.as_mut().unwrap();
        let name = a.batches[i].display();
        let loss = e.step(images, targets, true).with_context(|| format!("step {step} on {name}"))?.unwrap_or(f32::NAN);
        println!("step {step}: loss {loss:.6}  ({name}, {n} images)");
        let classes = e.plan().classes;
        out.push((format!("logits.{step}"), Array::F32 { shape: vec![*n, classes], data: e.logits()? }));
        out.push((format!("loss.{step}"), Array::F32 { shape: vec![], data: vec![loss] }));
        let grads = e.grads()?;
        out.extend(state_dict::tensors(&grads, &format!("grad.{step}.")));
        if sgd.is_some() {
            out.extend(state_dict::tensors(&e.params()?, &format!("param.{step}.")));
        }
        if let Some(r) = reference.as_mut() {
            r.step(images, targets, false)?;
            let c = graph::compare(e.as_ref(), r.as_ref())?;
            print!("step {step}: {c}");
            all_ok &= c.ok();
        }
        if !loss.is_finite() {
            bail!("step {step}: the loss is {loss} (run with --verify to find the first node that produced a non-finite value)");
        }
    }
    write(&a.out, &out, None)?;
    println!("wrote {} tensors to {}", out.len(), a.out.display());
    if !all_ok {
        eprintln!(
            "error: --verify found tensors beyond tolerance ({:.0e} of each tensor's largest magnitude)",
            graph::VERIFY_TOL
        );
        return Ok(1);
    }
    Ok(0)
}
