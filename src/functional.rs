//! One-off calls of the loss ops on host tensors, like `torch.nn.functional`: each runs on the
//! given device (a GPU: one submit and a readback; the CPU path: plain Rust) and returns the loss
//! and the gradient w.r.t. the input for an upstream gradient of ones. Training uses the graph
//! executor instead, which keeps everything on the device.

use crate::device::Device;
use crate::ops::{cross_entropy, l1_loss, mse_loss, Reduction};
use crate::tensor::Tensor;
use crate::Result;

/// (loss, dinp) of an elementwise loss.
fn elementwise(
    device: &Device,
    inp: &Tensor,
    tgt: &Tensor,
    reduction: Reduction,
    check: fn(&[usize], &[usize]) -> Result<()>,
    cpu: (fn(&[f32], &[f32], Reduction) -> Vec<f32>, fn(&[f32], &[f32], &[f32], Reduction) -> Vec<f32>),
    gpu_build: fn(
        &crate::Gpu,
        &str,
        &crate::buffer::View,
        &crate::buffer::View,
        usize,
        Reduction,
    ) -> Result<crate::ops::elementwise_loss::Kernels>,
) -> Result<(Tensor, Tensor)> {
    check(&inp.shape, &tgt.shape)?;
    let out_shape = crate::ops::elementwise_loss::out_shape(&inp.shape, reduction);
    let (out, dinp) = match device {
        Device::Cpu => {
            let ones = vec![1.0; if reduction == Reduction::None { inp.numel() } else { 1 }];
            (cpu.0(&inp.data, &tgt.data, reduction), cpu.1(&inp.data, &tgt.data, &ones, reduction))
        }
        Device::Gpu(g) => {
            let (x, y) = (g.upload("inp", &inp.data)?, g.upload("tgt", &tgt.data)?);
            let k = gpu_build(g, "loss", &x, &y, inp.numel(), reduction)?;
            let mut enc = g.encoder("loss");
            k.forward.record(&mut enc, "loss forward");
            k.backward.record(&mut enc, "loss backward");
            g.submit(enc, "loss")?;
            let r = g.read_many(&[&k.out, &k.dinp])?;
            (r[0].clone(), r[1].clone())
        }
    };
    Ok((Tensor::new(&out_shape, out)?, Tensor::new(&inp.shape, dinp)?))
}

/// nn.L1Loss: (loss, d loss / d inp).
pub fn l1_loss(device: &Device, inp: &Tensor, tgt: &Tensor, reduction: Reduction) -> Result<(Tensor, Tensor)> {
    elementwise(
        device,
        inp,
        tgt,
        reduction,
        l1_loss::check,
        (l1_loss::forward_cpu, l1_loss::backward_cpu),
        l1_loss::build_gpu,
    )
}

/// nn.MSELoss: (loss, d loss / d inp).
pub fn mse_loss(device: &Device, inp: &Tensor, tgt: &Tensor, reduction: Reduction) -> Result<(Tensor, Tensor)> {
    elementwise(
        device,
        inp,
        tgt,
        reduction,
        mse_loss::check,
        (mse_loss::forward_cpu, mse_loss::backward_cpu),
        mse_loss::build_gpu,
    )
}

/// nn.CrossEntropyLoss with class-index targets of shape (N, d...): (loss, d loss / d inp).
pub fn cross_entropy(
    device: &Device,
    inp: &Tensor,
    tgt: &[i64],
    tgt_shape: &[usize],
    o: &cross_entropy::Options,
) -> Result<(Tensor, Tensor)> {
    let t = cross_entropy::Targets::<f32>::Class(tgt);
    let dims = cross_entropy::check(&inp.shape, tgt_shape, t, o)?;
    let out_shape = if o.reduction == Reduction::None { tgt_shape.to_vec() } else { vec![] };
    let rows = dims.0 * dims.2;
    let ones = vec![1.0; if o.reduction == Reduction::None { rows } else { 1 }];
    let (out, dinp) = match device {
        Device::Cpu => {
            let (loss, logp) = cross_entropy::forward_cpu(&inp.data, t, o, dims);
            (loss, cross_entropy::backward_cpu(&logp, t, &ones, o, dims))
        }
        Device::Gpu(g) => {
            let x = g.upload("inp", &inp.data)?;
            let tv = g.upload("tgt", &cross_entropy::target_words(t))?;
            let dinp = g.zeros("dinp", inp.numel() as u64)?;
            let k = cross_entropy::build_gpu(g, "cross_entropy", &x, &tv, false, &dinp, o, dims)?;
            let mut enc = g.encoder("cross_entropy");
            k.forward.record(&mut enc, "cross_entropy forward");
            k.backward.record(&mut enc, "cross_entropy backward");
            g.submit(enc, "cross_entropy")?;
            let r = g.read_many(&[&k.out, &dinp])?;
            (r[0].clone(), r[1].clone())
        }
    };
    Ok((Tensor::new(&out_shape, out)?, Tensor::new(&inp.shape, dinp)?))
}
