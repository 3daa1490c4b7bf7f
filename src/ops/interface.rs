//! The one interface between ops and the graph. An op kind (a layer's configuration, e.g.
//! [`Conv2d`](super::conv2d::Conv2d)) implements [`Op`]: its parameters and buffers with PyTorch's
//! names and default init, and [`Op::plan`], which checks input shapes and returns a [`Node`]: the
//! op fixed at those shapes, which gives, in one place, its output shape, FLOP count, what it saves
//! for backward, its GPU scratch and its forward/backward on the CPU path and on the GPU. The graph
//! executors know ops only through these two traits.

use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::Program;
use crate::Result;

/// `model.train()` or `model.eval()`: BatchNorm2d normalises with the batch's statistics (and
/// updates the running ones) in train mode and with the running statistics in eval mode; Dropout
/// drops in train mode only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Train,
    Eval,
}

/// What an entry of the state dict is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A trainable parameter (nn.Parameter): it has a gradient and the optimizer updates it.
    Param,
    /// A buffer (running_mean, running_var): saved in the state dict, updated by the op itself.
    Buffer,
    /// An int64 buffer counting train-mode forward passes (BatchNorm's `num_batches_tracked`).
    Counter,
}

/// How an entry starts: PyTorch's default initialisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// U(-1/√fan_in, 1/√fan_in): `kaiming_uniform_(a=√5)` for Conv2d/Linear weights, and their
    /// bias init.
    Uniform {
        fan_in: usize,
    },
    Const(f32),
}

/// One parameter or buffer of an op, named as PyTorch names it (`weight`, `running_mean`).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDecl {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub role: Role,
    pub init: Init,
}

impl ParamDecl {
    pub fn param(name: &'static str, shape: Vec<usize>, init: Init) -> Self {
        ParamDecl { name, shape, role: Role::Param, init }
    }
    pub fn buffer(name: &'static str, shape: Vec<usize>, init: Init) -> Self {
        ParamDecl { name, shape, role: Role::Buffer, init }
    }
    pub fn counter(name: &'static str) -> Self {
        ParamDecl { name, shape: vec![], role: Role::Counter, init: Init::Const(0.0) }
    }
}

/// Floating-point operations (a multiply-add counts 2) of a node's passes: the one count `bench`
/// and the per-kernel rates use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flops {
    pub forward: u64,
    /// The input gradient(s).
    pub backward_input: u64,
    /// The parameter gradients.
    pub backward_params: u64,
}

/// What a node's backward reads besides the output gradient (so the planner keeps it alive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reads {
    pub inputs: bool,
    pub output: bool,
}

/// 32-bit words of scratch a node needs on the GPU, alive only while its forward (or backward)
/// kernels run (split partial sums, per-chunk statistics). The planner allocates them, sharing
/// memory with tensors whose lifetimes do not overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scratch {
    pub forward: Vec<u64>,
    pub backward: Vec<u64>,
    /// Written by the forward and read by the backward (GPU only: the f16 copies of a
    /// mixed-precision product's operands); alive from one to the other, as saved tensors are.
    pub kept: Vec<u64>,
}

/// The counter-based random stream of a train step (Dropout): the same bits on the CPU path and
/// the GPU, and a resumed run continues the same sequence. `key` identifies the node within the
/// run's seed; `step` is the training step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RandomKey {
    pub key: [u32; 2],
    pub step: u64,
}

/// The words of the running step every step-dependent kernel reads (Dropout's stream, the
/// optimizers' scalars), rewritten with one queue write before each step; f32 scalars are computed
/// on the host in double precision and rounded once, as PyTorch's Python scalars are.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepWords {
    /// Training steps taken before this one.
    pub step_lo: u32,
    pub step_hi: u32,
    /// This step's learning rate.
    pub lr: f32,
    /// Adam: lr / (1 - beta1^t), t = step + 1.
    pub step_size: f32,
    /// Adam: sqrt(1 - beta2^t).
    pub bias_correction2_sqrt: f32,
    /// AdamW: 1 - lr · weight_decay.
    pub decay: f32,
    pub _pad0: u32,
    pub _pad1: u32,
}

impl StepWords {
    pub fn step(&self) -> u64 {
        self.step_lo as u64 | (self.step_hi as u64) << 32
    }
}

/// An op kind: a layer's configuration, as PyTorch's `nn.Module` constructor takes it.
pub trait Op: std::fmt::Debug + Send + Sync {
    /// PyTorch's repr, e.g. `Conv2d(3, 32, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))`.
    fn describe(&self) -> String;
    /// How many inputs the op takes (Add takes 2).
    fn arity(&self) -> usize {
        1
    }
    /// Parameters and buffers in PyTorch's state-dict order, with their default init.
    fn params(&self) -> Vec<ParamDecl> {
        Vec::new()
    }
    /// Checks the input shapes (batch first) and fixes the op at them; errors say the op's
    /// configuration and the shapes it was given.
    fn plan(&self, inputs: &[&[usize]], mode: Mode) -> Result<Box<dyn Node>>;
}

