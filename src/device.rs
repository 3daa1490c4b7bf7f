//! Device selection (`--device auto|gpu|cpu`, `--backend`, `--adapter`) and the GPU context:
//! device, queue, the adapter's own limits, captured errors and the pipeline cache.

use crate::shaders;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Which kind of device to run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceKind {
    /// The best hardware GPU adapter (discrete > integrated > virtual), else the CPU path: a
    /// software adapter (lavapipe, llvmpipe, WARP, SwiftShader) runs WGSL on the CPU far slower
    /// than the CPU path, so it is used only when asked for (`gpu`, or `--adapter` naming it).
    #[default]
    Auto,
    /// A wgpu adapter (a software one such as lavapipe included); an error if there is none.
    Gpu,
    /// The CPU path.
    Cpu,
}

/// Which wgpu backend to look for adapters on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    /// Vulkan, Metal and DX12; GL only when none of them has an adapter.
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    #[cfg(not(target_arch = "wasm32"))]
    fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Auto => wgpu::Backends::PRIMARY,
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }
}

/// How to choose a device. `Default` reads nothing; [`DeviceOptions::from_env`] reads
/// WGRAD_DEVICE, WGRAD_BACKEND and WGRAD_ADAPTER.
#[derive(Clone, Debug, Default)]
pub struct DeviceOptions {
    pub kind: DeviceKind,
    pub backend: BackendChoice,
    /// Case-insensitive substring of the adapter's name.
    pub adapter: Option<String>,
    /// The precision programs on the chosen GPU are built in (mixed needs a GPU with f16 shaders).
    pub precision: Precision,
}

/// The one parser of `--device` and WGRAD_DEVICE: case-insensitive; empty means the default.
pub fn parse_device_kind(s: &str) -> std::result::Result<DeviceKind, String> {
    parse_choice(s, "auto, gpu or cpu")
}

/// The one parser of `--precision` and WGRAD_PRECISION: case-insensitive; empty means f32.
pub fn parse_precision(s: &str) -> std::result::Result<Precision, String> {
    parse_choice(s, "f32 or mixed")
}

/// The one parser of `--backend` and WGRAD_BACKEND: case-insensitive; empty means the default.
pub fn parse_backend(s: &str) -> std::result::Result<BackendChoice, String> {
    parse_choice(s, "auto, vulkan, metal, dx12 or gl")
}

fn parse_choice<T: clap::ValueEnum + Default>(s: &str, expected: &str) -> std::result::Result<T, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(T::default());
    }
    T::from_str(s, true).map_err(|_| format!("{s:?}: expected {expected}"))
}

impl DeviceOptions {
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok();
        let mut o = DeviceOptions::default();
        if let Some(v) = var("WGRAD_DEVICE") {
            o.kind = parse_device_kind(&v).map_err(|e| Error::Device(format!("WGRAD_DEVICE={e}")))?;
        }
        if let Some(v) = var("WGRAD_BACKEND") {
            o.backend = parse_backend(&v).map_err(|e| Error::Device(format!("WGRAD_BACKEND={e}")))?;
        }
        o.adapter = var("WGRAD_ADAPTER").filter(|v| !v.trim().is_empty());
        if let Some(v) = var("WGRAD_PRECISION") {
            o.precision = parse_precision(&v).map_err(|e| Error::Device(format!("WGRAD_PRECISION={e}")))?;
        }
        Ok(o)
    }
}

/// WGRAD_CONV_KERNELS's convolution kernels, if it names some.
fn conv_kernels_from_env() -> Result<Option<ConvKernels>> {
    match std::env::var("WGRAD_CONV_KERNELS") {
        Ok(v) if !v.trim().is_empty() => {
            <ConvKernels as clap::ValueEnum>::from_str(v.trim(), true).map(Some).map_err(|_| {
                Error::Device(format!(
                    "WGRAD_CONV_KERNELS={v:?}: expected register-blocked, subgroups, tiled, cooperative-matrix or winograd"
                ))
            })
        }
        _ => Ok(None),
    }
}

