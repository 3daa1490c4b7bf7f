//! One-off calls of every op on host tensors, like `torch.nn.functional`: each runs on the given
//! device (a GPU: one submit and one readback; the CPU path: plain Rust) and returns the output
//! and, when an upstream gradient `dout` is given, the gradients. The layers run through the same
//! op interface the graph executors use ([`layer`]); training uses the executors instead, which
//! keep everything on the device.
//!
//! The loss tutorial's cells, with `loss.backward()`'s gradient (an upstream gradient of 1):
//!
//! ```
//! use wgrad::functional::{cross_entropy, l1_loss, mse_loss};
//! use wgrad::ops::cross_entropy::{Options, Targets};
//! use wgrad::{Device, Reduction, Tensor};
//!
//! # fn main() -> wgrad::Result<()> {
//! let device = Device::Cpu; // or a GPU: Device::select(&wgrad::DeviceOptions::default())?.0
//! let inputs = Tensor::new(&[1, 3], vec![1.0, 2.0, 3.0])?;
//! let targets = Tensor::new(&[1, 3], vec![1.0, 2.0, 5.0])?;
//! let one = Tensor::scalar(1.0);
//! // nn.L1Loss(reduction='sum') and nn.L1Loss(): 2 and 0.6667.
//! assert_eq!(l1_loss(&device, &inputs, &targets, Reduction::Sum, None)?.out.data, [2.0]);
//! let mean = l1_loss(&device, &inputs, &targets, Reduction::Mean, Some(&one))?;
//! assert!((mean.out.data[0] - 2.0 / 3.0).abs() < 1e-6);
//! assert_eq!(mean.dinputs[0].data, [0.0, 0.0, -1.0 / 3.0]);
//! // nn.MSELoss(): 1.3333.
//! let mse = mse_loss(&device, &inputs, &targets, Reduction::Mean, None)?;
//! assert!((mse.out.data[0] - 4.0 / 3.0).abs() < 1e-6);
//! // nn.CrossEntropyLoss() of [[0.1, 0.2, 0.3]] against class 1: 1.1019.
//! let x = Tensor::new(&[1, 3], vec![0.1, 0.2, 0.3])?;
//! let ce = cross_entropy(&device, &x, Targets::Class(&[1]), &[1], &Options::default(), None)?;
//! assert!((ce.out.data[0] - 1.1019).abs() < 1e-4);
//! # Ok(())
//! # }
//! ```

use crate::buffer::View;
use crate::device::Device;
use crate::ops::interface::{CpuBackward, CpuForward, GpuIo, Mode, Op, RandomKey, Role};
use crate::ops::{cross_entropy, elementwise_loss, l1_loss, log_softmax, mse_loss, nll_loss, Reduction};
use crate::ops::{AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, GroupNorm, LayerNorm, Linear, MaxPool2d};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// What a call returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub out: Tensor,
    /// With a `dout`: the gradient w.r.t. each differentiable input (Add has two; a loss one).
    pub dinputs: Vec<Tensor>,
    /// With a `dout`: the gradients w.r.t. the parameters, in PyTorch's order (weight, bias).
    pub dparams: Vec<Tensor>,
    /// The op's parameters and buffers after the call (BatchNorm2d's running statistics are
    /// updated in train mode).
    pub state: Vec<Tensor>,
}

/// How a layer is called: its mode, and (Dropout) the random stream.
#[derive(Clone, Copy, Debug, Default)]
pub struct Call {
    pub mode: Mode,
    pub random: RandomKey,
}

