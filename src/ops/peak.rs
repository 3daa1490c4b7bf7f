//! The adapter's arithmetic rates as WGSL reaches them, for `wgrad bench --peak`: kernels that
//! do nothing but multiply-add, timed on the GPU. They are the ceiling the per-kernel GFLOP/s of
//! `wgrad bench` are read against: f32 multiply-adds in registers (what the register-blocked and
//! tiled convolutions run on), and where the adapter multiplies cooperative matrices, their
//! products from registers and from workgroup memory (the `_cooperative_matrix` convolutions'
//! inner loop, without their staging). Not an op of any network.

use super::ParamsLayout;
use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{Error, Result};

crate::shaders!(peak_fma: 256, peak_cooperative_matrix: 32);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub iterations: u32,
    pub from_workgroup_memory: u32,
    /// peak_fma's multiplier and addend (1 and 2^-20 when measuring).
    pub m: f32,
    pub c: f32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![
        crate::params_layout!("peak_fma", Params, [iterations, from_workgroup_memory, m, c]),
        crate::params_layout!("peak_cooperative_matrix", Params, [iterations, from_workgroup_memory, m, c]),
    ]
}

/// What a peak kernel multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peak {
    /// f32 multiply-adds in registers (peak_fma.wgsl).
    FmaF32,
    /// f16 cooperative-matrix products into f32, the operands in registers, or loaded from
    /// workgroup memory before every product (peak_cooperative_matrix.wgsl).
    CooperativeMatrix { from_workgroup_memory: bool },
}

impl Peak {
    /// The peaks `gpu` can measure: f32 multiply-adds everywhere, cooperative matrices where it
    /// multiplies them.
    pub fn offered(gpu: &Gpu) -> Vec<Peak> {
        let mut v = vec![Peak::FmaF32];
        if gpu.cooperative_tile().is_some() {
            v.extend([false, true].map(|from_workgroup_memory| Peak::CooperativeMatrix { from_workgroup_memory }));
        }
        v
    }

    /// What it measures, in words.
    pub fn describe(self, gpu: &Gpu) -> String {
        let t = gpu.cooperative_tile().unwrap_or(8);
        match self {
            Peak::FmaF32 => "f32 multiply-add, registers".into(),
            Peak::CooperativeMatrix { from_workgroup_memory: false } => {
                format!("f16 cooperative matrices {t}x{t} into f32, registers")
            }
            Peak::CooperativeMatrix { from_workgroup_memory: true } => {
                format!("f16 cooperative matrices {t}x{t} into f32, workgroup memory")
            }
        }
    }

    /// The kernel on `gpu`: peak_fma, or the cooperative-matrix kernel of the device's tile.
    pub fn shader(self, gpu: &Gpu) -> Result<&'static str> {
        match self {
            Peak::FmaF32 => Ok("peak_fma"),
            Peak::CooperativeMatrix { .. } => gpu
                .cooperative_tile()
                .and_then(|t| crate::shaders::cooperative_variant("peak_cooperative_matrix", t, false))
                .ok_or_else(|| Error::op("peak", "the adapter multiplies no cooperative matrices")),
        }
    }

    /// Invocations per workgroup of its kernel on `gpu`.
    fn workgroup(self, gpu: &Gpu) -> Result<u64> {
        let shader = self.shader(gpu)?;
        crate::shaders::get(shader)
            .map(|s| s.workgroup as u64)
            .ok_or_else(|| Error::op("peak", format!("no shader named {shader}")))
    }

    /// FLOP (a multiply-add counts 2) of one invocation's iteration: peak_fma's 32 multiply-adds;
    /// a cooperative-matrix subgroup's 8 T x T x T products, over its SG invocations.
    fn flops_per_invocation(self, gpu: &Gpu) -> Result<f64> {
        Ok(match self {
            Peak::FmaF32 => 64.0,
            Peak::CooperativeMatrix { .. } => {
                let t = gpu.cooperative_tile().unwrap_or(8) as f64;
                let sg = self.workgroup(gpu)? as f64 / 4.0;
                8.0 * 2.0 * t * t * t / sg
            }
        })
    }
}