/// One adapter as `wgrad devices` lists it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// What `--precision mixed` computes on there: on cooperative matrices (and their tile), on f16
    /// FMA kernels, or nothing (no f16 in shaders: f32 only).
    pub mixed_precision: String,
}

#[cfg(not(target_arch = "wasm32"))]
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn summary(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let mixed_precision = match cooperative_tile(adapter) {
        Some(t) => format!("mixed on f16 FMA kernels or cooperative matrices {t}x{t}"),
        None if adapter.features().contains(wgpu::Features::SHADER_F16) => "mixed on f16 FMA kernels".into(),
        None => "f32 only (no f16 in shaders)".into(),
    };
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
        mixed_precision,
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn enumerate(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.enumerate_adapters(backends))
}

/// Adapters for a backend choice, best first; with `Auto`, GL only when the primary backends have none.
#[cfg(not(target_arch = "wasm32"))]
fn candidates(backend: BackendChoice) -> Vec<wgpu::Adapter> {
    let mut list = enumerate(backend.backends());
    if list.is_empty() && backend == BackendChoice::Auto {
        list = enumerate(wgpu::Backends::GL);
    }
    list.sort_by_key(|a| rank(a.get_info().device_type));
    list
}

/// Every adapter wgpu finds for the choice, best first, and the index wgrad would pick (None: CPU path).
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters(opts: &DeviceOptions) -> (Vec<AdapterSummary>, Option<usize>) {
    let list = candidates(opts.backend);
    let infos: Vec<_> = list.iter().map(summary).collect();
    let chosen = if opts.kind == DeviceKind::Cpu { None } else { pick(&list, opts.adapter.as_deref(), opts.kind) };
    (infos, chosen)
}

/// Whether an adapter runs on the CPU in software (lavapipe, llvmpipe, WARP, SwiftShader).
pub fn is_software(t: wgpu::DeviceType) -> bool {
    t == wgpu::DeviceType::Cpu
}

/// The adapter to use: the named one (software ones included), else the best; with `Auto` a
/// software adapter is never picked unless named.
#[cfg(not(target_arch = "wasm32"))]
fn pick(list: &[wgpu::Adapter], name: Option<&str>, kind: DeviceKind) -> Option<usize> {
    match name {
        None => list.iter().position(|a| kind != DeviceKind::Auto || !is_software(a.get_info().device_type)),
        Some(s) => {
            let s = s.to_lowercase();
            list.iter().position(|a| a.get_info().name.to_lowercase().contains(&s))
        }
    }
}

/// Where ops run.
#[derive(Clone)]
pub enum Device {
    Cpu,
    Gpu(Arc<Gpu>),
}

