//! Bad input, the way a user meets it, through the `wgrad` binary: every case must exit non-zero
//! with one clear message naming the problem and the file or flag, never panic, and leave no
//! output file (or temporary file) behind.

mod common;
use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Case {
    name: &'static str,
    args: Vec<String>,
    /// Every one of these must appear in stderr.
    expect: Vec<&'static str>,
    /// Must not exist afterwards (nor any temporary file next to it).
    no_output: Option<PathBuf>,
}

fn case(name: &'static str, args: &[&str], expect: &[&'static str]) -> Case {
    Case { name, args: args.iter().map(|s| s.to_string()).collect(), expect: expect.to_vec(), no_output: None }
}

/// A safetensors file from a raw JSON header and data.
fn safetensors_raw(path: &Path, header: &str, data: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.write_all(data).unwrap();
}

fn write_tensors(path: &Path, t: &[(String, Vec<usize>, Vec<f32>)]) {
    wgrad::io::safetensors::write_f32(path, t, None).unwrap();
}

/// A batch file: images (N, 3, 32, 32) f32 and targets (N,) i64, through raw safetensors.
fn batch(path: &Path, n: usize, images: Vec<f32>, targets: &[i64]) {
    let img: Vec<u8> = images.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tg: Vec<u8> = targets.iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = format!(
        r#"{{"images":{{"dtype":"F32","shape":[{n},3,32,32],"data_offsets":[0,{}]}},"targets":{{"dtype":"I64","shape":[{}],"data_offsets":[{},{}]}}}}"#,
        img.len(),
        targets.len(),
        img.len(),
        img.len() + tg.len()
    );
    let mut data = img;
    data.extend(tg);
    safetensors_raw(path, &header, &data);
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn every_bad_input_is_one_clear_error() {
    let d = tempdir();
    let p = |n: &str| d.join(n);
    let s = |x: &PathBuf| x.to_str().unwrap().to_string();
    let sd = data_path("tudui_init.safetensors");
    let b1 = data_path("tudui_batch1.safetensors");
    let tudui = wgrad::models::tudui(0);
    // Tudui's state dict holds f32 tensors only.
    let good: Vec<(String, Vec<usize>, Vec<f32>)> = wgrad::io::state_dict::tensors(&tudui.params, "")
        .into_iter()
        .map(|(k, a)| match a {
            wgrad::io::safetensors::Array::F32 { shape, data } => (k, shape, data),
            other => panic!("{k}: {}", other.dtype()),
        })
        .collect();

    // --- files to break ---
    std::fs::write(p("empty.safetensors"), b"").unwrap();
    std::fs::write(p("text.safetensors"), b"this is not a safetensors file at all").unwrap();
    let bytes = std::fs::read(&sd).unwrap();
    std::fs::write(p("truncated.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let mut long_header = bytes.clone();
    long_header[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(p("header_too_long.safetensors"), &long_header).unwrap();
    safetensors_raw(
        &p("overlap.safetensors"),
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        &[0; 12],
    );
    safetensors_raw(
        &p("past_end.safetensors"),
        r#"{"model1.fc2.bias":{"dtype":"F32","shape":[10],"data_offsets":[0,40]}}"#,
        &[0; 16],
    );
    safetensors_raw(
        &p("unknown_dtype.safetensors"),
        r#"{"model1.fc2.bias":{"dtype":"Q7","shape":[10],"data_offsets":[0,40]}}"#,
        &[0; 40],
    );
    let mut no_bias = good.clone();
    no_bias.retain(|t| t.0 != "model1.fc2.bias");
    write_tensors(&p("missing_fc2_bias.safetensors"), &no_bias);
    {
        // The same state dict with fc2.bias stored as I32 (floats of any width would be read as
        // F32, as load_state_dict converts them).
        let path = p("i32.safetensors");
        let mut views = Vec::new();
        let data: Vec<Vec<u8>> = no_bias.iter().map(|t| t.2.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
        for (t, b) in no_bias.iter().zip(&data) {
            views.push((
                t.0.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.1.clone(), b).unwrap(),
            ));
        }
        let ints = vec![0u8; 40];
        views.push((
            "model1.fc2.bias".into(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![10], &ints).unwrap(),
        ));
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    }
    let mut wrong_shape = good.clone();
    wrong_shape[0] = ("model1.conv1.weight".into(), vec![32, 3, 3, 3], vec![0.0; 32 * 27]);
    write_tensors(&p("wrong_shape.safetensors"), &wrong_shape);
    let mut extra = good.clone();
    extra.push(("model1.fc3.weight".into(), vec![2], vec![0.0; 2]));
    write_tensors(&p("extra_key.safetensors"), &extra);
    std::fs::create_dir_all(p("a_directory.safetensors")).unwrap();
    std::fs::create_dir_all(p("empty_run")).unwrap();

    batch(
        &p("nan_batch.safetensors"),
        2,
        {
            let mut v = vec![0.5f32; 2 * 3072];
            v[77] = f32::NAN;
            v
        },
        &[1, 2],
    );
    batch(&p("label_batch.safetensors"), 2, vec![0.5f32; 2 * 3072], &[1, 12]);
    write_tensors(&p("no_targets.safetensors"), &[("images".into(), vec![1, 3, 32, 32], vec![0.0; 3072])]);
    write_tensors(&p("bad_images.safetensors"), &[("images".into(), vec![1, 3, 28, 28], vec![0.0; 3 * 784])]);

    // CIFAR-10 layouts to break.
    let cifar_trunc = p("cifar_trunc");
    let cifar_label = p("cifar_label");
    let cifar_pickle = p("cifar_pickle");
    let cifar_nodata = p("cifar_nodata");
    for (dir, kind) in [(&cifar_trunc, "bin"), (&cifar_label, "bin"), (&cifar_pickle, "py3"), (&cifar_nodata, "py3")] {
        let src = data_path("cifar10").join(kind);
        let folder = std::fs::read_dir(&src).unwrap().next().unwrap().unwrap().path();
        let to = dir.join(folder.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&folder).unwrap() {
            let f = e.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    let tb = cifar_trunc.join("cifar-10-batches-bin/test_batch.bin");
    let b = std::fs::read(&tb).unwrap();
    std::fs::write(&tb, &b[..b.len() - 10]).unwrap();
    let tb = cifar_label.join("cifar-10-batches-bin/test_batch.bin");
    let mut b = std::fs::read(&tb).unwrap();
    b[3073] = 200;
    std::fs::write(&tb, &b).unwrap();
    let tp = cifar_pickle.join("cifar-10-batches-py/test_batch");
    let b = std::fs::read(&tp).unwrap();
    std::fs::write(&tp, &b[..b.len() / 3]).unwrap();
    std::fs::write(cifar_nodata.join("cifar-10-batches-py/test_batch"), b"\x80\x02}q\x00.").unwrap();

    // Fashion-MNIST folders to break.
    let fm = |name: &str, images: Vec<u8>, labels: Vec<u8>| {
        let dir = p(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), images).unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), labels).unwrap();
        dir
    };
    let idx = |magic: u8, dims: &[u32], n: usize| {
        let mut v = vec![0, 0, 8, magic];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(vec![1u8; n]);
        v
    };
    let labels_ok = gz(&idx(1, &[2], 2));
    let fm_magic = fm("fm_magic", gz(&idx(9, &[2, 28, 28], 2 * 784)), labels_ok.clone());
    let fm_len = fm("fm_len", gz(&idx(3, &[3, 28, 28], 2 * 784)), labels_ok.clone());
    let full = gz(&idx(3, &[2, 28, 28], 2 * 784));
    let fm_cut = fm("fm_cut", full[..full.len() / 2].to_vec(), labels_ok.clone());
    let fm_label = fm(
        "fm_label",
        gz(&idx(3, &[2, 28, 28], 2 * 784)),
        gz(&{
            let mut v = idx(1, &[2], 2);
            v[9] = 10;
            v
        }),
    );

    // Images to break.
    std::fs::write(p("not_image.png"), b"hello, I am text").unwrap();
    std::fs::write(p("empty.png"), b"").unwrap();
    let mut huge = Vec::new();
    image::RgbImage::new(4, 4).write_to(&mut std::io::Cursor::new(&mut huge), image::ImageFormat::Png).unwrap();
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    std::fs::write(p("huge.png"), &huge).unwrap();
    let mut png = Vec::new();
    image::RgbImage::new(40, 40).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    std::fs::write(p("truncated.png"), &png[..png.len() / 2]).unwrap();

    let out = p("out.safetensors");
    let out_s = s(&out);
    let check = |weights: &str, batch_file: &str| -> Vec<String> {
        ["check", "--device", "cpu", "--weights", weights, "--batch", batch_file, "--out", &out_s]
            .iter()
            .map(|x| x.to_string())
            .collect()
    };
    let sds = |n: &str| s(&p(n));
    let b1s = s(&b1);
    let sd_s = s(&sd);
    let mut cases: Vec<Case> = vec![
        // check: state dicts
        Case {
            name: "missing weights file",
            args: check(&sds("nope.safetensors"), &b1s),
            expect: vec!["nope.safetensors", "cannot read"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "empty weights file",
            args: check(&sds("empty.safetensors"), &b1s),
            expect: vec!["empty.safetensors", "not a valid safetensors"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "text as weights",
            args: check(&sds("text.safetensors"), &b1s),
            expect: vec!["text.safetensors", "not a valid safetensors"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "truncated weights",
            args: check(&sds("truncated.safetensors"), &b1s),
            expect: vec!["truncated.safetensors", "not a valid safetensors"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "header length past the end",
            args: check(&sds("header_too_long.safetensors"), &b1s),
            expect: vec!["header_too_long.safetensors", "not a valid safetensors"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "overlapping offsets",
            args: check(&sds("overlap.safetensors"), &b1s),
            expect: vec!["overlap.safetensors", "not a valid safetensors"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "offsets past the end",
            args: check(&sds("past_end.safetensors"), &b1s),
            expect: vec!["past_end.safetensors", "not a valid safetensors"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "unknown dtype",
            args: check(&sds("unknown_dtype.safetensors"), &b1s),
            expect: vec!["unknown_dtype.safetensors", "not a valid safetensors"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "non-float dtype",
            args: check(&sds("i32.safetensors"), &b1s),
            expect: vec!["i32.safetensors", "model1.fc2.bias has dtype I32"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "missing key",
            args: check(&sds("missing_fc2_bias.safetensors"), &b1s),
            expect: vec!["missing key model1.fc2.bias"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "wrong shape",
            args: check(&sds("wrong_shape.safetensors"), &b1s),
            expect: vec!["model1.conv1.weight has shape [32, 3, 3, 3]"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "extra key",
            args: check(&sds("extra_key.safetensors"), &b1s),
            expect: vec!["unexpected key model1.fc3.weight"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "a directory as weights",
            args: check(&sds("a_directory.safetensors"), &b1s),
            expect: vec!["a_directory.safetensors"],
            no_output: Some(out.clone()),
        },
        // check: batches
        Case {
            name: "missing batch",
            args: check(&sd_s, &sds("nobatch.safetensors")),
            expect: vec!["nobatch.safetensors", "cannot read"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "NaN in images",
            args: check(&sd_s, &sds("nan_batch.safetensors")),
            expect: vec!["nan_batch.safetensors", "non-finite value at flat index 77"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "label out of range",
            args: check(&sd_s, &sds("label_batch.safetensors")),
            expect: vec!["target 12 at index 1"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "batch without targets",
            args: check(&sd_s, &sds("no_targets.safetensors")),
            expect: vec!["no_targets.safetensors", "no tensor named targets"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "images of the wrong shape",
            args: check(&sd_s, &sds("bad_images.safetensors")),
            expect: vec!["bad_images.safetensors", "(N, 3, 32, 32)"],
            no_output: Some(out.clone()),
        },
        Case {
            name: "negative lr for check",
            args: {
                let mut a = check(&sd_s, &b1s);
                a.extend(["--lr".into(), "-0.5".into()]);
                a
            },
            expect: vec!["lr must be a finite number >= 0"],
            no_output: Some(out.clone()),
        },
        // eval: datasets
        case(
            "CIFAR .bin truncated",
            &["eval", "--device", "cpu", "--weights", &sd_s, "--dataset", "cifar10", "--data-dir", &s(&cifar_trunc)],
            &["test_batch.bin", "3073"],
        ),
        case(
            "CIFAR label >= 10",
            &["eval", "--device", "cpu", "--weights", &sd_s, "--dataset", "cifar10", "--data-dir", &s(&cifar_label)],
            &["test_batch.bin", "record 1", "label 200"],
        ),
        case(
            "CIFAR pickle truncated",
            &["eval", "--device", "cpu", "--weights", &sd_s, "--dataset", "cifar10", "--data-dir", &s(&cifar_pickle)],
            &["test_batch", "not a readable pickle"],
        ),
        case(
            "CIFAR pickle without data",
            &["eval", "--device", "cpu", "--weights", &sd_s, "--dataset", "cifar10", "--data-dir", &s(&cifar_nodata)],
            &["test_batch", "no b'data'"],
        ),
        case(
            "no CIFAR-10 at all",
            &["eval", "--device", "cpu", "--weights", &sd_s, "--dataset", "cifar10", "--data-dir", &sds("nowhere")],
            &["nowhere", "no CIFAR-10 here"],
        ),
        case(
            "IDX wrong magic",
            &["eval", "--device", "cpu", "--weights", &sd_s, "--dataset", "fashion-mnist", "--data-dir", &s(&fm_magic)],
            &["t10k-images-idx3-ubyte.gz", "magic"],
        ),
        case(
            "IDX length contradicts header",
            &["eval", "--device", "cpu", "--weights", &sd_s, "--dataset", "fashion-mnist", "--data-dir", &s(&fm_len)],
            &["t10k-images-idx3-ubyte.gz", "[3, 28, 28]"],
        ),
        case(
            "gzip cut short",
            &["eval", "--device", "cpu", "--weights", &sd_s, "--dataset", "fashion-mnist", "--data-dir", &s(&fm_cut)],
            &["t10k-images-idx3-ubyte.gz", "gzip"],
        ),
        case(
            "IDX label out of range",
            &["eval", "--device", "cpu", "--weights", &sd_s, "--dataset", "fashion-mnist", "--data-dir", &s(&fm_label)],
            &["t10k-labels-idx1-ubyte.gz", "label 10 at index 1"],
        ),
        case(
            "eval batch size 0",
            &["eval", "--weights", &sd_s, "--dataset", "synthetic", "--batch-size", "0"],
            &["--batch-size"],
        ),
        // predict: images
        case(
            "not an image",
            &["predict", "--device", "cpu", "--weights", &sd_s, &sds("not_image.png")],
            &["not_image.png", "not a PNG, JPEG, BMP, PPM/PGM, TIFF or WebP image"],
        ),
        case(
            "empty image",
            &["predict", "--device", "cpu", "--weights", &sd_s, &sds("empty.png")],
            &["empty.png", "empty file"],
        ),
        case(
            "image claiming huge dimensions",
            &["predict", "--device", "cpu", "--weights", &sd_s, &sds("huge.png")],
            &["huge.png", "cannot decode"],
        ),
        case(
            "truncated image",
            &["predict", "--device", "cpu", "--weights", &sd_s, &sds("truncated.png")],
            &["truncated.png", "cannot decode"],
        ),
        case(
            "missing image",
            &["predict", "--device", "cpu", "--weights", &sd_s, &sds("nothere.jpg")],
            &["nothere.jpg", "cannot read"],
        ),
        case(
            "predict with missing weights",
            &["predict", "--device", "cpu", "--weights", &sds("nope.safetensors"), &sds("not_image.png")],
            &["nope.safetensors"],
        ),
        // train: flags and resume
        case("train batch size 0", &["train", "--batch-size", "0"], &["--batch-size", "must be at least 1"]),
        case(
            "negative learning rate",
            &[
                "train",
                "--device",
                "cpu",
                "--dataset",
                "synthetic",
                "--data-dir",
                &sds("data"),
                "--out",
                &sds("run_neg"),
                "--lr",
                "-1",
            ],
            &["lr must be a finite number >= 0, got -1"],
        ),
        case(
            "NaN learning rate",
            &[
                "train",
                "--device",
                "cpu",
                "--dataset",
                "synthetic",
                "--data-dir",
                &sds("data"),
                "--out",
                &sds("run_nan"),
                "--lr",
                "NaN",
            ],
            &["lr must be a finite number >= 0, got NaN"],
        ),
        case(
            "zero --clip-grad-norm",
            &[
                "train",
                "--device",
                "cpu",
                "--dataset",
                "synthetic",
                "--data-dir",
                &sds("data"),
                "--out",
                &sds("run_clip"),
                "--clip-grad-norm",
                "0",
            ],
            &["--clip-grad-norm", "max_norm must be a finite number > 0, got 0"],
        ),
        case(
            "resume from a plain state dict",
            &[
                "train",
                "--device",
                "cpu",
                "--dataset",
                "synthetic",
                "--data-dir",
                &sds("data"),
                "--out",
                &sds("run_r"),
                "--resume",
                &sd_s,
            ],
            &["not a wgrad checkpoint"],
        ),
        case(
            "resume from an empty folder",
            &[
                "train",
                "--device",
                "cpu",
                "--dataset",
                "synthetic",
                "--data-dir",
                &sds("data"),
                "--out",
                &sds("run_e"),
                "--resume",
                &sds("empty_run"),
            ],
            &["no complete checkpoint"],
        ),
        case(
            "zero epochs",
            &[
                "train",
                "--device",
                "cpu",
                "--dataset",
                "synthetic",
                "--data-dir",
                &sds("data"),
                "--out",
                &sds("run_z"),
                "--epochs",
                "0",
            ],
            &["--epochs", "must be at least 1"],
        ),
        // devices and flags
        case("unknown device", &["devices", "--device", "tpu"], &["--device", "tpu"]),
        case("unknown backend", &["bench", "--backend", "cuda"], &["--backend", "cuda"]),
        case(
            "unknown adapter",
            &["bench", "--device", "gpu", "--adapter", "no-such-gpu-anywhere"],
            &["no-such-gpu-anywhere"],
        ),
        case("bad WGRAD_DEVICE", &["devices"], &["--device", "quantum"]),
        case("bench batch size 0", &["bench", "--batch-sizes", "0"], &["--batch-sizes", "must be at least 1"]),
        case("bench zero steps", &["bench", "--steps", "0"], &["--steps", "must be at least 1"]),
        // show
        case(
            "show into a missing folder",
            &["show", "--dataset", "synthetic", "--data-dir", &sds("data"), "--out", &sds("no/such/dir/grid.png")],
            &["grid.png", "cannot write"],
        ),
        case(
            "show a missing dataset",
            &["show", "--dataset", "cifar10", "--data-dir", &sds("nowhere"), "--out", &sds("grid.png")],
            &["no CIFAR-10 here"],
        ),
        case("unknown command", &["fly"], &["fly"]),
    ];
    if gpu().is_some() {
        // Buffers past the adapter's storage-binding limit are refused before any dispatch.
        cases.push(case(
            "batch beyond the adapter's binding limit",
            &[
                "eval",
                "--device",
                "gpu",
                "--weights",
                &sd_s,
                "--dataset",
                "synthetic",
                "--data-dir",
                &sds("data"),
                "--batch-size",
                "4000",
            ],
            &["max_storage_buffer_binding_size"],
        ));
    }
    assert!(cases.len() >= 40, "the suite must have at least 40 cases, has {}", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgrad"));
        cmd.args(&c.args).current_dir(&d);
        if c.name == "bad WGRAD_DEVICE" {
            cmd.env("WGRAD_DEVICE", "quantum");
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let code = o.status.code();
        let mut why = Vec::new();
        if code == Some(0) || code.is_none() {
            why.push(format!("exit {code:?}"));
        }
        if code == Some(101) || err.contains("panicked") {
            why.push("panicked".into());
        }
        if !err.contains("error") {
            why.push("no error message".into());
        }
        for e in &c.expect {
            if !err.contains(e) {
                why.push(format!("stderr lacks {e:?}"));
            }
        }
        if let Some(out) = &c.no_output {
            if out.exists() {
                why.push(format!("{} was written", out.display()));
            }
        }
        let leftovers: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        if !leftovers.is_empty() {
            why.push(format!(
                "temporary files left: {:?}",
                leftovers.iter().map(|e| e.file_name()).collect::<Vec<_>>()
            ));
        }
        if !why.is_empty() {
            failures.push(format!("{}: {}\n    stderr: {}", c.name, why.join(", "), err.trim()));
        }
    }
    println!("{} bad-input cases, {} failed", cases.len(), failures.len());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