/// A peak as measured: its rate and the dispatch that reached it.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub peak: Peak,
    pub flops_per_s: f64,
    pub workgroups: u64,
    pub iterations: u32,
    pub seconds: f64,
}

/// The most workgroups a measurement tries (its output holds one value per invocation: 16 MB).
pub const MAX_WORKGROUPS: u64 = 16_384;
/// A dispatch measured is grown until it takes this long.
const MIN_SECONDS: f64 = 0.01;

/// One dispatch of `peak`'s kernel: `workgroups` workgroups running `iterations` iterations each,
/// writing one value per invocation to `out`, with its FLOP set (see [`Kernel::flops`]).
pub fn kernel(gpu: &Gpu, peak: Peak, workgroups: u64, iterations: u32, out: &View) -> Result<Kernel> {
    let (shader, wg) = (peak.shader(gpu)?, peak.workgroup(gpu)?);
    if workgroups > crate::kernel::MAX_GROUPS_PER_DIM || out.len < workgroups * wg {
        return Err(Error::op(
            "peak",
            format!("{workgroups} workgroups of {wg} given {} output words (at most 65,535 workgroups)", out.len),
        ));
    }
    let from_workgroup_memory = matches!(peak, Peak::CooperativeMatrix { from_workgroup_memory: true }) as u32;
    let p = Params { iterations, from_workgroup_memory, m: 1.0, c: 2f32.powi(-20) };
    let flops = peak.flops_per_invocation(gpu)? * (workgroups * wg) as f64 * iterations as f64;
    Ok(Kernel::new(gpu, shader, shader, &p, &[out], Dispatch::Workgroups(workgroups))?.flops(flops as u64))
}

/// Measures `peak` on `gpu`: from 64 workgroups, four times as many each round (up to
/// [`MAX_WORKGROUPS`]) while the rate grows by a tenth or more, each dispatch with enough
/// iterations to take `MIN_SECONDS`; the best of three timings (GPU timestamps where the adapter
/// has them) of the best dispatch.
pub fn measure(gpu: &Gpu, peak: Peak) -> Result<Rate> {
    let wg = peak.workgroup(gpu)?;
    let out = gpu.zeros("peak.out", MAX_WORKGROUPS * wg)?;
    let time = |workgroups: u64, iterations: u32| -> Result<Rate> {
        let k = kernel(gpu, peak, workgroups, iterations, &out)?;
        let mut seconds = f64::INFINITY;
        for _ in 0..3 {
            seconds = seconds.min(Program::time(gpu, &[&k])?[0]);
        }
        let flops_per_s = k.flops as f64 / seconds.max(1e-9);
        Ok(Rate { peak, flops_per_s, workgroups, iterations, seconds })
    };
    let mut best: Option<Rate> = None;
    let mut workgroups = 64;
    while workgroups <= MAX_WORKGROUPS {
        let mut iterations = 16u32;
        let mut r = time(workgroups, iterations)?;
        while r.seconds < MIN_SECONDS && iterations < 1 << 24 {
            // Toward MIN_SECONDS, at most 16 times as many at once (the first timings are noisy).
            let grow = (MIN_SECONDS / r.seconds.max(1e-9) * 1.2).clamp(2.0, 16.0);
            iterations = (iterations as f64 * grow).min((1u32 << 24) as f64) as u32;
            r = time(workgroups, iterations)?;
        }
        let grew = best.is_none_or(|b| r.flops_per_s > 1.1 * b.flops_per_s);
        if best.is_none_or(|b| r.flops_per_s > b.flops_per_s) {
            best = Some(r);
        }
        if !grew {
            break;
        }
        workgroups *= 4;
    }
    best.ok_or_else(|| Error::op("peak", "nothing measured"))
}