/// Runs any op (a layer: anything the graph runs) on `inputs` with its f32 parameters and buffers
/// `state` in declaration order; with `dout`, also its backward. The output, gradients and state
/// come back as host tensors.
pub fn layer(
    device: &Device,
    op: &dyn Op,
    inputs: &[&Tensor],
    state: &[&Tensor],
    dout: Option<&Tensor>,
    call: Call,
) -> Result<Output> {
    let name = op.describe();
    if inputs.len() != op.arity() {
        return Err(Error::op(&name, format!("takes {} inputs, given {}", op.arity(), inputs.len())));
    }
    let decls: Vec<_> = op.params().into_iter().filter(|d| d.role != Role::Counter).collect();
    if decls.len() != state.len() {
        return Err(Error::op(&name, format!("has {} parameters and buffers, given {}", decls.len(), state.len())));
    }
    for (d, t) in decls.iter().zip(state) {
        if d.shape != t.shape {
            return Err(Error::op(&name, format!("{} must have shape {:?}, given {:?}", d.name, d.shape, t.shape)));
        }
    }
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
    let node = op.plan(&shapes, call.mode)?;
    let out_shape = node.out_shape();
    if let Some(d) = dout {
        if d.shape != out_shape {
            return Err(Error::op(
                &name,
                format!("dout must have the output's shape {out_shape:?}, given {:?}", d.shape),
            ));
        }
    }
    let trainable: Vec<usize> = (0..decls.len()).filter(|&i| decls[i].role == Role::Param).collect();
    let numel = |s: &[usize]| s.iter().product::<usize>();
    let dinputs_wanted: Vec<bool> = (0..inputs.len()).map(|_| dout.is_some()).collect();
    match device {
        Device::Cpu => {
            let mut out = vec![0f32; numel(&out_shape)];
            let mut st: Vec<Vec<f32>> = state.iter().map(|t| t.data.clone()).collect();
            let mut saved: Vec<Vec<f32>> = node.saved().iter().map(|&w| vec![0f32; w as usize]).collect();
            let scratch = node.cpu_scratch(&dinputs_wanted);
            let buffers = |words: &[u64]| words.iter().map(|&w| vec![0f32; w as usize]).collect::<Vec<_>>();
            let (mut fwd_scratch, mut bwd_scratch) = (buffers(&scratch.forward), buffers(&scratch.backward));
            if node.is_view() {
                out.copy_from_slice(&inputs[0].data);
            } else {
                node.forward_cpu(CpuForward {
                    inputs: inputs.iter().map(|t| t.data.as_slice()).collect(),
                    out: &mut out,
                    state: st.iter_mut().map(|v| v.as_mut_slice()).collect(),
                    saved: saved.iter_mut().map(|v| v.as_mut_slice()).collect(),
                    scratch: fwd_scratch.iter_mut().map(|v| v.as_mut_slice()).collect(),
                    random: call.random,
                });
            }
            let (mut dinputs, mut dparams) = (Vec::new(), Vec::new());
            if let Some(d) = dout {
                let mut di: Vec<Vec<f32>> = inputs.iter().map(|t| vec![0f32; t.numel()]).collect();
                let mut dp: Vec<Vec<f32>> = trainable.iter().map(|&i| vec![0f32; st[i].len()]).collect();
                node.backward_cpu(CpuBackward {
                    inputs: inputs.iter().map(|t| t.data.as_slice()).collect(),
                    out: &out,
                    dout: &d.data,
                    state: st.iter().map(|v| v.as_slice()).collect(),
                    saved: saved.iter().map(|v| v.as_slice()).collect(),
                    dinputs: di
                        .iter_mut()
                        .enumerate()
                        .map(|(k, v)| (!node.grad_is_dout(k)).then_some(v.as_mut_slice()))
                        .collect(),
                    dparams: dp.iter_mut().map(|v| v.as_mut_slice()).collect(),
                    scratch: bwd_scratch.iter_mut().map(|v| v.as_mut_slice()).collect(),
                    random: call.random,
                });
                for (k, v) in di.iter_mut().enumerate() {
                    if node.grad_is_dout(k) {
                        v.copy_from_slice(&d.data);
                    }
                }
                dinputs = di;
                dparams = dp;
            }
            let tensor = |shape: &[usize], v: Vec<f32>| Tensor::new(shape, v);
            Ok(Output {
                out: tensor(&out_shape, out)?,
                dinputs: dinputs.into_iter().zip(inputs).map(|(v, t)| tensor(&t.shape, v)).collect::<Result<_>>()?,
                dparams: dparams
                    .into_iter()
                    .zip(&trainable)
                    .map(|(v, &i)| tensor(&decls[i].shape, v))
                    .collect::<Result<_>>()?,
                state: st.into_iter().zip(state).map(|(v, t)| tensor(&t.shape, v)).collect::<Result<_>>()?,
            })
        }
        Device::Gpu(g) => {
            let up = |label: &str, t: &Tensor| g.upload(label, &t.data);
            let ins: Vec<View> = inputs.iter().map(|t| up("inp", t)).collect::<Result<_>>()?;
            let st: Vec<View> = state.iter().map(|t| up("state", t)).collect::<Result<_>>()?;
            let out = g.zeros("out", numel(&out_shape) as u64)?;
            let saved: Vec<View> = node.saved().iter().map(|&w| g.zeros("saved", w)).collect::<Result<_>>()?;
            let scratch = node.gpu_scratch(g, &dinputs_wanted);
            let zeros = |ws: &[u64]| ws.iter().map(|&w| g.zeros("scratch", w)).collect::<Result<Vec<_>>>();
            let (sf, sb, kept) = (zeros(&scratch.forward)?, zeros(&scratch.backward)?, zeros(&scratch.kept)?);
            let step = g.upload("step", &[call.random.step as u32, (call.random.step >> 32) as u32])?;
            let dout_v = dout.map(|d| up("dout", d)).transpose()?;
            let dins: Vec<View> = if dout.is_some() {
                inputs.iter().map(|t| g.zeros("dinp", t.numel() as u64)).collect::<Result<_>>()?
            } else {
                Vec::new()
            };
            let dps: Vec<View> = if dout.is_some() {
                trainable.iter().map(|&i| g.zeros("dparam", state[i].numel() as u64)).collect::<Result<_>>()?
            } else {
                Vec::new()
            };
            let fwd = GpuIo {
                label: "functional",
                inputs: ins.iter().collect(),
                out: if node.is_view() { &ins[0] } else { &out },
                state: st.iter().collect(),
                saved: saved.iter().collect(),
                scratch: sf.iter().collect(),
                kept: kept.iter().collect(),
                dout: dout_v.as_ref(),
                dinputs: dins.iter().enumerate().map(|(k, v)| (!node.grad_is_dout(k)).then_some(v)).collect(),
                dparams: dps.iter().collect(),
                step: &step,
                random_key: call.random.key,
            };
            let mut prog = node.forward_gpu(g, &fwd)?;
            if dout.is_some() {
                prog.extend(node.backward_gpu(g, &GpuIo { scratch: sb.iter().collect(), ..fwd })?);
            }
            prog.run(g, "functional")?;
            let mut views: Vec<&View> = vec![if node.is_view() { &ins[0] } else { &out }];
            views.extend(
                dins.iter().enumerate().map(|(k, v)| if node.grad_is_dout(k) { dout_v.as_ref().unwrap() } else { v }),
            );
            views.extend(&dps);
            views.extend(&st);
            let mut data = g.read_many(&views)?.into_iter();
            let mut next = |shape: &[usize]| Tensor::new(shape, data.next().unwrap());
            Ok(Output {
                out: next(&out_shape)?,
                dinputs: dins.iter().zip(inputs).map(|(_, t)| next(&t.shape)).collect::<Result<_>>()?,
                dparams: dps.iter().zip(&trainable).map(|(_, &i)| next(&decls[i].shape)).collect::<Result<_>>()?,
                state: state.iter().map(|t| next(&t.shape)).collect::<Result<_>>()?,
            })
        }
    }
}

