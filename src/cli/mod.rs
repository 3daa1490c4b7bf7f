//! The `wgrad` commands. They only call the library; every error reaches the user as one message
//! and a non-zero exit, never a panic.

mod bench;
mod check;
mod convert;
mod data_args;
mod devices;
mod eval;
mod model_args;
mod predict;
mod progress;
mod serve;
mod show;
mod train;

use crate::device::{BackendChoice, Device, DeviceKind, DeviceOptions};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wgrad",
    version,
    about = "Train PyTorch-style networks on any GPU through WebGPU, with a CPU path that verifies them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the adapters wgpu finds and mark the one wgrad would use.
    Devices(devices::Args),
    /// Run forward, loss, backward (and optimizer steps) of a model on given batches and write every
    /// output and gradient, to compare with PyTorch (--verify: with the CPU path).
    Check(check::Args),
    /// Accuracy and mean CrossEntropyLoss of a state dict or checkpoint over a dataset split.
    Eval(eval::Args),
    /// Train a model (Tudui, cifar-net, resnet20) with SGD, Adam or AdamW: progress, a checkpoint per
    /// epoch, curves, exact resume.
    Train(train::Args),
    /// Top-3 classes of pictures (PNG, JPEG, BMP, PPM/PGM, TIFF, WebP) with a state dict or
    /// checkpoint.
    Predict(predict::Args),
    /// Measure training and inference speed, per-kernel times and memory.
    Bench(bench::Args),
    /// Write a PNG grid of the first 64 images of a split with their class names.
    Show(show::Args),
    /// Serve the browser page (web/dist, built by web/build.sh) on 127.0.0.1.
    Serve(serve::Args),
    /// Write the weights of a state dict or checkpoint (PyTorch's .pt/.pth included) as the model's
    /// plain safetensors state dict, with PyTorch's names.
    Convert(convert::Args),
}

/// --device, --backend and --adapter, with WGRAD_DEVICE, WGRAD_BACKEND and WGRAD_ADAPTER.
#[derive(clap::Args, Clone, Debug)]
pub struct DeviceArgs {
    /// auto: the best hardware GPU adapter, else the CPU path; gpu: a wgpu adapter (software ones
    /// included) or an error; cpu: the CPU path [possible values: auto, gpu, cpu; any case].
    #[arg(long, env = "WGRAD_DEVICE", value_parser = crate::device::parse_device_kind, default_value = "auto")]
    pub device: DeviceKind,
    /// Which wgpu backend to search (auto: Vulkan, Metal, DX12; GL only if they have none)
    /// [possible values: auto, vulkan, metal, dx12, gl; any case].
    #[arg(long, env = "WGRAD_BACKEND", value_parser = crate::device::parse_backend, default_value = "auto")]
    pub backend: BackendChoice,
    /// Use the adapter whose name contains this text (case-insensitive).
    #[arg(long, env = "WGRAD_ADAPTER")]
    pub adapter: Option<String>,
    /// f32: every product in f32; mixed: Conv2d and Linear read f16 operands and accumulate in
    /// f32, master weights f32 (GPU only, needs f16 shaders) [possible values: f32, mixed].
    #[arg(long, env = "WGRAD_PRECISION", value_parser = crate::device::parse_precision, default_value = "f32")]
    pub precision: crate::Precision,
}

impl DeviceArgs {
    pub fn options(&self) -> DeviceOptions {
        DeviceOptions {
            kind: self.device,
            backend: self.backend,
            adapter: self.adapter.clone().filter(|s| !s.is_empty()),
            precision: self.precision,
        }
    }
    /// `--verify` compares every tensor with the CPU path's f32 at f32's tolerances; mixed
    /// precision moves activations by f16's rounding (~5e-4) and, where that flips a ReLU or a
    /// max-pool choice, gradients by far more, so the two are not asked together
    /// (tests/tudui.rs holds mixed precision's own tolerance).
    pub fn check_verify(&self, verify: bool) -> anyhow::Result<()> {
        if verify && self.precision == crate::Precision::Mixed {
            anyhow::bail!(
                "--verify compares with the CPU path's f32 at f32 tolerances and cannot judge --precision mixed; \
                 verify with --precision f32"
            );
        }
        Ok(())
    }
    /// Selects the device and says which on stderr.
    pub fn select(&self) -> crate::Result<Device> {
        let (device, why) = Device::select(&self.options())?;
        eprintln!("device: {why}");
        Ok(device)
    }
}

/// Mesa's Vulkan device-select layer, implicit wherever Mesa's Vulkan drivers are installed, asks the
/// Wayland compositor which GPU it shows on. Without a usable `XDG_RUNTIME_DIR` (a container, CI, a
/// service, `sudo`) libwayland then prints "error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment." at every start, though nothing failed. wgrad ranks the adapters itself
/// (crate::device), so where no Wayland compositor can be reached that way and nobody has asked the
/// layer for a device (`MESA_VK_DEVICE_SELECT`) or about itself (`NODEVICE_SELECT`), the layer is
/// turned off for this process by its own switch, `NODEVICE_SELECT=1`.
fn quiet_device_select_layer() {
    #[cfg(target_os = "linux")]
    {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        // libwayland's own test: an absolute XDG_RUNTIME_DIR, or a socket named otherwise.
        let wayland = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_absolute())
            || set("WAYLAND_SOCKET")
            || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| std::path::Path::new(&d).is_absolute());
        if !wayland && !set("MESA_VK_DEVICE_SELECT") && std::env::var_os("NODEVICE_SELECT").is_none() {
            // Before any thread or device exists (main's first steps), so nothing reads the
            // environment meanwhile.
            std::env::set_var("NODEVICE_SELECT", "1");
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    // A closed stdout (`wgrad devices | head -1`) ends a command quietly, as it ends other Unix
    // tools, where println! would panic. The server keeps Rust's default (SIGPIPE ignored): a
    // client that hangs up is an error on its connection, not the end of the process.
    #[cfg(unix)]
    if !matches!(cli.command, Command::Serve(_)) {
        // SAFETY: before any thread or device exists; SIG_DFL is a valid disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    quiet_device_select_layer();
    let result = match cli.command {
        Command::Devices(a) => devices::run(a),
        Command::Check(a) => check::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Show(a) => show::run(a),
        Command::Train(a) => train::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Convert(a) => convert::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// clap's parser for counts that must be at least 1 (epochs, steps, batch sizes).
fn positive(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}
