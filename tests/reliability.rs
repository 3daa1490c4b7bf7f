//! Regression tests for the second adversarial sweep (issue 17), through the `wgrad` binary as the
//! bugs were seen: outputs that are not regular files, start-up cleanup of others' files, pickle
//! bombs, short class lists, the CPU path's memory, non-finite checkpoints, two runs in one folder,
//! and the smaller cases. docs/RELIABILITY.md lists each with its behaviour before and after.

mod common;
use common::*;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn wgrad_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgrad"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wgrad(args: &[&str]) -> (i32, String, String) {
    wgrad_env(args, &[])
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `wgrad train` on the synthetic set (generated into `data`) on the CPU path.
fn train_args<'a>(data: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["train", "--device", "cpu", "--dataset", "synthetic", "--data-dir", s(data), "--out", s(out)];
    v.extend_from_slice(extra);
    v
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn check_args(out: &Path) -> Vec<String> {
    [
        "check",
        "--device",
        "cpu",
        "--weights",
        s(&data_path("tudui_init.safetensors")),
        "--batch",
        s(&data_path("tudui_batch1.safetensors")),
        "--out",
        s(out),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

fn run_check(out: &Path) -> (i32, String) {
    let args = check_args(out);
    let (code, _, stderr) = wgrad(&args.iter().map(|a| a.as_str()).collect::<Vec<_>>());
    (code, stderr)
}

// --- A. `--out` replaces whatever it names -------------------------------------------------------

#[test]
fn out_never_replaces_a_device_a_pipe_a_link_or_someone_elses_file() {
    use std::os::unix::fs::FileTypeExt;
    let d = tempdir();
    let fifo = d.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (code, err) = run_check(&fifo);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("fifo") && err.contains("a named pipe, not a regular file"), "{err}");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the pipe was replaced");

    let target = d.join("target.txt");
    std::fs::write(&target, "keep me").unwrap();
    let link = d.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (code, err) = run_check(&link);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a symbolic link, not a regular file"), "{err}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");

    // show's grid too.
    let (code, _, err) =
        wgrad(&["show", "--dataset", "synthetic", "--data-dir", s(&d.join("data")), "--out", s(&link)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a symbolic link"), "{err}");

    // A character device, as `mknod` makes one (root only: the sweep's `--out /dev/null` case).
    let dev = d.join("null");
    if Command::new("mknod").arg(&dev).args(["c", "1", "3"]).stderr(Stdio::null()).status().unwrap().success() {
        let (code, err) = run_check(&dev);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("a device, not a regular file"), "{err}");
        assert!(std::fs::symlink_metadata(&dev).unwrap().file_type().is_char_device(), "the device was replaced");
    } else {
        eprintln!("(not root: the character-device case is left to the pipe and the link)");
    }

    // A regular file is replaced (atomically) only if wgrad wrote it: check's and show's outputs
    // carry wgrad's mark, someone else's file is refused and left as it was.
    // (A state dict PyTorch wrote, and a file of a few bytes.)
    let plain = d.join("out.safetensors");
    let theirs = std::fs::read(data_path("tudui_init.safetensors")).unwrap();
    for bytes in [&theirs[..], b"old"] {
        std::fs::write(&plain, bytes).unwrap();
        let (code, err) = run_check(&plain);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("out.safetensors: refusing to replace it: it is not an output of `wgrad check`"), "{err}");
        assert_eq!(std::fs::read(&plain).unwrap(), bytes);
    }
    // Nor does check's output replace a training run's checkpoint (wgrad's, with another mark).
    let checkpoint = d.join("checkpoint-000000001.safetensors");
    let w = wgrad::io::safetensors::Array::F32 { shape: vec![1], data: vec![1.0] };
    let meta = [("wgrad.checkpoint".to_string(), "{}".to_string())].into();
    wgrad::io::safetensors::write(&checkpoint, &[("w".into(), w)], Some(meta)).unwrap();
    let before = std::fs::read(&checkpoint).unwrap();
    let (code, err) = run_check(&checkpoint);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing to replace it: it is not an output of `wgrad check`"), "{err}");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), before);
    let ours = d.join("ours.safetensors");
    for _ in 0..2 {
        let (code, err) = run_check(&ours);
        assert_eq!(code, 0, "{err}");
    }
    let grid = d.join("grid.png");
    std::fs::copy(d.join("ours.safetensors"), &grid).unwrap();
    let show =
        |out: &Path| wgrad(&["show", "--dataset", "synthetic", "--data-dir", s(&d.join("data")), "--out", s(out)]);
    let (code, _, err) = show(&grid);
    assert_eq!(code, 1, "a file that is not wgrad's PNG: {err}");
    assert!(err.contains("it is not a grid `wgrad show` wrote"), "{err}");
    std::fs::remove_file(&grid).unwrap();
    for _ in 0..2 {
        let (code, _, err) = show(&grid);
        assert_eq!(code, 0, "{err}");
    }
    // A run's curves are wgrad's PNG too, but not a grid: show leaves them be.
    let curves = d.join("curves.png");
    wgrad::plot::curves(&curves, &[], &[(1, 2.3), (2, 2.2)], 2).unwrap();
    let before = std::fs::read(&curves).unwrap();
    let (code, _, err) = show(&curves);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("it is not a grid `wgrad show` wrote"), "{err}");
    assert_eq!(std::fs::read(&curves).unwrap(), before);
}