/// An op fixed at its input shapes and mode.
pub trait Node: Send + Sync {
    fn out_shape(&self) -> Vec<usize>;
    fn flops(&self) -> Flops {
        Flops::default()
    }
    /// The output is input 0's memory seen with another shape (Flatten, Dropout in eval mode):
    /// the forward does nothing and the input's gradient is the output's ([`Node::grad_is_dout`]).
    fn is_view(&self) -> bool {
        false
    }
    /// Input `i`'s gradient equals the output gradient (Add, and views): no backward work for it.
    fn grad_is_dout(&self, _input: usize) -> bool {
        self.is_view()
    }
    fn backward_reads(&self) -> Reads {
        Reads { inputs: true, output: false }
    }
    /// What the backward's GPU kernels read on this adapter, at its current precision (a
    /// mixed-precision product reads its kept f16 copies instead of its inputs).
    fn gpu_backward_reads(&self, _gpu: &Gpu) -> Reads {
        self.backward_reads()
    }
    /// Sizes (32-bit words) of the tensors the train-mode forward saves for the backward besides
    /// inputs and output (max-pool indices, batch statistics).
    fn saved(&self) -> Vec<u64> {
        Vec::new()
    }
    /// Scratch the GPU kernels need on this adapter when the backward computes the input gradients
    /// `dinputs` says (a function of these alone: the kernels built later take the same).
    fn gpu_scratch(&self, _gpu: &Gpu, _dinputs: &[bool]) -> Scratch {
        Scratch::default()
    }
    /// Scratch the CPU path's fast kernels need (padded copies, packed weights), planned with the
    /// tensors as the GPU's is; `dinputs` as for [`Node::gpu_scratch`].
    fn cpu_scratch(&self, _dinputs: &[bool]) -> Scratch {
        Scratch::default()
    }
    fn forward_cpu(&self, io: CpuForward<'_>);
    fn backward_cpu(&self, io: CpuBackward<'_>);
    /// What this node is as an [`Epilogue`] of the node producing its one input, if the CPU path's
    /// inference may fold it into that node's forward: an eval-mode BatchNorm2d (a per-channel
    /// affine map), ReLU.
    fn fusible(&self) -> Option<Fusible> {
        None
    }
    /// A [`Fusible::Affine`] node's map from its state (as [`CpuForward::state`] orders it):
    /// `y = x · scale[c] + shift[c]`.
    fn affine_cpu(&self, _state: &[&[f32]], _scale: &mut [f32], _shift: &mut [f32]) {
        unreachable!("affine_cpu of a node that is not Fusible::Affine")
    }
    /// Whether [`Node::forward_cpu_fused`] applies the epilogue as it writes its output (and the CPU
    /// path's inference should fold the nodes after it).
    fn takes_epilogue(&self) -> bool {
        false
    }
    /// The forward with `ep` applied to every element of the (N, C, …) output (called only where
    /// [`Node::takes_epilogue`]).
    fn forward_cpu_fused(&self, _io: CpuForward<'_>, _ep: &Epilogue<'_>) {
        unreachable!("forward_cpu_fused of a node that takes no epilogue")
    }
    /// Records the forward's kernels (none for views); every buffer comes from `io`.
    fn forward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program>;
    /// Records the backward's kernels: the gradients `io.dinputs` asks for and `io.dparams`,
    /// overwritten.
    fn backward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program>;
}

/// What a node folded into its producer's forward computes ([`Node::fusible`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fusible {
    Affine,
    Relu,
}

/// A per-channel affine map, then optionally ReLU, applied by a node as it writes its (N, C, …)
/// output: the work of the eval-mode BatchNorm2d and ReLU after it, without their passes over
/// memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// (scale, shift) per channel; None: the identity.
    pub affine: Option<(&'a [f32], &'a [f32])>,
    pub relu: bool,
}

impl Epilogue<'_> {
    /// One value of channel `c`: as BatchNorm2d's affine map, then ReLU (NaN passed through).
    #[inline(always)]
    pub fn value(&self, c: usize, x: f32) -> f32 {
        let y = match self.affine {
            Some((s, t)) => x * s[c] + t[c],
            None => x,
        };
        if self.relu && y < 0.0 {
            0.0
        } else {
            y
        }
    }
    /// Applies the epilogue in place to an (N, C, …) tensor of `channels` planes of `plane` values
    /// per image.
    pub fn apply(&self, out: &mut [f32], channels: usize, plane: usize) {
        if plane == 0 {
            return;
        }
        crate::cpu::par_planes(out, plane, |p, o| o.iter_mut().for_each(|v| *v = self.value(p % channels, *v)));
    }
}

/// The buffers of a forward on the CPU path.
/// The few buffers an op's CPU pass takes of one kind (inputs, saved tensors, scratch…), inline:
/// the CPU path allocates nothing per step.
pub type Bufs<T> = smallvec::SmallVec<[T; 6]>;