/// F.conv2d with nn.Conv2d's configuration.
pub fn conv2d(
    device: &Device,
    conv: &Conv2d,
    inp: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    dout: Option<&Tensor>,
) -> Result<Output> {
    let state: Vec<&Tensor> = std::iter::once(weight).chain(bias).collect();
    layer(device, conv, &[inp], &state, dout, Call::default())
}

/// F.linear.
pub fn linear(
    device: &Device,
    lin: &Linear,
    inp: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    dout: Option<&Tensor>,
) -> Result<Output> {
    let state: Vec<&Tensor> = std::iter::once(weight).chain(bias).collect();
    layer(device, lin, &[inp], &state, dout, Call::default())
}

/// F.max_pool2d.
pub fn max_pool2d(device: &Device, pool: &MaxPool2d, inp: &Tensor, dout: Option<&Tensor>) -> Result<Output> {
    layer(device, pool, &[inp], &[], dout, Call::default())
}

/// F.avg_pool2d.
pub fn avg_pool2d(device: &Device, pool: &AvgPool2d, inp: &Tensor, dout: Option<&Tensor>) -> Result<Output> {
    layer(device, pool, &[inp], &[], dout, Call::default())
}

/// F.adaptive_avg_pool2d.
pub fn adaptive_avg_pool2d(
    device: &Device,
    pool: &AdaptiveAvgPool2d,
    inp: &Tensor,
    dout: Option<&Tensor>,
) -> Result<Output> {
    layer(device, pool, &[inp], &[], dout, Call::default())
}

/// F.relu.
pub fn relu(device: &Device, inp: &Tensor, dout: Option<&Tensor>) -> Result<Output> {
    layer(device, &crate::ops::ReLU, &[inp], &[], dout, Call::default())
}