// --- B. start-up cleanup deletes files it does not own --------------------------------------------

#[test]
fn train_removes_only_its_own_stale_temporaries_and_only_after_checking_arguments() {
    let d = tempdir();
    let (data, out) = (d.join("data"), d.join("run"));
    std::fs::create_dir_all(&out).unwrap();
    let live = format!(".checkpoint-000000009.safetensors.tmp{}-0", std::process::id());
    let keep = [".env.tmp", ".tmpfile", "notes.tmp", live.as_str()];
    for f in keep {
        std::fs::write(out.join(f), f).unwrap();
    }
    // A temporary of wgrad's, left by a process that no longer exists.
    let stale = ".checkpoint-000000001.safetensors.tmp4000000000-0";
    std::fs::write(out.join(stale), "stale").unwrap();

    // Bad arguments: nothing at all is touched.
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--epochs", "0"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--lr", "-1"]));
    assert_ne!(code, 0, "{err}");
    for f in keep.iter().chain([&stale]) {
        assert!(out.join(f).exists(), "{f} was removed by a run that never started: {:?}", files_in(&out));
    }

    // A run: only the stale temporary goes; everything else, the live process's included, stays.
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--batch-size", "8", "--max-steps", "1"]));
    assert_eq!(code, 0, "{err}");
    for f in keep {
        assert_eq!(std::fs::read_to_string(out.join(f)).unwrap(), f, "{f} was touched");
    }
    assert!(!out.join(stale).exists(), "the stale temporary stayed: {:?}", files_in(&out));
}