pub struct CpuForward<'a> {
    pub inputs: Bufs<&'a [f32]>,
    pub out: &'a mut [f32],
    /// Parameters and buffers (f32 entries, in declaration order); buffers are updated in train mode.
    pub state: Bufs<&'a mut [f32]>,
    pub saved: Bufs<&'a mut [f32]>,
    /// This pass's scratch, sized as [`Node::cpu_scratch`] asked (empty where a caller gives none:
    /// the op then takes its plain path).
    pub scratch: Bufs<&'a mut [f32]>,
    pub random: RandomKey,
}

/// The buffers of a backward on the CPU path. `inputs` and `out` are empty unless
/// [`Node::backward_reads`] declares them (their memory may hold other tensors by then).
pub struct CpuBackward<'a> {
    pub inputs: Bufs<&'a [f32]>,
    pub out: &'a [f32],
    pub dout: &'a [f32],
    pub state: Bufs<&'a [f32]>,
    pub saved: Bufs<&'a [f32]>,
    /// Gradient of each input, overwritten; None where no gradient is needed (the network's input)
    /// or where it is `dout` itself ([`Node::grad_is_dout`]).
    pub dinputs: Bufs<Option<&'a mut [f32]>>,
    /// Gradients of the [`Role::Param`] entries, in order, overwritten.
    pub dparams: Bufs<&'a mut [f32]>,
    /// As in [`CpuForward::scratch`].
    pub scratch: Bufs<&'a mut [f32]>,
    pub random: RandomKey,
}

/// The buffers of a node's kernels on the GPU (forward: `dout`, `dinputs`, `dparams` empty). In a
/// backward, `inputs` and `out` hold valid data only if [`Node::backward_reads`] declares them.
pub struct GpuIo<'a> {
    /// The node's path (`layer2.0.conv1`): kernel and buffer labels start with it.
    pub label: &'a str,
    pub inputs: Vec<&'a View>,
    pub out: &'a View,
    pub state: Vec<&'a View>,
    pub saved: Vec<&'a View>,
    /// This pass's scratch, sized as [`Node::gpu_scratch`] asked.
    pub scratch: Vec<&'a View>,
    /// The node's [`Scratch::kept`] tensors (the same in its forward and backward).
    pub kept: Vec<&'a View>,
    pub dout: Option<&'a View>,
    pub dinputs: Vec<Option<&'a View>>,
    pub dparams: Vec<&'a View>,
    /// The running step's [`StepWords`] (Dropout reads the step; see [`RandomKey`]);
    /// `random_key` holds this node's key.
    pub step: &'a View,
    pub random_key: [u32; 2],
}

/// The gradient buffer of input `i` in a backward, if one is asked for.
impl GpuIo<'_> {
    pub fn dinput(&self, i: usize) -> Option<&View> {
        self.dinputs.get(i).copied().flatten()
    }
}

/// The counter-based generator shared by the CPU path and `shaders/dropout_*.wgsl`: a uniform
/// number in [0, 1) with 24 random bits for element `index` of a node's tensor at a step.
pub fn uniform(key: [u32; 2], step: u64, index: u32) -> f32 {
    let h = random_bits(key, step, index);
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// lowbias32 (Chris Wellons' integer hash), chained over the key, the step and the index.
pub fn random_bits(key: [u32; 2], step: u64, index: u32) -> u32 {
    fn mix(mut x: u32) -> u32 {
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^= x >> 16;
        x
    }
    let mut h = mix(index);
    h = mix(h ^ (step >> 32) as u32);
    h = mix(h ^ step as u32);
    h = mix(h ^ key[1]);
    mix(h ^ key[0])
}

#[cfg(test)]
mod tests {
    use super::Epilogue;

    /// The epilogue's map on a (2, 2, 3) tensor: each channel's affine map, then ReLU, which
    /// keeps NaN and -0.0 as ReLU does.
    #[test]
    fn epilogue_applies_each_channels_map_then_relu() {
        let (scale, shift) = ([2.0, -1.0], [1.0, 0.5]);
        let x = [0.0, -1.0, 3.0, 1.0, 2.0, f32::NAN, -0.5, 0.25, 1.0, -0.0, 4.0, 0.0];
        let mut out = x;
        Epilogue { affine: Some((&scale, &shift)), relu: false }.apply(&mut out, 2, 3);
        let want = [1.0, -1.0, 7.0, -0.5, -1.5, f32::NAN, 0.0, 1.5, 3.0, 0.5, -3.5, 0.5];
        assert_eq!(format!("{out:?}"), format!("{want:?}"));
        let mut out = x;
        Epilogue { affine: Some((&scale, &shift)), relu: true }.apply(&mut out, 2, 3);
        let want = [1.0, 0.0, 7.0, 0.0, 0.0, f32::NAN, 0.0, 1.5, 3.0, 0.5, 0.0, 0.5];
        assert_eq!(format!("{out:?}"), format!("{want:?}"));
        let mut out = [-0.0f32, -1.0];
        Epilogue { affine: None, relu: true }.apply(&mut out, 1, 2);
        assert_eq!(format!("{out:?}"), "[-0.0, 0.0]");
    }
}