/// a + b.
pub fn add(device: &Device, a: &Tensor, b: &Tensor, dout: Option<&Tensor>) -> Result<Output> {
    layer(device, &crate::ops::Add, &[a, b], &[], dout, Call::default())
}

/// F.batch_norm as nn.BatchNorm2d calls it: `state` is weight, bias, running_mean, running_var
/// (those it has); in train mode the returned state holds the updated running statistics.
pub fn batch_norm2d(
    device: &Device,
    bn: &BatchNorm2d,
    inp: &Tensor,
    state: &[&Tensor],
    mode: Mode,
    dout: Option<&Tensor>,
) -> Result<Output> {
    layer(device, bn, &[inp], state, dout, Call { mode, ..Call::default() })
}

/// F.group_norm as nn.GroupNorm calls it: `state` is weight and bias (those it has).
pub fn group_norm(
    device: &Device,
    gn: &GroupNorm,
    inp: &Tensor,
    state: &[&Tensor],
    dout: Option<&Tensor>,
) -> Result<Output> {
    layer(device, gn, &[inp], state, dout, Call::default())
}

/// F.layer_norm as nn.LayerNorm calls it: `state` is weight and bias (those it has).
pub fn layer_norm(
    device: &Device,
    ln: &LayerNorm,
    inp: &Tensor,
    state: &[&Tensor],
    dout: Option<&Tensor>,
) -> Result<Output> {
    layer(device, ln, &[inp], state, dout, Call::default())
}

/// F.dropout with wgrad's counter-based mask (`random` says which).
pub fn dropout(
    device: &Device,
    d: &Dropout,
    inp: &Tensor,
    mode: Mode,
    random: RandomKey,
    dout: Option<&Tensor>,
) -> Result<Output> {
    layer(device, d, &[inp], &[], dout, Call { mode, random })
}

/// The shape of a loss's output: the input's (or the targets') for 'none', a scalar otherwise.
fn loss_dout(dout: Option<&Tensor>, shape: &[usize], reduction: Reduction) -> Result<Option<Vec<f32>>> {
    let want: Vec<usize> = if reduction == Reduction::None { shape.to_vec() } else { vec![] };
    match dout {
        None => Ok(None),
        Some(d) if d.shape == want || (want.is_empty() && d.numel() == 1) => Ok(Some(d.data.clone())),
        Some(d) => Err(Error::op("loss", format!("dout must have shape {want:?}, given {:?}", d.shape))),
    }
}

fn loss_output(out_shape: Vec<usize>, out: Vec<f32>, inp_shape: &[usize], dinp: Option<Vec<f32>>) -> Result<Output> {
    Ok(Output {
        out: Tensor::new(&out_shape, out)?,
        dinputs: dinp.map(|d| Tensor::new(inp_shape, d)).transpose()?.into_iter().collect(),
        dparams: Vec::new(),
        state: Vec::new(),
    })
}

/// F.l1_loss / F.mse_loss: `which` is l1_loss::KERNELS or mse_loss::KERNELS.
fn elementwise(
    device: &Device,
    which: &'static str,
    inp: &Tensor,
    tgt: &Tensor,
    reduction: Reduction,
    dout: Option<&Tensor>,
) -> Result<Output> {
    let l1 = which == l1_loss::OP;
    if l1 {
        l1_loss::check(&inp.shape, &tgt.shape)?
    } else {
        mse_loss::check(&inp.shape, &tgt.shape)?
    };
    let out_shape = elementwise_loss::out_shape(&inp.shape, reduction);
    let d = loss_dout(dout, &inp.shape, reduction)?;
    let n = inp.numel();
    let (out, dinp) = match device {
        Device::Cpu => {
            let out = if l1 {
                l1_loss::forward_cpu(&inp.data, &tgt.data, reduction)
            } else {
                mse_loss::forward_cpu(&inp.data, &tgt.data, reduction)
            };
            let dinp = d.map(|d| {
                if l1 {
                    l1_loss::backward_cpu(&inp.data, &tgt.data, &d, reduction)
                } else {
                    mse_loss::backward_cpu(&inp.data, &tgt.data, &d, reduction)
                }
            });
            (out, dinp)
        }
        Device::Gpu(g) => {
            let (x, y) = (g.upload("inp", &inp.data)?, g.upload("tgt", &tgt.data)?);
            let scratch: Vec<View> = elementwise_loss::gpu_scratch(n, reduction)
                .into_iter()
                .map(|w| g.zeros("scratch", w))
                .collect::<Result<_>>()?;
            let out = g.zeros("out", numel_of(&out_shape))?;
            let dv = g.upload("dout", d.as_deref().unwrap_or(&[0.0]))?;
            let dinp = g.zeros("dinp", n as u64)?;
            let b = elementwise_loss::GpuBuffers {
                inp: &x,
                tgt: &y,
                scratch: scratch.iter().collect(),
                out: &out,
                dout: &dv,
                dinp: &dinp,
            };
            let mut prog = if l1 {
                l1_loss::forward_gpu(g, "l1_loss", &b, n, reduction)?
            } else {
                mse_loss::forward_gpu(g, "mse_loss", &b, n, reduction)?
            };
            if d.is_some() {
                prog.extend(if l1 {
                    l1_loss::backward_gpu(g, "l1_loss", &b, n, reduction)?
                } else {
                    mse_loss::backward_gpu(g, "mse_loss", &b, n, reduction)?
                });
            }
            prog.run(g, which)?;
            let r = g.read_many(&[&out, &dinp])?;
            (r[0].clone(), d.map(|_| r[1].clone()))
        }
    };
    loss_output(out_shape, out, &inp.shape, dinp)
}