/// A run writes steps.csv, metrics.json, metrics.csv, curves.png and checkpoints into `--out`: into
/// a folder no wgrad run has used, files of those names are someone else's and are never replaced;
/// into one holding another run's checkpoints, only that run continues (--resume).
#[test]
fn train_never_replaces_someone_elses_files_or_another_runs_checkpoints() {
    let d = tempdir();
    let (data, out) = (d.join("data"), d.join("project"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("steps.csv"), "mine").unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--batch-size", "8", "--max-steps", "1"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("project") && err.contains("steps.csv") && err.contains("--out"), "{err}");
    assert_eq!(files_in(&out), ["notes.txt", "steps.csv"], "the refused run wrote into the folder");
    assert_eq!(std::fs::read_to_string(out.join("steps.csv")).unwrap(), "mine");

    // Other files do not stand in the way, and the folder is the run's from then on: --resume
    // continues it there.
    std::fs::remove_file(out.join("steps.csv")).unwrap();
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--batch-size", "8", "--max-steps", "1"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--resume", s(&out), "--max-steps", "2"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");

    // A fresh run there is refused: its checkpoints would be pruned in favour of the earlier run's
    // (later steps), which --resume would then take up. Nothing is touched.
    let before = files_in(&out);
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--batch-size", "8", "--max-steps", "1"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("another run's checkpoints (the newest: checkpoint-000000002.safetensors)")
            && err.contains(&format!("--resume {}", s(&out))),
        "{err}"
    );
    assert_eq!(files_in(&out), before);

    // A run's checkpoints copied into a fresh folder resume there.
    let copy = d.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in files_in(&out).iter().filter(|f| f.starts_with("checkpoint-")) {
        std::fs::copy(out.join(f), copy.join(f)).unwrap();
    }
    let (code, _, err) =
        wgrad(&["train", "--device", "cpu", "--data-dir", s(&data), "--resume", s(&copy), "--max-steps", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(copy.join("checkpoint-000000003.safetensors").exists(), "{:?}", files_in(&copy));
}

// --- C. the pickle guard undercounts lists memoized before they are filled ------------------------

/// A copy of the Python 3 CIFAR-10 fixture whose test_batch is `test_batch`.
fn cifar_py3_with(test_batch: &[u8]) -> TestDir {
    let d = tempdir();
    let src = data_path("cifar10/py3/cifar-10-batches-py");
    let dst = d.join("cifar-10-batches-py");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(dst.join("test_batch"), test_batch).unwrap();
    d
}

#[test]
fn a_pickle_bomb_of_memo_references_is_refused_without_allocating() {
    // A list memoized before it is filled (as Python writes lists), then a list of 100,000
    // references to it: 10^10 values from 400 KB.
    let mut bomb = b"\x80\x02}(U\x04data]q\x00(".to_vec();
    bomb.extend(b"K\x01".repeat(100_000));
    bomb.extend(b"e0]q\x01(");
    bomb.extend(b"h\x00".repeat(100_000));
    bomb.extend(b"eu.");
    assert!(bomb.len() < 410_000);
    let d = cifar_py3_with(&bomb);
    let t = std::time::Instant::now();
    let (code, _, err) = wgrad(&[
        "eval",
        "--device",
        "cpu",
        "--weights",
        s(&data_path("tudui_init.safetensors")),
        "--dataset",
        "cifar10",
        "--data-dir",
        s(&d),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("test_batch") && err.contains("not a readable pickle"), "{err}");
    assert!(err.contains("more than") && err.contains("values"), "{err}");
    assert!(t.elapsed().as_secs() < 30, "took {:?}", t.elapsed());

    // The same bomb in any opcode order: references to a list filled later.
    let mut later = b"\x80\x02}(U\x04data](q\x00".to_vec();
    later.extend(b"h\x00".repeat(1000));
    later.extend(b"e.");
    let e = wgrad::data::cifar10::parse_pickle(Path::new("x"), &later).unwrap_err().to_string();
    assert!(e.contains("not a readable pickle"), "{e}");
}

// --- D. `show` panics on a Python-layout batches.meta with 3 class names --------------------------

#[test]
fn a_class_list_of_the_wrong_length_is_an_error_not_a_panic() {
    let d = cifar_py3_with(&std::fs::read(data_path("cifar10/py3/cifar-10-batches-py/test_batch")).unwrap());
    // pickle.dumps({b'label_names': [b'a', b'b', b'c'], b'num_cases_per_batch': 10000}, protocol=2)
    let meta = b"\x80\x02}q\x00(U\x0blabel_namesq\x01]q\x02(U\x01aq\x03U\x01bq\x04U\x01cq\x05eU\x13num_cases_per_batchq\x06M\x10'u.";
    std::fs::write(d.join("cifar-10-batches-py/batches.meta"), meta).unwrap();
    let (code, _, err) = wgrad(&["show", "--dataset", "cifar10", "--data-dir", s(&d), "--out", s(&d.join("grid.png"))]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("batches.meta") && err.contains("expected 10 class names") && err.contains("found 3"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!d.join("grid.png").exists());
}

// --- E. the CPU path aborts instead of erroring on sizes it cannot allocate -----------------------

/// Runs the binary under an address-space limit (`ulimit -v`, in KiB), as the sweep did.
fn wgrad_limited(kib: u64, args: &[&str]) -> (i32, String) {
    let line = format!("ulimit -v {kib} && exec \"$0\" \"$@\"");
    let out = Command::new("sh").arg("-c").arg(line).arg(env!("CARGO_BIN_EXE_wgrad")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_cpu_path_says_what_it_needs_and_which_batch_fits_instead_of_aborting() {
    let d = tempdir();
    let (data, out) = (d.join("data"), d.join("run"));
    // Generate the synthetic set first, without a limit.
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--batch-size", "8", "--max-steps", "1"]));
    assert_eq!(code, 0, "{err}");
    let (code, err) =
        wgrad_limited(3_000_000, &train_args(&data, &d.join("big"), &["--batch-size", "10000", "--max-steps", "1"]));
    assert_eq!(code, 1, "killed or aborted (exit {code}): {err}");
    assert!(err.contains("the CPU path needs") && err.contains("for a batch of 10000"), "{err}");
    assert!(err.contains("ulimit -v") && err.contains("a batch size of about"), "{err}");
    // The suggestion is one that runs under the same limit.
    let fits: u64 =
        err.split("a batch size of about ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((1000..10000).contains(&fits), "{err}");
    let fits = fits.to_string();
    let (code, err) =
        wgrad_limited(3_000_000, &train_args(&data, &d.join("fits"), &["--batch-size", &fits, "--max-steps", "1"]));
    assert_eq!(code, 0, "the suggested batch size {fits} does not run: {err}");

    let (code, err) = wgrad_limited(3_000_000, &["bench", "--device", "cpu", "--batch-sizes", "100000"]);
    assert_eq!(code, 1, "killed or aborted (exit {code}): {err}");
    assert!(err.contains("for a batch of 100000") && err.contains("a batch size of about"), "{err}");
}

// --- F. non-finite weights are checkpointed -------------------------------------------------------

fn all_finite(ck: &Path) -> bool {
    let f = wgrad::io::safetensors::File::read(ck).unwrap();
    f.tensors.values().all(|a| match a {
        wgrad::io::safetensors::Array::F32 { data, .. } => data.iter().all(|v| v.is_finite()),
        _ => true,
    })
}

#[test]
fn a_checkpoint_is_never_written_with_non_finite_weights() {
    let d = tempdir();
    let (data, out) = (d.join("data"), d.join("run"));
    let boom = ["--batch-size", "8", "--lr", "1e30", "--weight-decay", "1e30"];
    let mut args = boom.to_vec();
    args.extend(["--max-steps", "1"]);
    let (code, _, err) = wgrad(&train_args(&data, &out, &args));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no longer finite") && err.contains("no checkpoint of this run was written"), "{err}");
    assert!(wgrad::io::checkpoint::latest(&out).is_none(), "{:?}", files_in(&out));

    // With a checkpoint every step: two good steps, then a step LR schedule that multiplies the
    // learning rate by 1e41 (0.01 × 1e41 is Inf in f32) at step 3. The step-2 checkpoint is named
    // and kept.
    let out = d.join("run2");
    let (code, _, err) = wgrad(&train_args(
        &data,
        &out,
        &["--batch-size", "8", "--lr-schedule", "step", "--lr-step-size", "2", "--lr-gamma", "1e41"]
            .into_iter()
            .chain(["--checkpoint-every", "1", "--max-steps", "6"])
            .collect::<Vec<_>>(),
    ));
    assert_eq!(code, 1, "{err}");
    let good = out.join("checkpoint-000000002.safetensors");
    assert!(
        err.contains("at step 3") && err.contains(&format!("the last good checkpoint is {}", good.display())),
        "{err}"
    );
    assert_eq!(wgrad::io::checkpoint::latest(&out).unwrap(), good, "{:?}", files_in(&out));
    for f in files_in(&out).iter().filter(|f| f.ends_with(".safetensors")) {
        assert!(all_finite(&out.join(f)), "{f} holds non-finite values");
    }
}

// --- G. two runs can share --out -------------------------------------------------------------------

fn spawn_train(data: &Path, out: &Path, signal_ready: bool) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args(train_args(data, out, &["--batch-size", "16", "--epochs", "50"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    if signal_ready {
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    }
    (child, first)
}

fn signal(child: &std::process::Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

#[test]
fn a_second_run_on_the_same_folder_is_refused_naming_the_first() {
    let d = tempdir();
    let (data, out) = (d.join("data"), d.join("run"));
    let (code, _, err) = wgrad(&train_args(&data, &d.join("warm"), &["--max-steps", "1"]));
    assert_eq!(code, 0, "{err}");
    let (mut first, line) = spawn_train(&data, &out, true);
    assert!(line.starts_with("training tudui"), "{line}");
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--max-steps", "1"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("another wgrad run is using this folder"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    // Resuming into the folder is refused too.
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--resume", s(&out), "--max-steps", "100000"]));
    assert_ne!(code, 0, "{err}");
    signal(&first, "-INT");
    assert_eq!(first.wait().unwrap().code(), Some(0));
    // The lock goes with the process: the folder is free again, even after a SIGKILL.
    let (mut again, _) = spawn_train(&data, &out, true);
    again.kill().unwrap();
    again.wait().unwrap();
    let step = wgrad::io::checkpoint::meta_of(&wgrad::io::checkpoint::latest(&out).unwrap()).unwrap().step;
    let next = (step + 1).to_string();
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--resume", s(&out), "--max-steps", &next]));
    assert_eq!(code, 0, "{err}");
}

// --- smaller ones ----------------------------------------------------------------------------------

#[test]
fn eval_refuses_weights_holding_nan_naming_the_tensor() {
    let d = tempdir();
    let mut m = wgrad::models::tudui(0);
    wgrad::io::state_dict::load_into(&data_path("tudui_init.safetensors"), &mut m.params).unwrap();
    let mut t = wgrad::io::state_dict::tensors(&m.params, "");
    let i = t.iter().position(|(k, _)| k == "model1.conv2.bias").unwrap();
    if let wgrad::io::safetensors::Array::F32 { data, .. } = &mut t[i].1 {
        data[3] = f32::NAN;
    }
    let p = d.join("nan.safetensors");
    wgrad::io::safetensors::write(&p, &t, None).unwrap();
    for device in ["cpu", "auto"] {
        let (code, _, err) = wgrad(&[
            "eval",
            "--device",
            device,
            "--weights",
            s(&p),
            "--dataset",
            "synthetic",
            "--data-dir",
            s(&d.join("data")),
        ]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("model1.conv2.bias") && err.contains("NaN or infinite"), "{err}");
    }
    // predict, and a resumed run from a checkpoint edited to hold NaN.
    let png = d.join("a.png");
    write_png(&png, 1);
    let (code, _, err) = wgrad(&["predict", "--device", "cpu", "--weights", s(&p), s(&png)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("model1.conv2.bias"), "{err}");
    let (data, out) = (d.join("data"), d.join("run"));
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--batch-size", "8", "--max-steps", "1"]));
    assert_eq!(code, 0, "{err}");
    let ck = wgrad::io::checkpoint::latest(&out).unwrap();
    let mut f = wgrad::io::safetensors::File::read(&ck).unwrap();
    if let Some(wgrad::io::safetensors::Array::F32 { data, .. }) = f.tensors.get_mut("model1.fc1.weight") {
        data[0] = f32::INFINITY;
    }
    let t: Vec<_> = f.tensors.into_iter().collect();
    wgrad::io::safetensors::write(&ck, &t, Some(f.metadata)).unwrap();
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--resume", s(&out), "--max-steps", "2"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("model1.fc1.weight holds NaN or infinite values"), "{err}");
}

fn idx(magic: u8, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, magic];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn fashion_eval(dir: &Path) -> (i32, String, String) {
    wgrad(&[
        "eval",
        "--device",
        "cpu",
        "--model",
        "cifar-net",
        "--weights",
        s(&data_path("cifar_net_init.safetensors")),
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        s(dir),
    ])
}

#[test]
fn fashion_mnist_reads_every_gzip_member_and_refuses_an_empty_split() {
    let d = tempdir();
    let pixels: Vec<u8> = (0..2 * 784).map(|i| (i % 251) as u8).collect();
    let images = idx(3, &[2, 28, 28], &pixels);
    // Two members, as `cat a.gz b.gz` makes.
    let mut two = gz(&images[..16 + 784]);
    two.extend(gz(&images[16 + 784..]));
    let multi = d.join("multi");
    std::fs::create_dir_all(&multi).unwrap();
    std::fs::write(multi.join("t10k-images-idx3-ubyte.gz"), &two).unwrap();
    std::fs::write(multi.join("t10k-labels-idx1-ubyte.gz"), gz(&idx(1, &[2], &[3, 7]))).unwrap();
    let (code, out, err) = fashion_eval(&multi);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(2 images)"), "{out}");
    let one =
        wgrad::data::load(wgrad::data::DatasetKind::FashionMnist, &multi, wgrad::data::Split::Test, false).unwrap();
    assert_eq!(one.len(), 2);

    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("t10k-images-idx3-ubyte.gz"), gz(&idx(3, &[0, 28, 28], &[]))).unwrap();
    std::fs::write(empty.join("t10k-labels-idx1-ubyte.gz"), gz(&idx(1, &[0], &[]))).unwrap();
    let (code, out, err) = fashion_eval(&empty);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("holds no images"), "{err}");
}

#[test]
fn epochs_and_max_steps_mean_what_they_say() {
    let d = tempdir();
    let (data, out) = (d.join("data"), d.join("run"));
    for (flag, value) in [("--epochs", "0"), ("--max-steps", "0"), ("--checkpoint-every", "0")] {
        let (code, _, err) = wgrad(&train_args(&data, &out, &[flag, value]));
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(err.contains(flag) && err.contains("0"), "{err}");
    }
    assert!(!out.exists(), "a refused run made its folder");
    let (code, stdout, err) = wgrad(&train_args(&data, &out, &["--batch-size", "8", "--max-steps", "3"]));
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("stopped at --max-steps 3"), "{stdout}");
    let ck = wgrad::io::checkpoint::latest(&out).unwrap();
    assert_eq!(wgrad::io::checkpoint::meta_of(&ck).unwrap().step, 3);
    // --max-steps counts the resumed steps: at step 3, --max-steps 2 has nothing to do.
    let (code, _, err) = wgrad(&train_args(&data, &out, &["--resume", s(&out), "--max-steps", "2"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("at step 3, already at --max-steps 2"), "{err}");
    assert_eq!(wgrad::io::checkpoint::latest(&out).unwrap(), ck);
    let (code, stdout, err) = wgrad(&train_args(&data, &out, &["--resume", s(&out), "--max-steps", "4"]));
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("stopped at --max-steps 4"), "{stdout}");
    let ck = wgrad::io::checkpoint::latest(&out).unwrap();
    assert_eq!(wgrad::io::checkpoint::meta_of(&ck).unwrap().step, 4);
}

#[test]
fn an_out_that_cannot_be_written_is_refused_before_training() {
    let d = tempdir();
    let data = d.join("data");
    let file = d.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let t = std::time::Instant::now();
    let (code, stdout, err) = wgrad(&train_args(&data, &file, &["--batch-size", "8"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a-file") && err.contains("a regular file, not a directory"), "{err}");
    assert!(!stdout.contains("epoch"), "it trained first: {stdout}");
    assert!(t.elapsed().as_secs() < 60);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a folder");
    // A folder under a file cannot be made either.
    let (code, _, err) = wgrad(&train_args(&data, &file.join("run"), &["--batch-size", "8"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a-file/run") && err.contains("Not a directory"), "{err}");
}

#[test]
fn device_flags_and_environment_share_one_case_insensitive_parser() {
    let weights = data_path("tudui_init.safetensors");
    let batch = data_path("tudui_batch1.safetensors");
    let d = tempdir();
    let out = d.join("out.safetensors");
    let args = ["check", "--weights", s(&weights), "--batch", s(&batch), "--out", s(&out)];
    for (k, v) in [("WGRAD_DEVICE", "CPU"), ("WGRAD_DEVICE", "Cpu"), ("WGRAD_BACKEND", "VULKAN")] {
        let mut env = vec![(k, v)];
        if k == "WGRAD_BACKEND" {
            env.push(("WGRAD_DEVICE", "cpu"));
        }
        let (code, _, err) = wgrad_env(&args, &env);
        assert_eq!(code, 0, "{k}={v}: {err}");
        assert!(err.contains("CPU path"), "{k}={v}: {err}");
    }
    // Empty means the default, as for the library's parser.
    let (code, _, err) = wgrad_env(&["devices"], &[("WGRAD_DEVICE", ""), ("WGRAD_BACKEND", "")]);
    assert_eq!(code, 0, "{err}");
    let mut a = args.to_vec();
    a.extend(["--device", "CPU"]);
    let (code, _, err) = wgrad(&a);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = wgrad_env(&args, &[("WGRAD_DEVICE", "tpu")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tpu") && err.contains("auto, gpu or cpu"), "{err}");
    for v in ["", "Cpu", "GPU", "auto"] {
        assert!(wgrad::device::parse_device_kind(v).is_ok(), "{v:?}");
    }
}

fn write_png(path: &Path, seed: u8) {
    let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, seed]));
    img.save(path).unwrap();
}

fn predict_lines(device: &str, images: &[PathBuf]) -> Vec<String> {
    let mut args = vec!["predict".to_string(), "--device".into(), device.into(), "--weights".into()];
    args.push(s(&data_path("tudui_init.safetensors")).into());
    args.extend(images.iter().map(|p| s(p).to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_wgrad")).args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

#[test]
fn predict_takes_any_number_of_images_in_batches_that_fit() {
    let d = tempdir();
    let pics: Vec<PathBuf> = (0..3u8)
        .map(|i| {
            let p = d.join(format!("p{i}.png"));
            write_png(&p, i * 90);
            p
        })
        .collect();
    // 1,100 images: over a 128 MiB binding in one batch (Tudui's first conv output alone is 144 MB).
    let many: Vec<PathBuf> = (0..1100).map(|i| pics[i % 3].clone()).collect();
    let few = predict_lines("cpu", &pics);
    let cpu = predict_lines("cpu", &many);
    assert_eq!(cpu.len(), 1100);
    for (i, line) in cpu.iter().enumerate() {
        assert_eq!(line, &few[i % 3], "image {i}");
    }
    if gpu().is_some() {
        let gpu_lines = predict_lines("gpu", &many);
        assert_eq!(gpu_lines.len(), 1100);
        // The same ranking as the CPU path (probabilities are printed rounded).
        for (g, c) in gpu_lines.iter().zip(&cpu) {
            let classes = |l: &str| {
                l.split_whitespace()
                    .filter(|w| w.chars().all(char::is_alphabetic))
                    .map(String::from)
                    .collect::<Vec<_>>()
            };
            assert_eq!(classes(g), classes(c), "{g} vs {c}");
        }
    }
}

#[test]
fn sigterm_saves_at_a_step_boundary_like_ctrl_c() {
    let d = tempdir();
    let (data, out) = (d.join("data"), d.join("run"));
    let (code, _, err) = wgrad(&train_args(&data, &d.join("warm"), &["--max-steps", "1"]));
    assert_eq!(code, 0, "{err}");
    let (mut child, first) = spawn_train(&data, &out, true);
    assert!(first.starts_with("training tudui"), "{first}");
    std::thread::sleep(std::time::Duration::from_millis(700));
    signal(&child, "-TERM");
    let mut rest = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{rest}");
    assert!(rest.contains("terminated at step") || rest.contains("interrupted at step"), "{rest}");
    let ck = wgrad::io::checkpoint::latest(&out).expect("a checkpoint saved on SIGTERM");
    wgrad::io::checkpoint::load(&ck, &wgrad::models::tudui(0).params).unwrap();
}

#[test]
fn an_image_declaring_a_huge_size_is_refused_before_decoding() {
    let d = tempdir();
    // A small JPEG whose frame header then claims 10000×10000.
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(8, 8, image::Rgb([10, 200, 30]))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
        .unwrap();
    let sof = bytes.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    bytes[sof + 5..sof + 9].copy_from_slice(&[0x27, 0x10, 0x27, 0x10]);
    assert!(bytes.len() < 1000);
    let p = d.join("huge.jpg");
    std::fs::write(&p, &bytes).unwrap();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kib=%M", env!("CARGO_BIN_EXE_wgrad"), "predict", "--device", "cpu", "--weights"])
        .arg(data_path("tudui_init.safetensors"))
        .arg(&p)
        .output();
    let (code, err) = match out {
        Ok(o) => (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(_) => {
            let (c, _, e) =
                wgrad(&["predict", "--device", "cpu", "--weights", s(&data_path("tudui_init.safetensors")), s(&p)]);
            (c, e)
        }
    };
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("huge.jpg") && err.contains("10000×10000") && err.contains("over the limit"), "{err}");
    if let Some(kib) = err.split("maxrss_kib=").nth(1) {
        let kib: u64 = kib.trim().parse().unwrap();
        assert!(kib < 200_000, "peak memory {kib} KiB");
    }
}
