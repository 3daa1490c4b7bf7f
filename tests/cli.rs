//! The `wgrad` binary as a user runs it: check matches PyTorch's goldens on the GPU and the CPU
//! path, devices, eval --json, show, predict, train with --max-steps and resume, and Ctrl-C.

mod common;
use common::*;
use std::io::BufRead;
use std::process::{Command, Stdio};
use wgrad::io::safetensors::File;
use wgrad::testing::assert_close;

fn wgrad(args: &[&str]) -> (i32, String, String) {
    wgrad_with_env(args, &[])
}

/// `wgrad` with these environment variables set.
fn wgrad_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgrad")).args(args).envs(env.iter().copied()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// `wgrad check` over the three Tudui batches with these optimizer flags, against `golden`
/// (tests/golden/make_goldens.py), with --verify.
fn check_matches_pytorch(device: &str, optim: &[&str], golden: &str) {
    let dir = tempdir();
    let out = dir.join("out.safetensors");
    let (init, b1, b2, b3) = (
        data_path("tudui_init.safetensors"),
        data_path("tudui_batch1.safetensors"),
        data_path("tudui_batch2.safetensors"),
        data_path("tudui_batch3.safetensors"),
    );
    let args = [
        "check",
        "--weights",
        s(&init),
        "--batch",
        s(&b1),
        "--batch",
        s(&b2),
        "--batch",
        s(&b3),
        "--out",
        s(&out),
        "--device",
        device,
        "--verify",
    ];
    let (code, stdout, stderr) = wgrad(&[&args[..], optim].concat());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("step 3: loss"), "{stdout}");
    let got = File::read(&out).unwrap();
    let path = data_path(golden);
    let want = File::read(&path).unwrap();
    assert_eq!(
        got.tensors.keys().collect::<Vec<_>>(),
        want.tensors.keys().collect::<Vec<_>>(),
        "check writes PyTorch's names"
    );
    for k in want.tensors.keys() {
        let w = want.f32(&path, k).unwrap().1;
        assert_close(&format!("{device}: {k}"), got.f32(&out, k).unwrap().1, w, 1e-4, atol_of(w, 1e-4));
    }
}

const SGD: &[&str] = &["--lr", "0.01", "--momentum", "0.9", "--weight-decay", "5e-4"];
/// SGD after torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5): grad.i are the clipped
/// gradients, grad_norm.i the norm before clipping.
const CLIPPED_SGD: &[&str] = &["--lr", "0.05", "--momentum", "0.9", "--clip-grad-norm", "0.5"];

#[test]
fn check_matches_pytorch_on_the_cpu_path() {
    check_matches_pytorch("cpu", SGD, "tudui_sgd_expected.safetensors");
    check_matches_pytorch("cpu", CLIPPED_SGD, "tudui_clip_expected.safetensors");
}

#[test]
fn check_matches_pytorch_on_the_gpu() {
    if gpu().is_none() {
        return;
    }
    check_matches_pytorch("gpu", SGD, "tudui_sgd_expected.safetensors");
    check_matches_pytorch("gpu", CLIPPED_SGD, "tudui_clip_expected.safetensors");
}

/// Without XDG_RUNTIME_DIR (a container, CI) nothing on stderr looks like a failure: Mesa's
/// device-select layer would make libwayland print "error: XDG_RUNTIME_DIR is invalid or not set"
/// (wgrad turns the layer off then, cli::quiet_device_select_layer), and with the layer asked for
/// by name it stays on.
#[test]
fn no_wayland_error_without_a_runtime_dir() {
    let run = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wgrad"))
            .args(["devices"])
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("WAYLAND_SOCKET")
            .env_remove("NODEVICE_SELECT")
            .env_remove("MESA_VK_DEVICE_SELECT")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    assert!(stdout.contains("wgrad would use:"), "{stdout}");
    // The layer's own selection still works when asked for (where the layer is installed: it
    // lists the devices and ends the process).
    if gpu().is_some()
        && std::path::Path::new("/usr/share/vulkan/implicit_layer.d/VkLayer_MESA_device_select.json").exists()
    {
        let (_, stdout, stderr) = run(&[("MESA_VK_DEVICE_SELECT", "list")]);
        assert!(format!("{stdout}{stderr}").contains("selectable devices"), "{stdout}\n{stderr}");
    }
}