fn numel_of(shape: &[usize]) -> u64 {
    shape.iter().product::<usize>() as u64
}

/// nn.L1Loss: the loss and, with `dout`, d loss / d inp.
pub fn l1_loss(
    device: &Device,
    inp: &Tensor,
    tgt: &Tensor,
    reduction: Reduction,
    dout: Option<&Tensor>,
) -> Result<Output> {
    elementwise(device, l1_loss::OP, inp, tgt, reduction, dout)
}

/// nn.MSELoss: the loss and, with `dout`, d loss / d inp.
pub fn mse_loss(
    device: &Device,
    inp: &Tensor,
    tgt: &Tensor,
    reduction: Reduction,
    dout: Option<&Tensor>,
) -> Result<Output> {
    elementwise(device, mse_loss::OP, inp, tgt, reduction, dout)
}

/// F.log_softmax over dim 1 of (N, C) or (N, C, d...): the output and, with `dout`, d / d inp.
pub fn log_softmax(device: &Device, inp: &Tensor, dout: Option<&Tensor>) -> Result<Output> {
    let dims = log_softmax::check(&inp.shape)?;
    if let Some(d) = dout {
        if d.shape != inp.shape {
            return Err(Error::op(
                log_softmax::OP,
                format!("dout must have shape {:?}, given {:?}", inp.shape, d.shape),
            ));
        }
    }
    let (out, dinp) = match device {
        Device::Cpu => {
            let out = log_softmax::forward_cpu(&inp.data, dims);
            let dinp = dout.map(|d| log_softmax::backward_cpu(&out, &d.data, dims));
            (out, dinp)
        }
        Device::Gpu(g) => {
            let x = g.upload("inp", &inp.data)?;
            let out = g.zeros("out", inp.numel() as u64)?;
            let mut prog = log_softmax::forward_gpu(g, "log_softmax", &x, &out, dims)?;
            let dinp = g.zeros("dinp", inp.numel() as u64)?;
            if let Some(d) = dout {
                let dv = g.upload("dout", &d.data)?;
                prog.extend(log_softmax::backward_gpu(g, "log_softmax", &out, &dv, &dinp, dims)?);
                prog.run(g, "log_softmax")?;
                let r = g.read_many(&[&out, &dinp])?;
                (r[0].clone(), Some(r[1].clone()))
            } else {
                prog.run(g, "log_softmax")?;
                (g.read(&out)?, None)
            }
        }
    };
    loss_output(inp.shape.clone(), out, &inp.shape, dinp)
}