impl Device {
    /// Chooses a device; the string says what was chosen and why (e.g. the CPU fallback).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn select(opts: &DeviceOptions) -> Result<(Device, String)> {
        // The CPU path may run either way (auto falls back to it): a bad cap is refused up front.
        crate::ops::conv2d::check_cpu_isa_env()?;
        if opts.kind == DeviceKind::Cpu {
            if opts.precision == Precision::Mixed {
                return Err(Error::Device(
                    "--precision mixed runs on a GPU; the CPU path (--device cpu) computes in f32".into(),
                ));
            }
            return Ok((Device::Cpu, "CPU path (--device cpu)".into()));
        }
        let list = candidates(opts.backend);
        let idx = pick(&list, opts.adapter.as_deref(), opts.kind);
        match (idx, opts.kind) {
            (Some(i), _) => {
                let gpu = Gpu::new(&list[i])?;
                gpu.set_precision(opts.precision)?;
                let why = match (opts.kind, &opts.adapter) {
                    (_, Some(a)) => format!("GPU: {} (--adapter {a:?})", gpu.describe()),
                    (DeviceKind::Gpu, None) => format!("GPU: {} (--device gpu)", gpu.describe()),
                    _ => format!("GPU: {} (the best hardware adapter)", gpu.describe()),
                };
                Ok((Device::Gpu(Arc::new(gpu)), why))
            }
            (None, kind) => {
                let names = || list.iter().map(|a| a.get_info().name).collect::<Vec<_>>().join(", ");
                let what = match (&opts.adapter, list.is_empty()) {
                    (None, true) => format!("no wgpu adapter found on backend {:?}", opts.backend),
                    (Some(a), true) => format!(
                        "no adapter's name contains {a:?}: no wgpu adapter found at all on backend {:?}",
                        opts.backend
                    ),
                    (Some(a), false) => format!("no adapter's name contains {a:?}; found: {}", names()),
                    (None, false) => format!(
                        "the only adapters are software ones ({}), which run WGSL on the CPU far slower than \
                         the CPU path; --device gpu uses them",
                        names()
                    ),
                };
                if kind == DeviceKind::Gpu || opts.adapter.is_some() {
                    Err(Error::Device(what))
                } else if opts.precision == Precision::Mixed {
                    Err(Error::Device(format!(
                        "--precision mixed runs on a GPU and none was found ({what}); the CPU path computes in f32"
                    )))
                } else {
                    Ok((Device::Cpu, format!("CPU path: {what}")))
                }
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            Device::Cpu => "CPU path".into(),
            Device::Gpu(g) => g.describe(),
        }
    }

    pub fn gpu(&self) -> Option<&Arc<Gpu>> {
        match self {
            Device::Gpu(g) => Some(g),
            Device::Cpu => None,
        }
    }
}

/// Runs a GPU future (a buffer read) to completion: natively by blocking, the device polled
/// inside it; in the browser a read completes only once the page yields to the event loop, so the
/// blocking forms say to use the async ones (`Gpu::read_many_async`, `GpuExecutor::train_step`).
pub fn blocking<T>(context: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = context;
        pollster::block_on(f)
    }
    #[cfg(target_arch = "wasm32")]
    {
        drop(f);
        Err(Error::Gpu {
            context: context.into(),
            msg: "a blocking read cannot run in the browser: use the async form (Gpu::read_many_async, \
                  GpuExecutor::train_step, GpuExecutor::forward_async, GpuExecutor::params_async)"
                .into(),
        })
    }
}

/// A GPU device with its queue, limits, captured errors and pipeline cache.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    errors: Arc<Mutex<Vec<String>>>,
    pipelines: Mutex<HashMap<&'static str, Arc<wgpu::ComputePipeline>>>,
    submits: AtomicU64,
    /// Bytes of every buffer created through this context.
    created: AtomicU64,
    split_target: std::sync::atomic::AtomicUsize,
    conv_kernels: std::sync::atomic::AtomicU8,
    precision: std::sync::atomic::AtomicU8,
    /// The cooperative-matrix tile (8 or 16) the `_cooperative_matrix` kernels run with here, 0 for
    /// none ([`cooperative_tile`]).
    cooperative_tile: std::sync::atomic::AtomicU32,
}

/// What the convolution and linear kernels compute in (`--precision`, WGRAD_PRECISION).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// Every tensor and every product in f32.
    #[default]
    F32,
    /// Conv2d and Linear read their operands (inputs, weights, output gradients) staged in f16 and
    /// accumulate in f32; every other tensor, the master weights and the optimizer stay f32. Output
    /// gradients are scaled per tensor by a power of two before they are rounded to f16, so
    /// nothing overflows and small gradients keep their bits (ops::cast_f16). Needs the adapter's
    /// SHADER_F16 feature; the CPU path computes in f32 only.
    Mixed,
}