#[test]
fn devices_lists_adapters_and_the_choice() {
    let (code, stdout, _) = wgrad(&["devices", "--device", "cpu"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("wgrad would use: CPU path"), "{stdout}");
    if gpu().is_some() {
        // An adapter (lavapipe, on CI): --device gpu takes it whatever its kind.
        let (code, stdout, _) = wgrad(&["devices", "--device", "gpu"]);
        assert_eq!(code, 0);
        assert!(
            stdout.contains("* [0]") && stdout.contains("backend=") && stdout.contains("wgrad would use: GPU"),
            "{stdout}"
        );
        // What --precision mixed would compute on, as the device itself finds it.
        let g = gpu().unwrap();
        let mixed = match g.cooperative_tile() {
            Some(t) => format!("precision: f32, mixed on f16 FMA kernels or cooperative matrices {t}x{t}"),
            None if g.features.contains(wgpu::Features::SHADER_F16) => {
                "precision: f32, mixed on f16 FMA kernels".into()
            }
            None => "precision: f32, f32 only (no f16 in shaders)".into(),
        };
        assert!(stdout.lines().any(|l| l.starts_with("* [0]") && l.contains(&mixed)), "{mixed}: {stdout}");
    }
    let (code, stdout, _) = wgrad(&["devices", "--adapter", "no-such-adapter-anywhere"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("no-such-adapter-anywhere"), "{stdout}");
}

#[test]
fn train_eval_predict_and_show_work_together() {
    let dir = tempdir();
    let (data, run) = (dir.join("data"), dir.join("run"));
    let (code, stdout, stderr) = wgrad(&[
        "train",
        "--device",
        "cpu",
        "--data-dir",
        s(&data),
        "--out",
        s(&run),
        "--batch-size",
        "32",
        "--max-steps",
        "3",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("SYNTHETIC"), "the default without CIFAR-10 must say it is synthetic: {stderr}");
    assert!(stdout.contains("stopped at --max-steps 3"), "{stdout}");
    let (code, stdout, stderr) = wgrad(&[
        "train",
        "--device",
        "cpu",
        "--data-dir",
        s(&data),
        "--out",
        s(&run),
        "--max-steps",
        "5",
        "--resume",
        s(&run),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("resuming from ")
            && stdout.contains("checkpoint-000000003.safetensors at epoch 1 batch 3 (step 3)")
            && stdout.contains("--max-steps 5"),
        "{stdout}"
    );
    assert!(stdout.contains("batches of 32"), "a resume takes the checkpoint's batch size: {stdout}");

    let (code, stdout, stderr) = wgrad(&[
        "eval",
        "--weights",
        s(&run),
        "--dataset",
        "synthetic",
        "--data-dir",
        s(&data),
        "--device",
        "cpu",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        v["accuracy"].as_f64().unwrap() >= 0.0 && v["loss"].as_f64().unwrap() > 0.0 && v["synthetic"] == true,
        "{v}"
    );
    // Per class: CIFAR-10's names in order, and together they are the whole split and its accuracy.
    let per_class = v["per_class"].as_array().unwrap();
    let names: Vec<&str> = per_class.iter().map(|c| c["class"].as_str().unwrap()).collect();
    assert_eq!(names, wgrad::data::DatasetKind::Synthetic.classes().unwrap(), "{v}");
    let images: u64 = per_class.iter().map(|c| c["images"].as_u64().unwrap()).sum();
    assert_eq!(images, v["images"].as_u64().unwrap(), "{v}");
    let correct: f64 = per_class.iter().map(|c| c["accuracy"].as_f64().unwrap() * c["images"].as_f64().unwrap()).sum();
    assert!((correct / images as f64 - v["accuracy"].as_f64().unwrap()).abs() < 1e-9, "{v}");

    let img = dir.join("pic.png");
    image::RgbImage::from_fn(57, 41, |x, y| image::Rgb([(x * 4) as u8, (y * 6) as u8, 128])).save(&img).unwrap();
    let jpg = dir.join("pic.jpg");
    image::RgbImage::from_fn(300, 200, |x, _| image::Rgb([x as u8, 50, 200])).save(&jpg).unwrap();
    let (code, stdout, stderr) = wgrad(&["predict", "--weights", s(&run), s(&img), s(&jpg), "--device", "cpu"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert_eq!(stdout.lines().next().unwrap().matches('%').count(), 3, "top-3 with probabilities: {stdout}");

    let grid = dir.join("grid.png");
    let (code, _, stderr) = wgrad(&["show", "--dataset", "synthetic", "--data-dir", s(&data), "--out", s(&grid)]);
    assert_eq!(code, 0, "{stderr}");
    let g = image::open(&grid).unwrap();
    // Cells as wide as "automobile" (10 characters of 8 pixels) and a margin of 8.
    assert_eq!((g.width(), g.height()), (8 * 88, 8 * 78));
}

#[test]
fn ctrl_c_saves_at_a_step_boundary_and_exits_0() {
    let dir = tempdir();
    let (data, run) = (dir.join("data"), dir.join("run"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args([
            "train",
            "--device",
            "cpu",
            "--data-dir",
            s(&data),
            "--out",
            s(&run),
            "--batch-size",
            "16",
            "--epochs",
            "50",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("training tudui"), "{first}");
    std::thread::sleep(std::time::Duration::from_millis(700));
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(rest.iter().any(|l| l.starts_with("interrupted at step")), "{rest:?}");
    let ck = wgrad::io::checkpoint::latest(&run).expect("a checkpoint saved on Ctrl-C");
    wgrad::io::checkpoint::load(&ck, &wgrad::models::tudui(0).params).unwrap();
}

/// check takes --weights as eval and predict do: a run's folder stands for its newest checkpoint.
#[test]
fn check_takes_a_runs_folder_as_its_newest_checkpoint() {
    let dir = tempdir();
    let run = dir.join("run");
    let (code, _, stderr) = wgrad(&[
        "train",
        "--device",
        "cpu",
        "--dataset",
        "synthetic",
        "--data-dir",
        s(&dir.join("data")),
        "--out",
        s(&run),
        "--batch-size",
        "8",
        "--max-steps",
        "2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let newest = wgrad::io::checkpoint::latest(&run).unwrap();
    let logits = |weights: &std::path::Path, out: &std::path::Path| {
        let b1 = data_path("tudui_batch1.safetensors");
        let (code, _, stderr) =
            wgrad(&["check", "--device", "cpu", "--weights", s(weights), "--batch", s(&b1), "--out", s(out)]);
        assert_eq!(code, 0, "{stderr}");
        File::read(out).unwrap().f32(out, "logits.1").unwrap().1.to_vec()
    };
    assert_eq!(logits(&run, &dir.join("a.safetensors")), logits(&newest, &dir.join("b.safetensors")));
}

/// `wgrad check` on the CPU path of the weights over the batches with SGD (lr 0.01, momentum 0.9,
/// weight decay 5e-4) and `extra` flags, against PyTorch's steps of cifar-net
/// (cifar_net_sgd_expected.safetensors): every tensor of the steps run. Gives check's output.
fn check_cifar_net_sgd(weights: &std::path::Path, batches: &[std::path::PathBuf], extra: &[&str]) -> String {
    let dir = tempdir();
    let out = dir.join("out.safetensors");
    let mut args = vec!["check", "--device", "cpu", "--weights", s(weights), "--out", s(&out)];
    args.extend(["--lr", "0.01", "--momentum", "0.9", "--weight-decay", "5e-4"]);
    args.extend(batches.iter().flat_map(|b| ["--batch", s(b)]));
    args.extend(extra);
    let (code, stdout, stderr) = wgrad(&args);
    assert_eq!(code, 0, "{stderr}");
    let (got, wp) = (File::read(&out).unwrap(), data_path("cifar_net_sgd_expected.safetensors"));
    let want = File::read(&wp).unwrap();
    // logits.1, grad.1.conv1.weight, …: the step is the first number.
    let step = |k: &str| k.split('.').find_map(|p| p.parse::<usize>().ok()).unwrap();
    let run: Vec<&String> = want.tensors.keys().filter(|k| step(k) <= batches.len()).collect();
    assert!(run.len() > 20 * batches.len(), "{run:?}");
    for k in run {
        let w = want.f32(&wp, k).unwrap().1;
        assert_close(&format!("check cifar-net {k}"), got.f32(&out, k).unwrap().1, w, 1e-4, atol_of(w, 1e-4));
    }
    stdout
}

/// PyTorch's own files: cifar-net's state dict saved with `torch.save` (found to be cifar-net
/// without --model, saying so) and a batch saved with it give PyTorch's first SGD step, as the
/// safetensors files do; `eval` and `predict` take the .pth too.
#[test]
fn check_eval_and_predict_read_what_torch_save_writes() {
    let dir = tempdir();
    let weights = data_path("torch/cifar_net.pth");
    // Had it been taken for another network, these would not be cifar-net's gradients.
    let stdout = check_cifar_net_sgd(&weights, &[data_path("torch/tudui_batch1.pt")], &[]);
    assert!(stdout.contains("step 1: loss"), "{stdout}");
    let data = dir.join("data");
    let eval = |weights: &std::path::Path| {
        let args =
            ["eval", "--device", "cpu", "--weights", s(weights), "--dataset", "synthetic", "--data-dir", s(&data)];
        let (code, stdout, stderr) = wgrad(&args);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        stdout
    };
    assert_eq!(eval(&weights), eval(&data_path("cifar_net_init.safetensors")));
    let picture = dir.join("p.png");
    image::RgbImage::from_pixel(40, 30, image::Rgb([200, 30, 30])).save(&picture).unwrap();
    let (code, stdout, stderr) = wgrad(&["predict", "--device", "cpu", "--weights", s(&weights), s(&picture)]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("p.png"), "{stdout}");
    assert!(
        stderr.contains("model: cifar-net with 10 outputs (the network whose state dict the weights hold)"),
        "{stderr}"
    );
}

/// `wgrad convert` writes PyTorch's .pth of cifar-net as its plain safetensors state dict: the
/// entries PyTorch saved, bit for bit, with convert's mark; it replaces its own output, and no
/// one else's file.
#[test]
fn convert_writes_a_pth_as_a_safetensors_state_dict() {
    let dir = tempdir();
    let out = dir.join("cifar_net.safetensors");
    let convert =
        |out: &std::path::Path| wgrad(&["convert", "--weights", s(&data_path("torch/cifar_net.pth")), "--out", s(out)]);
    for _ in 0..2 {
        let (code, stdout, stderr) = convert(&out);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        assert!(stdout.contains("wrote cifar-net's state dict (10 entries, 62006 parameters)"), "{stdout}");
    }
    let (got, want) = (File::read(&out).unwrap(), File::read(&data_path("cifar_net_init.safetensors")).unwrap());
    assert_eq!(got.tensors, want.tensors);
    let mark = &got.metadata[wgrad::io::safetensors::CONVERT_MARK];
    assert!(mark.contains("\"model\":\"cifar-net\"") && mark.contains("cifar_net.pth"), "{mark}");
    let theirs = dir.join("theirs.safetensors");
    std::fs::copy(data_path("cifar_net_init.safetensors"), &theirs).unwrap();
    let before = std::fs::read(&theirs).unwrap();
    let (code, _, stderr) = convert(&theirs);
    assert_ne!(code, 0);
    assert!(stderr.contains("refusing to replace it: it is not a state dict `wgrad convert` wrote"), "{stderr}");
    assert_eq!(std::fs::read(&theirs).unwrap(), before);
}

/// `train --weights` starts from a state dict (here PyTorch's .pth of cifar-net, found to be
/// cifar-net without --model) instead of the seed's initialisation; weights of another network
/// are refused with the --model to pass; --weights and --resume exclude each other.
#[test]
fn train_starts_from_the_weights_it_is_given() {
    let dir = tempdir();
    let (data, run) = (dir.join("data"), dir.join("run"));
    let weights = data_path("torch/cifar_net.pth");
    let train = |extra: &[&str]| {
        let args = ["train", "--device", "cpu", "--dataset", "synthetic", "--data-dir", s(&data), "--max-steps", "1"];
        wgrad(&[&args[..], extra].concat())
    };
    // A learning rate too small to move any weight: the checkpoint holds the weights given.
    let (code, stdout, stderr) = train(&["--weights", s(&weights), "--lr", "1e-30", "--out", s(&run)]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("training cifar-net") && stdout.contains("starting from the weights in"), "{stdout}");
    let saved = wgrad::io::checkpoint::latest(&run).unwrap();
    let (got, init) = (File::read(&saved).unwrap(), data_path("cifar_net_init.safetensors"));
    let want = File::read(&init).unwrap();
    assert_eq!(got.tensors.len(), want.tensors.len());
    for k in want.tensors.keys() {
        let w = want.f32(&init, k).unwrap().1;
        assert_close(&format!("train --weights {k}"), got.f32(&saved, k).unwrap().1, w, 0.0, 1e-6);
    }
    let (code, _, stderr) = train(&["--weights", s(&weights), "--model", "tudui", "--out", s(&dir.join("b"))]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("--weights: tudui with 10 outputs") && stderr.contains("pass --model cifar-net"),
        "{stderr}"
    );
    assert!(!dir.join("b").exists());
    let (code, _, stderr) = train(&["--weights", s(&weights), "--resume", s(&run)]);
    assert_ne!(code, 0);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    // A checkpoint's settings come from its header alone: cut after it, the file still gives
    // them (and is refused as weights).
    let bytes = std::fs::read(&saved).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..header + 10]).unwrap();
    assert_eq!(wgrad::io::checkpoint::meta_of(&cut).unwrap(), wgrad::io::checkpoint::meta_of(&saved).unwrap());
    assert!(File::read(&cut).is_err());
}

#[test]
fn check_takes_the_model_and_the_optimizer() {
    let dir = tempdir();
    let out = dir.join("out.safetensors");
    let (b1, b2) = (data_path("tudui_batch1.safetensors"), data_path("tudui_batch2.safetensors"));
    // cifar-net with SGD over two batches, as PyTorch.
    check_cifar_net_sgd(&data_path("cifar_net_init.safetensors"), &[b1.clone(), b2], &["--model", "cifar-net"]);
    // resnet20 with AdamW: one step, every state-dict entry written (int64 counters included).
    let (code, stdout, stderr) = wgrad(&[
        "check",
        "--model",
        "resnet20",
        "--device",
        "cpu",
        "--weights",
        s(&data_path("resnet20_init.safetensors")),
        "--batch",
        s(&b1),
        "--out",
        s(&out),
        "--optimizer",
        "adamw",
        "--lr",
        "1e-3",
        "--weight-decay",
        "0.05",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("step 1: loss"), "{stdout}");
    let (got, wp) = (File::read(&out).unwrap(), data_path("resnet20_adamw_expected.safetensors"));
    let want = File::read(&wp).unwrap();
    assert_close("resnet20 loss.1", got.f32(&out, "loss.1").unwrap().1, want.f32(&wp, "loss.1").unwrap().1, 1e-5, 1e-6);
    let params: Vec<&String> = got.tensors.keys().filter(|k| k.starts_with("param.1.")).collect();
    assert_eq!(params.len(), 128, "every state-dict entry of resnet20");
    assert_eq!(got.i64(&out, "param.1.layer3.2.bn2.num_batches_tracked").unwrap().1, &[1]);
    // Settings that belong to another optimizer are refused.
    let (code, _, stderr) = wgrad(&[
        "check",
        "--model",
        "resnet20",
        "--device",
        "cpu",
        "--weights",
        s(&data_path("resnet20_init.safetensors")),
        "--batch",
        s(&b1),
        "--out",
        s(&out),
        "--optimizer",
        "adam",
        "--momentum",
        "0.9",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--momentum applies to SGD"), "{stderr}");
}

#[test]
fn progress_is_plain_lines_where_stderr_is_not_a_terminal() {
    let dir = tempdir();
    let (data, run) = (dir.join("data"), dir.join("run"));
    let (code, _, stderr) = wgrad(&[
        "train",
        "--device",
        "cpu",
        "--data-dir",
        s(&data),
        "--out",
        s(&run),
        "--batch-size",
        "256",
        "--max-steps",
        "9",
    ]);
    assert_eq!(code, 0, "{stderr}");
    // 10,000 synthetic images in batches of 256: 39 steps an epoch, a line every tenth (4 steps).
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("epoch 1 ")).collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("epoch 1 4/39 (10%): step 4, loss ") && lines[0].contains("img/s, eta "), "{stderr}");
    assert!(!stderr.contains('\r'), "no carriage-return bars in a log: {stderr:?}");
}

/// `wgrad devices | head -1`: output into a pipe nobody reads ends the command quietly (by
/// SIGPIPE, as other Unix tools end), not with a panic's backtrace.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args(["devices", "--device", "cpu"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}: {stderr}", out.status);
}

#[test]
fn auto_never_picks_a_software_adapter() {
    let (code, stdout, _) = wgrad(&["devices"]);
    assert!(code == 0 || code == 1, "{stdout}");
    let software = stdout.lines().any(|l| l.contains("(software (runs on the CPU))"));
    let hardware = stdout.lines().any(|l| l.contains("(hardware)"));
    if software && !hardware {
        assert!(stdout.contains("wgrad would use: CPU path: the only adapters are software ones"), "{stdout}");
        let (_, stdout, _) = wgrad(&["devices", "--device", "gpu"]);
        assert!(stdout.contains("wgrad would use: GPU: ") && stdout.contains("(--device gpu)"), "{stdout}");
    }
}

#[test]
fn bench_peak_measures_a_gpu_and_says_so_on_the_cpu_path() {
    let (code, _, stderr) = wgrad(&["bench", "--device", "cpu", "--peak"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("bench --peak measures a GPU adapter's kernels"), "{stderr}");
    // It measures no model: asking for one is an error, not ignored.
    let (code, _, stderr) = wgrad(&["bench", "--peak", "--batch-sizes", "64"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("'--peak' cannot be used with '--batch-sizes"), "{stderr}");
    if gpu().is_some() {
        let (code, stdout, stderr) = wgrad(&["bench", "--device", "gpu", "--peak", "--json"]);
        assert_eq!(code, 0, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let first = &v["peaks"][0];
        assert_eq!(first["peak"], "f32 multiply-add, registers", "{stdout}");
        assert!(first["gflops"].as_f64().is_some_and(|r| r > 0.0), "{stdout}");
    }
}

#[test]
fn precision_mixed_runs_on_a_gpu_and_says_what_it_cannot_do() {
    let (code, _, stderr) = wgrad(&["bench", "--device", "cpu", "--precision", "mixed", "--batch-sizes", "2"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--precision mixed runs on a GPU"), "{stderr}");
    let (code, _, stderr) = wgrad(&["bench", "--precision", "half"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("f32 or mixed"), "{stderr}");
    let dir = tempdir();
    let batch = data_path("tudui_batch1.safetensors");
    let weights = data_path("tudui_init.safetensors");
    let out = dir.join("out.safetensors");
    let args =
        ["check", "--weights", s(&weights), "--batch", s(&batch), "--out", s(&out), "--precision", "mixed", "--verify"];
    let (code, _, stderr) = wgrad(&args);
    assert_ne!(code, 0);
    assert!(stderr.contains("cannot judge --precision mixed"), "{stderr}");
    assert!(!out.exists(), "nothing is written when the arguments are refused");
    if gpu().is_none() {
        return;
    }
    let (code, stdout, stderr) = wgrad(&[
        "bench",
        "--device",
        "gpu",
        "--precision",
        "mixed",
        "--model",
        "tudui",
        "--batch-sizes",
        "2",
        "--steps",
        "1",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("Mixed precision"), "{stdout}");
    assert!(stdout.contains("model1.conv2.dout.f16"), "the per-kernel table lists the casts: {stdout}");
}

#[test]
fn bench_json_reports_steps_with_and_without_the_upload() {
    let (code, stdout, stderr) = wgrad(&[
        "bench",
        "--device",
        "cpu",
        "--model",
        "cifar-net",
        "--batch-sizes",
        "2,3",
        "--steps",
        "2",
        "--warmup",
        "0",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.iter().map(|r| r["batch"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 3]);
    for r in results {
        for key in [
            "train_images_per_s",
            "train_resident_images_per_s",
            "infer_images_per_s",
            "infer_resident_images_per_s",
            "train_resident_ms_median",
            "infer_resident_ms_median",
        ] {
            let x = r[key].as_f64().unwrap_or(f64::NAN);
            assert!(x.is_finite() && x > 0.0, "{key} = {}: {r}", r[key]);
        }
        let batch = r["batch"].as_f64().unwrap();
        let rate = r["train_resident_images_per_s"].as_f64().unwrap();
        let ms = r["train_resident_ms_median"].as_f64().unwrap();
        assert!((rate * ms / 1e3 - batch).abs() < 1e-6 * batch, "rate and time of one step agree: {r}");
    }
}

#[test]
fn a_cpu_isa_cap_that_names_no_kernels_is_refused() {
    let bench =
        ["bench", "--device", "cpu", "--model", "cifar-net", "--batch-sizes", "2", "--steps", "1", "--warmup", "0"];
    let (code, _, stderr) = wgrad_with_env(&bench, &[("WGRAD_CPU_ISA", "avx3")]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("WGRAD_CPU_ISA=\"avx3\": expected avx512, avx2 or none"), "{stderr}");
    for isa in ["avx2", "none", "AVX512"] {
        let (code, _, stderr) = wgrad_with_env(&bench, &[("WGRAD_CPU_ISA", isa)]);
        assert_eq!(code, 0, "WGRAD_CPU_ISA={isa}: {stderr}");
    }
}

#[test]
fn a_batch_too_large_for_memory_is_refused_before_anything_is_allocated() {
    // 100 million images: 1.2 TB of input alone, which bench once allocated before the executor
    // refused the batch (an allocation abort).
    let (code, _, stderr) =
        wgrad(&["bench", "--device", "cpu", "--model", "tudui", "--batch-sizes", "100000000", "--steps", "1"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("error: the CPU path needs") && stderr.contains("a batch size of about"), "{stderr}");
}

#[test]
fn a_pytorch_state_dict_picks_its_model_and_a_wrong_model_is_named() {
    let dir = tempdir();
    let data = dir.join("data");
    let weights = data_path("resnet20_init.safetensors");
    let eval = |model: Option<&str>| {
        let mut args = vec!["eval", "--weights", s(&weights), "--dataset", "synthetic", "--data-dir", s(&data)];
        args.extend(["--device", "cpu", "--batch-size", "500", "--json"]);
        if let Some(m) = model {
            args.extend(["--model", m]);
        }
        wgrad(&args)
    };
    // Without --model, the network whose keys and shapes the file holds (it has no wgrad metadata).
    let (code, stdout, stderr) = eval(None);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["model"], "resnet20", "{v}");
    // With the wrong --model: a few of the problems, how many there are, and the --model to pass.
    let (code, _, stderr) = eval(Some("tudui"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("missing key model1.conv1.weight (shape [32, 3, 5, 5])"), "{stderr}");
    assert!(stderr.contains("unexpected key bn1.bias"), "{stderr}");
    assert!(stderr.contains("138 problems in all: 10 of the model's 10 keys missing, 128 unexpected"), "{stderr}");
    assert!(stderr.contains("(it is a state dict of resnet20: pass --model resnet20)"), "{stderr}");
    assert!(stderr.lines().count() < 5 && stderr.len() < 2000, "the first few problems only: {stderr}");
}

#[test]
fn train_refuses_bad_settings_before_it_reads_or_makes_data() {
    let dir = tempdir();
    let data = dir.join("data");
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--device", "cpu", "--dataset", "synthetic", "--data-dir", s(&data)];
        args.extend(["--max-steps", "1"]);
        args.extend(extra);
        wgrad(&args)
    };
    let out = dir.join("run");
    for (extra, says) in [
        (&["--out", s(&file)][..], "cannot write into it: it is a regular file, not a directory"),
        (&["--out", s(&out), "--lr-schedule", "step"][..], "--lr-schedule step needs --lr-step-size"),
        (&["--out", s(&out), "--lr-min", "0.1"][..], "--lr-min applies to --lr-schedule cosine"),
        (&["--out", s(&out), "--lr-schedule", "multistep"][..], "--lr-schedule multistep needs --lr-milestones"),
        (&["--out", s(&out), "--lr-milestones", "5,9"][..], "--lr-milestones applies to --lr-schedule multistep"),
        (&["--out", s(&out), "--lr-schedule", "exponential"][..], "--lr-schedule exponential needs --lr-gamma"),
        (&["--out", s(&out), "--lr-gamma", "0.5"][..], "--lr-gamma applies to --lr-schedule step, multistep"),
        (
            &["--out", s(&out), "--lr-schedule", "exponential", "--lr-gamma", "-1"][..],
            "--lr-gamma must be a finite number > 0, got -1",
        ),
    ] {
        let (code, _, stderr) = train(extra);
        assert_eq!(code, 1, "{extra:?}: {stderr}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert!(!data.exists() && !out.exists(), "{extra:?}: nothing is made before the settings are checked");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder");
}

#[test]
fn a_resumed_run_keeps_its_dataset_and_folder_and_eval_takes_its_dataset() {
    let dir = tempdir();
    // A data folder where the default dataset would be CIFAR-10 (a 7-batch copy of its layout).
    let data = dir.join("data");
    let bin = data.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for e in std::fs::read_dir(data_path("cifar10/bin/cifar-10-batches-bin")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), bin.join(e.file_name())).unwrap();
    }
    let run = dir.join("run");
    let common = ["--device", "cpu", "--data-dir", s(&data), "--batch-size", "4"];
    let mut first = vec!["train", "--dataset", "synthetic", "--out", s(&run), "--max-steps", "1"];
    first.extend(common);
    let (code, _, stderr) = wgrad(&first);
    assert_eq!(code, 0, "{stderr}");
    // No --dataset and no --out: the checkpoint's dataset, and on in its folder.
    let mut second = vec!["train", "--resume", s(&run), "--max-steps", "2"];
    second.extend(common);
    let (code, stdout, stderr) = wgrad(&second);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("data: synthetic Train split"), "{stderr}");
    assert!(run.join("checkpoint-000000002.safetensors").is_file(), "{stdout}");
    assert!(stdout.contains(&format!("resume with --resume {}", run.display())), "{stdout}");
    let (code, stdout, stderr) =
        wgrad(&["eval", "--weights", s(&run), "--device", "cpu", "--data-dir", s(&data), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["dataset"], "synthetic", "{v}");
    // Asked for another dataset, the resume is refused, naming it.
    let mut third = vec!["train", "--resume", s(&run), "--max-steps", "3", "--dataset", "cifar10"];
    third.extend(common);
    let (code, _, stderr) = wgrad(&third);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("dataset synthetic (this run: CIFAR-10)"), "{stderr}");
}

#[test]
fn predict_names_the_classes_of_the_dataset_it_is_told() {
    let dir = tempdir();
    let img = dir.join("pic.png");
    image::RgbImage::from_fn(30, 50, |x, y| image::Rgb([(x * 8) as u8, (y * 5) as u8, 90])).save(&img).unwrap();
    let weights = data_path("tudui_init.safetensors");
    let top3 = |stdout: &str| -> Vec<String> {
        let line = stdout.lines().next().unwrap_or_default();
        let list = line.split_once(": ").map_or("", |p| p.1);
        list.split(", ").map(|g| g.rsplit_once(' ').map_or(g, |p| p.0).to_string()).collect()
    };
    let (code, stdout, stderr) = wgrad(&["predict", "--weights", s(&weights), s(&img), "--device", "cpu"]);
    assert_eq!(code, 0, "{stderr}");
    let cifar = wgrad::data::DatasetKind::Cifar10.classes().unwrap();
    assert!(top3(&stdout).iter().all(|c| cifar.contains(&c.as_str())), "{stdout}");
    let args = ["predict", "--weights", s(&weights), s(&img), "--device", "cpu", "--dataset", "fashion-mnist"];
    let (code, stdout, stderr) = wgrad(&args);
    assert_eq!(code, 0, "{stderr}");
    let fashion = wgrad::data::DatasetKind::FashionMnist.classes().unwrap();
    let got = top3(&stdout);
    assert!(got.len() == 3 && got.iter().all(|c| fashion.contains(&c.as_str())), "{stdout}");
}

#[test]
fn check_takes_the_label_smoothing() {
    let dir = tempdir();
    let out = dir.join("out.safetensors");
    let weights = data_path("tudui_init.safetensors");
    let batch = data_path("tudui_batch1.safetensors");
    let args = ["check", "--device", "cpu", "--weights", s(&weights), "--batch", s(&batch), "--out", s(&out)];
    let (code, _, stderr) = wgrad(&[&args[..], &["--label-smoothing", "0.1"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let f = File::read(&out).unwrap();
    let (logits, loss) = (f.f32(&out, "logits.1").unwrap().1.to_vec(), f.f32(&out, "loss.1").unwrap().1[0]);
    let targets = File::read(&batch).unwrap().i64(&batch, "targets").unwrap().1.to_vec();
    let o = wgrad::ops::cross_entropy::Options { label_smoothing: 0.1, ..Default::default() };
    let n = targets.len();
    let t = wgrad::ops::cross_entropy::Targets::Class(&targets);
    let (want, _) = wgrad::ops::cross_entropy::forward_cpu(&logits, t, &o, (n, 10, 1));
    assert_close("check --label-smoothing 0.1: loss", &[loss], &want, 1e-6, 1e-7);
    let plain = wgrad::ops::cross_entropy::forward_cpu(&logits, t, &Default::default(), (n, 10, 1)).0;
    assert!((plain[0] - loss).abs() > 1e-3, "smoothed {loss} against plain {}", plain[0]);
    std::fs::remove_file(&out).unwrap();
    let (code, _, stderr) = wgrad(&[&args[..], &["--label-smoothing", "-0.1"]].concat());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("label_smoothing must be between 0.0 and 1.0, got -0.1"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn check_takes_the_class_weights() {
    let dir = tempdir();
    let out = dir.join("out.safetensors");
    let weights = data_path("tudui_init.safetensors");
    let batch = data_path("tudui_batch1.safetensors");
    let args = ["check", "--device", "cpu", "--weights", s(&weights), "--batch", s(&batch), "--out", s(&out)];
    let w: Vec<f32> = (1..=10).map(|c| c as f32 / 4.0).collect();
    let given = w.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
    let (code, _, stderr) = wgrad(&[&args[..], &["--class-weights", &given]].concat());
    assert_eq!(code, 0, "{stderr}");
    let f = File::read(&out).unwrap();
    let (logits, loss) = (f.f32(&out, "logits.1").unwrap().1.to_vec(), f.f32(&out, "loss.1").unwrap().1[0]);
    let targets = File::read(&batch).unwrap().i64(&batch, "targets").unwrap().1.to_vec();
    let o = wgrad::ops::cross_entropy::Options { weight: Some(w), ..Default::default() };
    let t = wgrad::ops::cross_entropy::Targets::Class(&targets);
    let (want, _) = wgrad::ops::cross_entropy::forward_cpu(&logits, t, &o, (targets.len(), 10, 1));
    assert_close("check --class-weights: loss", &[loss], &want, 1e-6, 1e-7);
    let plain = wgrad::ops::cross_entropy::forward_cpu(&logits, t, &Default::default(), (targets.len(), 10, 1)).0;
    assert!((plain[0] - loss).abs() > 1e-3, "weighted {loss} against plain {}", plain[0]);
    std::fs::remove_file(&out).unwrap();
    let (code, _, stderr) = wgrad(&[&args[..], &["--class-weights", "1,2,3"]].concat());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--class-weights: 3 weights given but the model gives 10 class scores"), "{stderr}");
    assert!(!out.exists());
}

/// `wgrad train` twice without --out: the second run gets runs/<model>-2 (saying so) instead of
/// mixing its checkpoints with the first's; --resume runs/<model> still continues the first.
#[test]
fn a_second_run_without_out_gets_a_folder_of_its_own() {
    let dir = tempdir();
    let train = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wgrad"))
            .args(["train", "--device", "cpu", "--dataset", "synthetic", "--batch-size", "8"])
            .args(extra)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = train(&["--max-steps", "2"]);
    assert!(!first.contains("out: "), "{first}");
    let second = train(&["--max-steps", "2"]);
    assert!(
        second.contains("out: runs/tudui-2 (runs/tudui holds an earlier run: --resume runs/tudui continues it)"),
        "{second}"
    );
    for d in ["runs/tudui", "runs/tudui-2"] {
        let ck = wgrad::io::checkpoint::latest(&dir.join(d)).unwrap();
        assert_eq!(wgrad::io::checkpoint::meta_of(&ck).unwrap().step, 2, "{d}");
    }
    train(&["--resume", "runs/tudui", "--max-steps", "3"]);
    let ck = wgrad::io::checkpoint::latest(&dir.join("runs/tudui")).unwrap();
    assert_eq!(wgrad::io::checkpoint::meta_of(&ck).unwrap().step, 3);
}

/// A checkpoint of a network of your own (trained by `train::Trainer`) is not taken for a built-in
/// one: eval and predict say which network it holds and how to load it.
#[test]
fn a_checkpoint_of_your_own_network_is_named_as_such() {
    use std::sync::{atomic::AtomicBool, Arc};
    use wgrad::nn::{Flatten, Linear, Model, Sequential, Tanh};
    let net = Sequential::new().add("flatten", Flatten::new()).add("act", Tanh).add("fc", Linear::new(3 * 32 * 32, 10));
    let model = Model::new(&net, [3, 32, 32], 0).unwrap();
    let test = Arc::new(wgrad::data::synthetic::generate(0, wgrad::data::Split::Test).unwrap());
    let cfg = wgrad::train::Config { max_steps: Some(2), ..wgrad::train::Config::new("my-net") };
    let out = tempdir();
    let mut t = wgrad::train::Trainer::new(wgrad::Device::Cpu, model, test.clone(), test, cfg, &out, None).unwrap();
    t.run(&AtomicBool::new(false), &mut wgrad::train::Quiet).unwrap();
    drop(t);
    for cmd in ["eval", "predict"] {
        let mut args = vec![cmd, "--device", "cpu", "--weights", out.to_str().unwrap()];
        if cmd == "predict" {
            args.push("picture.png");
        }
        let (code, _, err) = wgrad(&args);
        assert_eq!(code, 1, "{cmd}: {err}");
        assert!(
            err.contains("the checkpoint's network \"my-net\" is not one of wgrad's built-in networks (tudui, cifar-net, resnet20)"),
            "{cmd}: {err}"
        );
    }
}