/// nn.NLLLoss over log-probabilities (N, C, d...) with class targets of shape (N, d...).
pub fn nll_loss(
    device: &Device,
    inp: &Tensor,
    tgt: &[i64],
    tgt_shape: &[usize],
    o: &nll_loss::Options,
    dout: Option<&Tensor>,
) -> Result<Output> {
    let dims = nll_loss::check(&inp.shape, tgt_shape, tgt, o)?;
    let out_shape = if o.reduction == Reduction::None { tgt_shape.to_vec() } else { vec![] };
    let d = loss_dout(dout, tgt_shape, o.reduction)?;
    let (out, dinp) = match device {
        Device::Cpu => {
            let out = nll_loss::forward_cpu(&inp.data, tgt, o, dims);
            (out, d.map(|d| nll_loss::backward_cpu(tgt, &d, o, dims)))
        }
        Device::Gpu(g) => {
            let x = g.upload("inp", &inp.data)?;
            let tv = g.upload("tgt", &tgt.iter().map(|&t| t as i32).collect::<Vec<_>>())?;
            let weight = g.upload("weight", &o.weight.clone().unwrap_or_else(|| vec![1.0; dims.1]))?;
            let scratch: Vec<View> = nll_loss::gpu_scratch(dims, o.reduction)
                .into_iter()
                .map(|w| g.zeros("scratch", w))
                .collect::<Result<_>>()?;
            let out = g.zeros("out", numel_of(&out_shape))?;
            let dv = g.upload("dout", d.as_deref().unwrap_or(&[0.0]))?;
            let dinp = g.zeros("dinp", inp.numel() as u64)?;
            let b = nll_loss::GpuBuffers {
                inp: &x,
                tgt: &tv,
                weight: &weight,
                scratch: scratch.iter().collect(),
                out: &out,
                dout: &dv,
                dinp: &dinp,
            };
            let mut prog = nll_loss::forward_gpu(g, "nll_loss", &b, o, dims)?;
            if d.is_some() {
                prog.extend(nll_loss::backward_gpu(g, "nll_loss", &b, o, dims)?);
            }
            prog.run(g, "nll_loss")?;
            let r = g.read_many(&[&out, &dinp])?;
            (r[0].clone(), d.map(|_| r[1].clone()))
        }
    };
    loss_output(out_shape, out, &inp.shape, dinp)
}

/// nn.CrossEntropyLoss with class-index targets (N, d...) or class probabilities (the input's
/// shape): the loss and, with `dout`, d loss / d inp.
pub fn cross_entropy(
    device: &Device,
    inp: &Tensor,
    tgt: cross_entropy::Targets<'_, f32>,
    tgt_shape: &[usize],
    o: &cross_entropy::Options,
    dout: Option<&Tensor>,
) -> Result<Output> {
    let dims = cross_entropy::check(&inp.shape, tgt_shape, tgt, o)?;
    let rows_shape: Vec<usize> = std::iter::once(dims.0).chain(inp.shape[2..].iter().copied()).collect();
    let out_shape = if o.reduction == Reduction::None { rows_shape.clone() } else { vec![] };
    let d = loss_dout(dout, &rows_shape, o.reduction)?;
    let (out, dinp) = match device {
        Device::Cpu => {
            let (loss, logp) = cross_entropy::forward_cpu(&inp.data, tgt, o, dims);
            (loss, d.map(|d| cross_entropy::backward_cpu(&logp, tgt, &d, o, dims)))
        }
        Device::Gpu(g) => {
            let x = g.upload("inp", &inp.data)?;
            let tv = g.upload("tgt", &cross_entropy::target_words(tgt))?;
            let weight = g.upload("weight", &o.weight.clone().unwrap_or_else(|| vec![1.0; dims.1]))?;
            let scratch: Vec<View> = cross_entropy::gpu_scratch(dims, o.reduction)
                .into_iter()
                .map(|w| g.zeros("scratch", w))
                .collect::<Result<_>>()?;
            let out = g.zeros("out", numel_of(&out_shape))?;
            let dv = g.upload("dout", d.as_deref().unwrap_or(&[0.0]))?;
            let dinp = g.zeros("dinp", inp.numel() as u64)?;
            let b = cross_entropy::GpuBuffers {
                inp: &x,
                tgt: &tv,
                prob_targets: matches!(tgt, cross_entropy::Targets::Prob(_)),
                weight: &weight,
                scratch: scratch.iter().collect(),
                out: &out,
                dout: &dv,
                dinp: &dinp,
            };
            let mut prog = cross_entropy::forward_gpu(g, "cross_entropy", &b, o, dims)?;
            if d.is_some() {
                prog.extend(cross_entropy::backward_gpu(g, "cross_entropy", &b, o, dims)?);
            }
            prog.run(g, "cross_entropy")?;
            let r = g.read_many(&[&out, &dinp])?;
            (r[0].clone(), d.map(|_| r[1].clone()))
        }
    };
    loss_output(out_shape, out, &inp.shape, dinp)
}