/// Which convolution kernels a device's programs are built with: `Subgroups` on CPU adapters that
/// offer them (lavapipe), `RegisterBlocked` on every other adapter, unless WGRAD_CONV_KERNELS=
/// register-blocked|subgroups|tiled|cooperative-matrix|winograd says otherwise (to compare them on
/// one adapter); tests run every one the adapter offers through [`Gpu::set_conv_kernels`]. On an
/// H200 (Vulkan) the register-blocked kernels were the faster at every batch size and model
/// measured (docs/PERFORMANCE.md), in mixed
/// precision too, against `CooperativeMatrix` (1.2–1.7× at batch 1024, 2026-12-04), which is
/// therefore chosen only by name; on CPU adapters barriers cost more than the reuse gains, and every
/// storage load is a loop over the SIMD lanes, which the `Subgroups` kernels make fewer of.
/// `CooperativeMatrix` changes the kernels of mixed precision only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConvKernels {
    /// Each invocation computes 8 channels x 8 pixels from loads the cache serves (16 channels in
    /// the forward and weight gradient where the layer's channels are multiples of 16 and that
    /// still fills the GPU: their `_wide` variants); no workgroup memory, no barriers
    /// (conv2d_forward.wgsl, conv2d_backward_input.wgsl, conv2d_backward_weight.wgsl).
    RegisterBlocked,
    /// Register-blocked kernels for CPU adapters: the operands a tile of channels shares across its
    /// invocations (weights; output gradients in the weight gradient) are loaded once per subgroup,
    /// one in eight per invocation, and broadcast; 16 channels per tile in the forward and input
    /// gradient (conv2d_forward_subgroups.wgsl, conv2d_backward_input_subgroups.wgsl,
    /// conv2d_backward_weight_subgroups.wgsl). Needs wgpu's SUBGROUP feature and subgroups of at
    /// least 8 invocations.
    Subgroups,
    /// A workgroup stages 32 channels x 128 columns of the implicit GEMM in workgroup memory per
    /// 16 reduction steps (conv2d_forward_tiled.wgsl, conv2d_backward_input_tiled.wgsl,
    /// conv2d_backward_weight_tiled.wgsl).
    Tiled,
    /// In mixed precision, the products multiply f16 tiles into f32 accumulators on cooperative
    /// matrices (tensor cores on NVIDIA; conv2d_forward_cooperative_matrix.wgsl,
    /// conv2d_backward_input_cooperative_matrix.wgsl, conv2d_backward_weight_cooperative_matrix.wgsl);
    /// in f32, the register-blocked kernels. Needs wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX feature
    /// with 8x8x8 f16 products into f32 on subgroups of 8 (recent lavapipe: Mesa 26.2 has them, 22.3 not) or
    /// 16x16x16 ones on subgroups of 32 (NVIDIA).
    CooperativeMatrix,
    /// Stride-1 undilated 3 x 3 and 5 x 5 layers of at least 8 input and output channels run
    /// their forward, input gradient and weight gradient by Winograd's minimal filtering
    /// F(4 x 4, R x R): 36 multiplications per 4 x 4 output pixels and channel pair where the
    /// direct kernels take 144 (3 x 3), 64 where they take 400 (5 x 5), between transforms of the
    /// operands and the products (`shaders/conv2d_winograd_*.wgsl`, ops::conv2d::winograd_gpu),
    /// in f32, with rounding errors of about 1e-5 of a layer's largest output (1e-6 direct). In
    /// mixed precision such a layer runs in f32 too, where Winograd takes all three of its
    /// products ([`crate::ops::conv2d::precision`]). Every other product runs on the adapter's
    /// default kernels ([`Gpu::default_conv_kernels`]). Chosen only by name.
    Winograd,
}

impl ConvKernels {
    const ALL: [ConvKernels; 5] = [
        ConvKernels::RegisterBlocked,
        ConvKernels::Subgroups,
        ConvKernels::Tiled,
        ConvKernels::CooperativeMatrix,
        ConvKernels::Winograd,
    ];
}

/// The cooperative-matrix tile the `_cooperative_matrix` kernels can run with on `adapter`: 8 where
/// it multiplies 8x8x8 f16 matrices into f32 on subgroups of exactly 8 invocations, 16 where it
/// does so 16x16x16 on subgroups of exactly 32 (what the kernels' two variants are written for).
#[cfg(not(target_arch = "wasm32"))]
fn cooperative_tile(adapter: &wgpu::Adapter) -> Option<u32> {
    let info = adapter.get_info();
    let wanted = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16;
    if !adapter.features().contains(wanted) || info.subgroup_min_size != info.subgroup_max_size {
        return None;
    }
    let props = adapter.cooperative_matrix_properties();
    [(8, 8), (16, 32)].into_iter().find_map(|(tile, subgroup)| {
        let offered = props.iter().any(|m| {
            (m.m_size, m.n_size, m.k_size) == (tile, tile, tile)
                && m.ab_type == wgpu::CooperativeScalarType::F16
                && m.cr_type == wgpu::CooperativeScalarType::F32
        });
        (offered && info.subgroup_min_size == subgroup).then_some(tile)
    })
}

impl Gpu {
    /// Opens the adapter with its own limits (not the defaults) and captures every device error.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(adapter: &wgpu::Adapter) -> Result<Gpu> {
        Gpu::with_limits(adapter, adapter.limits())
    }

    /// Opens the adapter asking only for `limits`: `wgpu::Limits::default()` are WebGPU's defaults,
    /// what a browser gives every page, so a device opened with them shows whether every pipeline
    /// and binding fits there.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_limits(adapter: &wgpu::Adapter, limits: wgpu::Limits) -> Result<Gpu> {
        pollster::block_on(Gpu::open(adapter, limits))
    }

    /// Opens the adapter asking for `limits` (what [`Gpu::with_limits`] does, without blocking:
    /// the browser's form).
    pub async fn open(adapter: &wgpu::Adapter, limits: wgpu::Limits) -> Result<Gpu> {
        let info = adapter.get_info();
        // Subgroups only where naga translates the kernels: a browser compiles WGSL itself and
        // wants `enable subgroups;`, which naga does not parse yet.
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16;
        #[cfg(not(target_arch = "wasm32"))]
        let wanted = wanted | wgpu::Features::SUBGROUP;
        // Cooperative matrices where the kernels can use them (native only: wgpu does not offer
        // them to the browser).
        #[cfg(not(target_arch = "wasm32"))]
        let cooperative_tile = cooperative_tile(adapter);
        #[cfg(target_arch = "wasm32")]
        let cooperative_tile = None;
        let mut features = adapter.features() & wanted;
        let mut experimental = wgpu::ExperimentalFeatures::disabled();
        if cooperative_tile.is_some() {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
            // SAFETY: wgpu asks its users to acknowledge that its experimental features may have
            // bugs; wgrad uses only cooperative matrices, in the three kernels the parity tests run
            // (tests/conv2d.rs, on lavapipe in CI).
            experimental = unsafe { wgpu::ExperimentalFeatures::enabled() };
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("wgrad"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: experimental,
            ..Default::default()
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| Error::Device(format!("cannot open {}: {e}", info.name)))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(format!("device lost ({reason:?}): {msg}"));
            }
        });
        let gpu = Gpu {
            device,
            queue,
            limits,
            features,
            errors,
            pipelines: Mutex::default(),
            submits: AtomicU64::new(0),
            created: AtomicU64::new(0),
            // Big GPUs want many invocations per dispatch; CPU adapters (lavapipe) gain nothing
            // from splitting a reduction across them.
            split_target: std::sync::atomic::AtomicUsize::new(if info.device_type == wgpu::DeviceType::Cpu {
                0
            } else {
                65_536
            }),
            conv_kernels: std::sync::atomic::AtomicU8::new(ConvKernels::RegisterBlocked as u8),
            precision: std::sync::atomic::AtomicU8::new(Precision::F32 as u8),
            cooperative_tile: std::sync::atomic::AtomicU32::new(cooperative_tile.unwrap_or(0)),
            info,
        };
        let kernels = conv_kernels_from_env()?.unwrap_or_else(|| gpu.default_conv_kernels());
        gpu.set_conv_kernels(kernels)?;
        Ok(gpu)
    }

    /// The adapter `--device gpu` would pick (a software one where it is the only one), if any:
    /// what the tests run on. WGRAD_BACKEND and WGRAD_ADAPTER choose as they do for the commands.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn default_adapter() -> Result<Option<Gpu>> {
        Gpu::default_adapter_with(None)
    }

    /// [`Gpu::default_adapter`] opened with `limits` instead of the adapter's own.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn default_adapter_with(limits: Option<wgpu::Limits>) -> Result<Option<Gpu>> {
        let env = DeviceOptions::from_env()?;
        let list = candidates(env.backend);
        match pick(&list, env.adapter.as_deref(), DeviceKind::Gpu) {
            Some(i) => {
                let limits = limits.unwrap_or_else(|| list[i].limits());
                Gpu::with_limits(&list[i], limits).map(Some)
            }
            None => Ok(None),
        }
    }

    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// Returns the device errors captured since the last check as one error naming `context`.
    pub fn check(&self, context: &str) -> Result<()> {
        let mut errs = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errs.is_empty() {
            return Ok(());
        }
        let msg = errs.drain(..).collect::<Vec<_>>().join("\n");
        Err(Error::Gpu { context: context.into(), msg })
    }

    /// The kernels whose pipelines this device has created so far (those its programs run), by
    /// name, sorted.
    pub fn built_kernels(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> =
            self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The cached pipeline of a shader, created (and its compilation checked) on first use.
    pub fn pipeline(&self, name: &'static str) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(name) {
            return Ok(p.clone());
        }
        let shader = shaders::get(name)
            .ok_or_else(|| Error::Gpu { context: format!("pipeline {name}"), msg: "no such shader".into() })?;
        let source = shader.source;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        // Bounds checks stay on: no kernel can touch memory outside its bindings. Loop bounding and
        // integer-division checks are off (they cost lavapipe 1.4x): every loop in shaders/ runs
        // to a bound taken from its uniform Params, and every divisor is a size or stride the host
        // has checked to be at least 1 before building the kernel.
        let checks = wgpu::ShaderRuntimeChecks { bounds_checks: true, ..wgpu::ShaderRuntimeChecks::unchecked() };
        // SAFETY: the two checks turned off guard against conditions the host rules out (above).
        let module = unsafe {
            self.device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(source.into()) },
                checks,
            )
        };
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop()) {
            let mut msg = e.to_string();
            if shader.needs_cooperative_matrix() {
                // The newest kernels, and an experimental wgpu feature: say how to do without.
                msg += "\n(WGRAD_CONV_KERNELS=register-blocked runs mixed precision without cooperative matrices)";
            }
            return Err(Error::Gpu { context: format!("creating pipeline {name}"), msg });
        }
        // The browser reports a pipeline's errors later: they join the captured errors, which
        // every submit and read checks.
        #[cfg(target_arch = "wasm32")]
        {
            let sink = self.errors.clone();
            // Popped now (scopes nest: the browser wants them popped in order), awaited later.
            let popped = scope.pop();
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(e) = popped.await {
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(format!("creating pipeline {name}: {e}"));
                }
            });
        }
        self.check(&format!("creating pipeline {name}"))?;
        let p = Arc::new(pipeline);
        cache.insert(name, p.clone());
        Ok(p)
    }

    /// Invocations a dispatch should reach before kernels split their reductions (see
    /// ops::sum_splits); tests raise it on lavapipe to exercise the split kernels.
    pub fn split_target(&self) -> usize {
        self.split_target.load(Ordering::Relaxed)
    }
    pub fn set_split_target(&self, invocations: usize) {
        self.split_target.store(invocations, Ordering::Relaxed);
    }

    /// The convolution kernels a device starts with where WGRAD_CONV_KERNELS names none: the
    /// `Subgroups` ones on CPU adapters that offer them, else the register-blocked ones.
    pub fn default_conv_kernels(&self) -> ConvKernels {
        if self.info.device_type == wgpu::DeviceType::Cpu && self.offers(ConvKernels::Subgroups) {
            ConvKernels::Subgroups
        } else {
            ConvKernels::RegisterBlocked
        }
    }
    /// The convolution kernels programs built from now on use.
    pub fn conv_kernels(&self) -> ConvKernels {
        ConvKernels::ALL[self.conv_kernels.load(Ordering::Relaxed) as usize]
    }
    /// Chooses the convolution kernels for programs built from now on (tests run every one the
    /// adapter offers); an error where the adapter cannot run them.
    pub fn set_conv_kernels(&self, k: ConvKernels) -> Result<()> {
        if !self.offers(k) {
            let (needs, has) = match k {
                ConvKernels::CooperativeMatrix => (
                    "wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX feature with 8x8x8 f16 products into f32 on subgroups \
                     of 8, or 16x16x16 ones on subgroups of 32",
                    if self.features.contains(wgpu::Features::SHADER_F16) {
                        "has f16 shaders"
                    } else {
                        "has no f16 shaders"
                    },
                ),
                _ => (
                    "wgpu's SUBGROUP feature with subgroups of at least 8 invocations",
                    if self.features.contains(wgpu::Features::SUBGROUP) { "offers it" } else { "offers no SUBGROUP" },
                ),
            };
            // Named as WGRAD_CONV_KERNELS spells them.
            let name =
                clap::ValueEnum::to_possible_value(&k).map_or_else(|| format!("{k:?}"), |v| v.get_name().to_string());
            return Err(Error::Device(format!(
                "the {name} convolution kernels need {needs}; {} {has}, with subgroups of {} to {}",
                self.describe(),
                self.info.subgroup_min_size,
                self.info.subgroup_max_size,
            )));
        }
        self.conv_kernels.store(k as u8, Ordering::Relaxed);
        Ok(())
    }
    /// Whether this device can run `k`.
    pub fn offers(&self, k: ConvKernels) -> bool {
        match k {
            ConvKernels::RegisterBlocked | ConvKernels::Tiled | ConvKernels::Winograd => true,
            // The kernels broadcast from invocations 0-7 of each subgroup.
            ConvKernels::Subgroups => {
                self.features.contains(wgpu::Features::SUBGROUP) && self.info.subgroup_min_size >= 8
            }
            ConvKernels::CooperativeMatrix => self.cooperative_tile().is_some(),
        }
    }
    /// Whether this device can build `shader`: f16, subgroups and cooperative matrices of its tile
    /// where it uses them, and the workgroup memory it takes past WebGPU's default.
    pub fn can_build(&self, shader: &shaders::Shader) -> bool {
        (self.features.contains(wgpu::Features::SHADER_F16) || !shader.needs_f16())
            && (self.offers(ConvKernels::Subgroups) || !shader.needs_subgroups())
            && shader.cooperative_tile().is_none_or(|t| self.cooperative_tile() == Some(t))
            && shader.workgroup_memory_needed().is_none_or(|b| self.limits.max_compute_workgroup_storage_size >= b)
    }
    /// The cooperative-matrix tile (8 or 16) of the `_cooperative_matrix` kernels on this device,
    /// if it can run them.
    pub fn cooperative_tile(&self) -> Option<u32> {
        Some(self.cooperative_tile.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }
    /// For tests on lavapipe only: runs the 16 x 16 variant of the `_cooperative_matrix` kernels
    /// (written for NVIDIA's subgroups of 32) where the adapter offers 8 x 8 tiles on subgroups of
    /// 8. That is outside what the adapter advertises; lavapipe lowers cooperative matrices of any
    /// size to plain code and runs it, each of its subgroups in one of 32 computing the same tiles,
    /// so CI checks the variant no GPU here can run. An error on any other adapter.
    #[doc(hidden)]
    pub fn force_cooperative_tile_16_on_lavapipe(&self) -> Result<()> {
        if self.cooperative_tile() != Some(8) || !self.info.name.starts_with("llvmpipe") {
            return Err(Error::Device(format!(
                "the 16x16 cooperative-matrix kernels can be forced only on lavapipe with 8x8 cooperative matrices, not {}",
                self.describe()
            )));
        }
        self.cooperative_tile.store(16, Ordering::Relaxed);
        Ok(())
    }
    /// The most invocations a subgroup of this adapter has (what wgpu reports; 128 at most).
    pub fn subgroup_max_size(&self) -> u32 {
        self.info.subgroup_max_size
    }
    /// Every convolution kernel variant this device can run.
    pub fn conv_kernels_offered(&self) -> Vec<ConvKernels> {
        ConvKernels::ALL.into_iter().filter(|&k| self.offers(k)).collect()
    }

    /// The precision programs built from now on compute in.
    pub fn precision(&self) -> Precision {
        match self.precision.load(Ordering::Relaxed) {
            0 => Precision::F32,
            _ => Precision::Mixed,
        }
    }
    /// Chooses the precision of programs built from now on; mixed needs the SHADER_F16 feature.
    pub fn set_precision(&self, p: Precision) -> Result<()> {
        if p == Precision::Mixed && !self.features.contains(wgpu::Features::SHADER_F16) {
            return Err(Error::Device(format!(
                "--precision mixed needs f16 in shaders (wgpu's SHADER_F16 feature), which {} does not offer; \
                 use --precision f32",
                self.describe()
            )));
        }
        self.precision.store(p as u8, Ordering::Relaxed);
        Ok(())
    }

    /// Number of queue submits so far (a training step must add exactly one).
    pub fn submit_count(&self) -> u64 {
        self.submits.load(Ordering::Relaxed)
    }

    /// Bytes of every buffer created so far through this context (storage, uniform, staging).
    pub fn created_bytes(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }
    pub(crate) fn count_created(&self, bytes: u64) {
        self.created.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Submits one command buffer and reports any error the recording produced.
    pub fn submit(&self, encoder: wgpu::CommandEncoder, context: &str) -> Result<wgpu::SubmissionIndex> {
        self.submit_buffers([encoder.finish()], context)
    }

    /// Submits finished command buffers in one submit and reports any error their recording
    /// produced (recorded earlier, say while the device ran the previous submit).
    pub fn submit_buffers(
        &self,
        buffers: impl IntoIterator<Item = wgpu::CommandBuffer>,
        context: &str,
    ) -> Result<wgpu::SubmissionIndex> {
        self.check(context)?;
        let idx = self.queue.submit(buffers);
        self.submits.fetch_add(1, Ordering::Relaxed);
        self.check(context)?;
        Ok(idx)
    }

    /// Blocks until the queue is idle, then reports errors (device loss included).
    pub fn wait(&self, context: &str) -> Result<()> {
        let r = self.device.poll(wgpu::PollType::wait_indefinitely());
        if let Err(e) = r {
            self.check(context)?;
            return Err(Error::Gpu { context: context.into(), msg: e.to_string() });
        }
        self.check(context)
    }

    /// Blocks until one submission has finished (later ones keep running), then reports errors.
    pub fn wait_for(&self, index: wgpu::SubmissionIndex, context: &str) -> Result<()> {
        let r = self.device.poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None });
        if let Err(e) = r {
            self.check(context)?;
            return Err(Error::Gpu { context: context.into(), msg: e.to_string() });
        }
        self.check(context)
    }

    /// Runs the callbacks of finished work without blocking, then reports errors.
    pub fn poll(&self, context: &str) -> Result<()> {
        if let Err(e) = self.device.poll(wgpu::PollType::Poll) {
            self.check(context)?;
            return Err(Error::Gpu { context: context.into(), msg: e.to_string() });
        }
        self.check(context)
    }

    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Largest tensor (in f32 elements) one storage binding can hold on this device.
    pub fn max_binding_elems(&self) -> u64 {
        let bytes = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        bytes / 4
    }
}
