//! The page in a real browser: web/build.sh builds the wasm, `wgrad serve` serves it on 127.0.0.1,
//! headless Chromium opens it with WebGPU on its software adapter (SwiftShader) and trains every
//! model on the synthetic set from the URL query. The per-step losses must equal the native CPU
//! path's (`wgrad train --device cpu`'s steps.csv) and the state dict the page offers for download
//! must hold the CPU path's weights under PyTorch's keys. Then, through the page's own inputs: that
//! state dict loaded into a fresh page predicts what `wgrad predict` predicts, and Fashion-MNIST's
//! (and MNIST's) four files picked in the form train cifar-net as `wgrad train --dataset
//! fashion-mnist` (`mnist`) does. A
//! screenshot of the page after each training run and the state dicts it produced are kept in
//! target/browser/ (CI artifacts); where PyTorch is installed they are loaded into its modules with
//! strict=True (tests/browser_state_dict.py).
//!
//! Skips (fails under WGRAD_REQUIRE_GPU=1) when Chromium, wasm-bindgen or the wasm32 target is
//! missing; .ci/run installs them. WGRAD_BROWSER_MODELS=tudui,fashion-mnist,mnist runs some parts only.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const WGRAD: &str = env!("CARGO_BIN_EXE_wgrad");
/// The flags seen to give headless Chromium a working WebGPU adapter on a machine without a GPU.
const CHROMIUM_FLAGS: &[&str] = &[
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-vulkan=swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--disable-vulkan-surface",
    "--use-angle=vulkan",
    "--window-size=1200,1000",
];

/// Model, steps and batch size: Tudui for 20 steps of 64, the others shorter (SwiftShader runs WGSL
/// on the CPU, slowly: Tudui's step of 64 takes about 6 s on 2 cores, ResNet-20's of 16 about 20 s).
/// ResNet-20 for 2 steps, as its PyTorch goldens (tests/models.rs): two float32 runs of it drift
/// apart, through BatchNorm's batch statistics, by about 1e-3 in the third step's loss.
/// Then how many test images the page evaluates after training, and the run's settings beyond the
/// defaults ([`MOMENTUM_COSINE`], [`AUGMENTED`]).
const RUNS: &[(&str, usize, usize, usize, Extra)] =
    &[("tudui", 20, 64, 250, MOMENTUM_COSINE), ("cifar-net", 10, 64, 250, AUGMENTED), ("resnet20", 2, 16, 64, PLAIN)];

/// The page's query and the `wgrad train` flags of a run's settings beyond the defaults.
type Extra = (&'static str, &'static [&'static str]);
const PLAIN: Extra = ("", &[]);
/// SGD with momentum 0.9 and weight decay 5e-4, its rate warmed up over 5 steps, then annealed to
/// 0 by a cosine over the other 15: the page's form and `wgrad train --momentum 0.9 --weight-decay
/// 5e-4 --warmup-steps 5 --lr-schedule cosine` (its T_max the run's end, `--max-steps`).
const MOMENTUM_COSINE: Extra = (
    "&momentum=0.9&weight_decay=5e-4&warmup_steps=5&lr_schedule=cosine",
    &["--momentum", "0.9", "--weight-decay", "5e-4", "--warmup-steps", "5", "--lr-schedule", "cosine"],
);

/// How far (relative) the page's loss at each step may lie from the CPU path's: 1e-4, but 3e-4 for
/// ResNet-20, whose second step already carries that drift at 1e-4's scale. Its first losses agree
/// to the last digit (2.4736648); the second (2.285038 on the CPU path) came out 2.2852736 on
/// SwiftShader and 2.285274 or 2.2851257 on lavapipe, as the GPU's reductions summed in one order or
/// another (docs/PERFORMANCE.md, histories 62 and 63): 1.03e-4 and 3.8e-5.
fn loss_tolerance(model: &str) -> f64 {
    if model == "resnet20" {
        3e-4
    } else {
        1e-4
    }
}
/// A run that augments its images, smooths its labels by 0.1 and clips its gradients' norm to 0.1
/// at a learning rate of 0.1, halved after steps 3 and 6 (the page's form and `wgrad train
/// --augment --label-smoothing 0.1 --lr 0.1 --clip-grad-norm 0.1 --lr-schedule multistep
/// --lr-milestones 3,6 --lr-gamma 0.5`: the clipping moves the tenth step's loss by 1.3e-3,
/// thirteen times the tolerance).
const AUGMENTED: Extra = (
    "&augment=1&label_smoothing=0.1&lr=0.1&clip_grad_norm=0.1&lr_schedule=multistep&lr_milestones=3,6&lr_gamma=0.5",
    &[
        "--augment",
        "--label-smoothing",
        "0.1",
        "--lr",
        "0.1",
        "--clip-grad-norm",
        "0.1",
        "--lr-schedule",
        "multistep",
        "--lr-milestones",
        "3,6",
        "--lr-gamma",
        "0.5",
    ],
);

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WGRAD_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    // The real binary: Debian's /usr/bin/chromium-headless-shell is a shell wrapper that does not
    // exec it, so killing the wrapper would leave the browser running.
    ["/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn missing_tools() -> Option<String> {
    if chromium().is_none() {
        return Some("headless Chromium is not installed (apt-get install chromium-headless-shell)".into());
    }
    if Command::new("wasm-bindgen").arg("--version").output().is_err() {
        return Some("wasm-bindgen is not installed (see web/build.sh for the version)".into());
    }
    let targets = Command::new("rustup").args(["target", "list", "--installed"]).output();
    if !targets.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l == "wasm32-unknown-unknown")) {
        return Some("the wasm32-unknown-unknown target is not installed (rustup target add)".into());
    }
    None
}

/// A child process killed (with its process group) when dropped.
struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A DevTools-protocol connection to one page.
struct Page {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    next: u64,
}

impl Page {
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next += 1;
        let id = self.next;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        self.ws.send(tungstenite::Message::text(msg.to_string())).expect("send to the browser");
        loop {
            let m = self.ws.read().expect("read from the browser");
            let Ok(text) = m.to_text() else { continue };
            let v: serde_json::Value = serde_json::from_str(text).expect("DevTools JSON");
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// A JavaScript expression's value (promises awaited).
    fn eval(&mut self, expr: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }
}

/// Opens Chromium on `url` and connects to its page.
fn open_browser(profile: &Path, url: &str) -> (Reaped, Page) {
    open_browser_with(CHROMIUM_FLAGS, profile, url)
}

fn open_browser_with(flags: &[&str], profile: &Path, url: &str) -> (Reaped, Page) {
    let child = Command::new(chromium().unwrap())
        .args(flags)
        .arg("--remote-debugging-port=0")
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Chromium");
    let browser = Reaped(child);
    // Chromium writes the port it chose into the profile folder.
    let port_file = profile.join("DevToolsActivePort");
    let start = Instant::now();
    let port = loop {
        if let Some(p) = std::fs::read_to_string(&port_file).ok().and_then(|s| s.lines().next()?.parse::<u16>().ok()) {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "Chromium did not open its DevTools port");
        std::thread::sleep(Duration::from_millis(100));
    };
    let ws_url = loop {
        let list: serde_json::Value = ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null);
        let page = list.as_array().and_then(|l| l.iter().find(|t| t["type"] == "page").cloned());
        if let Some(u) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str().map(String::from)) {
            break u;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "Chromium has no page to drive");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (ws, _) = tungstenite::connect(ws_url.as_str()).expect("connect to the page");
    (browser, Page { ws, next: 0 })
}

/// The losses of `wgrad train --device cpu` over `steps` steps of `batch` (its steps.csv), and its weights.
fn cpu_run(model: &str, steps: usize, batch: usize, flags: &[&str], out: &Path) -> (Vec<f64>, wgrad::nn::ParamSet) {
    cpu_run_on("synthetic", &out.join("data"), model, steps, batch, flags, &out.join(model))
}

/// [`cpu_run`] on a dataset (`--dataset`, `--data-dir`), into `run`.
fn cpu_run_on(
    dataset: &str,
    data: &Path,
    model: &str,
    steps: usize,
    batch: usize,
    flags: &[&str],
    run: &Path,
) -> (Vec<f64>, wgrad::nn::ParamSet) {
    let st = Command::new(WGRAD)
        .args(["train", "--dataset", dataset, "--seed", "0", "--device", "cpu"])
        .args(["--batch-size", &batch.to_string()])
        .args(flags)
        .args(["--model", model, "--max-steps", &steps.to_string()])
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(run)
        .output()
        .expect("run wgrad train");
    assert!(st.status.success(), "wgrad train: {}", String::from_utf8_lossy(&st.stderr));
    let csv = std::fs::read_to_string(run.join("steps.csv")).unwrap();
    let losses: Vec<f64> = csv.lines().skip(1).map(|l| l.split(',').nth(2).unwrap().parse().unwrap()).collect();
    assert_eq!(losses.len(), steps);
    let mut params = wgrad::nn::models::ModelKind::parse(model).unwrap().build(0).params;
    let ck = wgrad::io::checkpoint::latest(run).expect("a checkpoint");
    wgrad::io::checkpoint::load_weights(&ck, &mut params).unwrap();
    (losses, params)
}

#[test]
fn page_trains_every_model_like_the_cpu_path() {
    if let Some(what) = missing_tools() {
        common::skip(&what, "WGRAD_REQUIRE_GPU");
        return;
    }
    let t0 = Instant::now();
    let build = Command::new(Path::new(ROOT).join("web/build.sh")).output().expect("run web/build.sh");
    assert!(build.status.success(), "web/build.sh failed:\n{}", String::from_utf8_lossy(&build.stderr));
    eprintln!("web/build.sh: {:.1} s", t0.elapsed().as_secs_f64());

    let mut server = Command::new(WGRAD)
        .args(["serve", "--port", "0"])
        .arg(Path::new(ROOT).join("web/dist"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start wgrad serve");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _server = Reaped(server);
    let base =
        line.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).expect("the served URL").to_string();

    let artifacts = Path::new(ROOT).join("target/browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    let scratch = std::env::temp_dir().join(format!("wgrad-browser-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();

    let only = std::env::var("WGRAD_BROWSER_MODELS").ok();
    let chosen = |m: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x.trim() == m));
    // Without WebGPU's flags this Chromium has no adapter: the page must say so, not stay blank.
    {
        let (_browser, mut page) = open_browser_with(&["--no-sandbox"], &scratch.join("profile-no-gpu"), &base);
        let start = Instant::now();
        while page.eval("document.title") != "wgrad: error" {
            assert!(start.elapsed() < Duration::from_secs(60), "the page without an adapter did not say so");
            std::thread::sleep(Duration::from_millis(200));
        }
        let error = page.eval("document.getElementById('error').textContent");
        assert!(error.as_str().unwrap().contains("gave wgrad no GPU to use"), "{error}");
        let visible =
            page.eval("!document.getElementById('error').hidden && document.getElementById('adapter').textContent");
        assert_eq!(visible, "Adapter: none");
    }
    for &(model, steps, batch, eval, (query, flags)) in RUNS.iter().filter(|r| chosen(r.0)) {
        let url = format!(
            "{base}?model={model}&dataset=synthetic&seed=0&batch={batch}&steps={steps}&eval={eval}&autorun=1{query}"
        );
        let profile = scratch.join(format!("profile-{model}"));
        let (_browser, mut page) = open_browser(&profile, &url);
        let started = Instant::now();
        let mut last_status = Instant::now();
        let title = loop {
            let t = page.eval("document.title").as_str().unwrap_or("").to_string();
            if t == "wgrad: done" || t == "wgrad: error" {
                break t;
            }
            let status = page.eval("document.getElementById('status')?.textContent ?? ''");
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{model}: the page is still at {t:?} after 600 s: {status}"
            );
            if last_status.elapsed() > Duration::from_secs(30) {
                eprintln!("{model}, {:.0} s: {status}", started.elapsed().as_secs_f64());
                last_status = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let result_text = page.eval("document.getElementById('result').textContent");
        let shot = page.call("Page.captureScreenshot", serde_json::json!({ "format": "png" }));
        let png = base64_decode(shot["data"].as_str().unwrap());
        std::fs::write(artifacts.join(format!("{model}.png")), png).unwrap();
        assert_eq!(title, "wgrad: done", "{model}: {}", result_text);
        let result: serde_json::Value = serde_json::from_str(result_text.as_str().unwrap()).unwrap();
        eprintln!(
            "{model}: {} steps in the browser on {}: {:.0} ms per step ({:.3} steps/s), test accuracy {:.3} ({eval} images), {:.1} s in all",
            result["steps"],
            result["adapter"],
            result["ms_per_step"].as_f64().unwrap(),
            1000.0 / result["ms_per_step"].as_f64().unwrap(),
            result["test_accuracy"].as_f64().unwrap(),
            started.elapsed().as_secs_f64()
        );
        assert_eq!(result["model"], model);
        assert!((0.0..=1.0).contains(&result["test_accuracy"].as_f64().unwrap()));
        assert!(result["adapter"].as_str().is_some_and(|a| !a.is_empty()));
        let web_losses: Vec<f64> = result["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();

        let (cpu_losses, cpu_params) = cpu_run(model, steps, batch, flags, &scratch);
        assert_eq!(web_losses.len(), cpu_losses.len(), "{model}: steps");
        for (i, (w, c)) in web_losses.iter().zip(&cpu_losses).enumerate() {
            let rel = (w - c).abs() / c.abs().max(1e-12);
            assert!(
                rel <= loss_tolerance(model),
                "{model}: step {} loss {w} in the browser, {c} on the CPU path ({rel:.2e} relative)",
                i + 1
            );
        }

        // The download: PyTorch's keys and the CPU path's weights.
        let b64 = page.eval("wgradStateDict()");
        let bytes = base64_decode(b64.as_str().unwrap());
        let file = artifacts.join(format!("{model}.safetensors"));
        std::fs::write(&file, &bytes).unwrap();
        let mut web_params = cpu_params.clone();
        wgrad::io::state_dict::load_bytes("the page's state dict", &bytes, &mut web_params).unwrap();
        let rel_l2 = |a: &[f32], b: &[f32]| {
            let (num, den) = a
                .iter()
                .zip(b)
                .fold((0f64, 0f64), |(n, d), (&x, &y)| (n + (x as f64 - y as f64).powi(2), d + (y as f64).powi(2)));
            (num / den).sqrt()
        };
        let init = wgrad::nn::models::ModelKind::parse(model).unwrap().build(0).params;
        let (off, moved) = (rel_l2(&web_params.data, &cpu_params.data), rel_l2(&init.data, &cpu_params.data));
        eprintln!("{model}: the page's weights are {off:.2e} from the CPU path's (relative L2; training moved them {moved:.2e})");
        assert!(
            off <= 1e-3 && off < 0.1 * moved,
            "{model}: the page's weights differ from the CPU path's by {off:.2e} (relative L2), training moved them {moved:.2e}"
        );
        assert_eq!(web_params.counters, cpu_params.counters, "{model}: num_batches_tracked");
        if model == "tudui" {
            load_and_predict(&mut page, &base, &file, &scratch);
        }
    }
    if chosen("fashion-mnist") {
        fashion_mnist_from_picked_files(&base, &scratch);
    }
    if chosen("mnist") {
        mnist_from_picked_files(&base, &scratch);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    // The files the page produced, loaded into PyTorch's modules with strict=True, where PyTorch is
    // installed (CI has none: the keys and shapes are checked above against wgrad's, which the
    // PyTorch-parity tests hold to PyTorch's).
    let script = Path::new(ROOT).join("tests/browser_state_dict.py");
    let torch = Command::new("python3").args(["-c", "import torch, safetensors"]).output();
    if torch.is_ok_and(|o| o.status.success()) {
        let out = Command::new("python3").arg(&script).arg(&artifacts).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        eprint!("{text}");
        assert!(out.status.success(), "{}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    } else {
        eprintln!("PyTorch is not installed: {} was not run", script.display());
    }
}

/// A fresh page (no run): the state dict the page gave is loaded through the "Load a state dict"
/// input, a picture through the "Predict" input; the page's top-3 must be `wgrad predict`'s.
fn load_and_predict(page: &mut Page, base: &str, weights: &Path, scratch: &Path) {
    page.call("Page.navigate", serde_json::json!({ "url": base }));
    wait_for(page, "typeof window.wgradStateDict === 'function'", "the page to start");
    // The synthetic test set's first image, as a PNG.
    let ds = wgrad::data::synthetic::generate(wgrad::data::synthetic::SEED, wgrad::data::Split::Test).unwrap();
    let img = ds.image(0);
    let rgb = image::RgbImage::from_fn(32, 32, |x, y| {
        let at = (y * 32 + x) as usize;
        image::Rgb([img[at], img[1024 + at], img[2048 + at]])
    });
    let picture = scratch.join("picture.png");
    rgb.save(&picture).unwrap();
    set_file(page, "weights", weights);
    wait_for(page, "document.getElementById('status').textContent.startsWith('loaded')", "the state dict to load");
    set_file(page, "picture", &picture);
    wait_for(page, "document.querySelectorAll('#guesses li').length === 3", "the prediction");
    let web = page.eval("[...document.querySelectorAll('#guesses li')].map(li => li.textContent).join(', ')");
    let out = Command::new(WGRAD)
        .args(["predict", "--model", "tudui", "--device", "cpu", "--weights"])
        .arg(weights)
        .arg(&picture)
        .output()
        .unwrap();
    assert!(out.status.success(), "wgrad predict: {}", String::from_utf8_lossy(&out.stderr));
    let cli = String::from_utf8_lossy(&out.stdout);
    let cli = cli.trim().rsplit(": ").next().unwrap().to_string();
    eprintln!("tudui: the page predicts {web}; wgrad predict: {cli}");
    let parse = |s: &str| -> Vec<(String, f64)> {
        s.split(", ")
            .map(|g| {
                let (c, p) = g.rsplit_once(' ').unwrap();
                (c.to_string(), p.trim_end_matches('%').parse().unwrap())
            })
            .collect()
    };
    let (w, c) = (parse(web.as_str().unwrap()), parse(&cli));
    assert_eq!(
        w.iter().map(|g| &g.0).collect::<Vec<_>>(),
        c.iter().map(|g| &g.0).collect::<Vec<_>>(),
        "{web} vs {cli}"
    );
    assert!(w.iter().zip(&c).all(|(a, b)| (a.1 - b.1).abs() <= 0.11), "{web} vs {cli}");
}

/// Fashion-MNIST's four files picked in the page's form (as a visitor picks them), then Train:
/// cifar-net's losses must be `wgrad train --dataset fashion-mnist`'s.
fn fashion_mnist_from_picked_files(base: &str, scratch: &Path) {
    let Ok(dir) = wgrad::data::fashion_mnist::find(Path::new("/nonexistent")) else {
        return common::skip(
            "Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
            "WGRAD_REQUIRE_DATASETS",
        );
    };
    idx_files_picked_train_as_the_cli_does(base, scratch, "fashion-mnist", &dir, &dir);
}

/// MNIST's four files (made here: 192 training and 64 test images, where torchvision keeps them)
/// picked in the page's form, then Train: the losses must be `wgrad train --dataset mnist`'s.
fn mnist_from_picked_files(base: &str, scratch: &Path) {
    let root = scratch.join("mnist-data");
    let raw = root.join("MNIST/raw");
    std::fs::create_dir_all(&raw).unwrap();
    for (prefix, n) in [("train", 192u32), ("t10k", 64)] {
        let gz = |bytes: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, bytes).unwrap();
            e.finish().unwrap()
        };
        let mut images: Vec<u8> = [0x0803u32, n, 28, 28].iter().flat_map(|v| v.to_be_bytes()).collect();
        images.extend((0..n as usize * 784).map(|i| ((i * 7 + i / 784 * 13) % 256) as u8));
        let mut labels: Vec<u8> = [0x0801u32, n].iter().flat_map(|v| v.to_be_bytes()).collect();
        labels.extend((0..n).map(|i| (i * 3 % 10) as u8));
        std::fs::write(raw.join(format!("{prefix}-images-idx3-ubyte.gz")), gz(&images)).unwrap();
        std::fs::write(raw.join(format!("{prefix}-labels-idx1-ubyte.gz")), gz(&labels)).unwrap();
    }
    idx_files_picked_train_as_the_cli_does(base, scratch, "mnist", &raw, &root);
}

/// The four IDX files in `files` picked in the page with `dataset` chosen, then Train (cifar-net,
/// 3 steps of 64): the losses must be `wgrad train --dataset <dataset> --data-dir <data_dir>`'s.
fn idx_files_picked_train_as_the_cli_does(base: &str, scratch: &Path, dataset: &str, files: &Path, data_dir: &Path) {
    let steps = 3;
    let url = format!("{base}?model=cifar-net&dataset={dataset}&seed=0&batch=64&steps={steps}&eval=250");
    let (_browser, mut page) = open_browser(&scratch.join(format!("profile-{dataset}")), &url);
    wait_for(&mut page, "typeof window.wgradStateDict === 'function'", "the page to start");
    let picked: Vec<PathBuf> = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    .iter()
    .map(|f| files.join(f))
    .collect();
    set_files(&mut page, "files", &picked);
    page.eval("document.getElementById('train').click()");
    let started = Instant::now();
    wait_for(&mut page, "document.title === 'wgrad: done'", &format!("cifar-net to train on {dataset}"));
    let result = page.eval("document.getElementById('result').textContent");
    let result: serde_json::Value = serde_json::from_str(result.as_str().unwrap()).unwrap();
    let web: Vec<f64> = result["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let name = <wgrad::data::DatasetKind as clap::ValueEnum>::from_str(dataset, false).unwrap().name();
    assert!(result["data"].as_str().unwrap().starts_with(&format!("{name}: ")), "{result}");
    let (cpu, _) = cpu_run_on(dataset, data_dir, "cifar-net", steps, 64, &[], &scratch.join(dataset));
    eprintln!(
        "{dataset} (files picked in the page): cifar-net {steps} steps, losses {web:?} (CPU path {cpu:?}), {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(web.len(), cpu.len());
    for (i, (w, c)) in web.iter().zip(&cpu).enumerate() {
        assert!(
            (w - c).abs() <= 1e-4 * c.abs(),
            "{dataset}: step {} loss {w} in the browser, {c} on the CPU path",
            i + 1
        );
    }
}

fn set_file(page: &mut Page, input: &str, file: &Path) {
    set_files(page, input, &[file.to_path_buf()]);
}

fn set_files(page: &mut Page, input: &str, files: &[PathBuf]) {
    let r = page
        .call("Runtime.evaluate", serde_json::json!({ "expression": format!("document.getElementById('{input}')") }));
    let object = r["result"]["objectId"].as_str().expect("the input element").to_string();
    let paths: Vec<PathBuf> = files.iter().map(|f| f.canonicalize().unwrap()).collect();
    page.call("DOM.setFileInputFiles", serde_json::json!({ "files": paths, "objectId": object }));
}

/// Polls a JavaScript condition until it holds (120 s at most); a page error fails at once.
fn wait_for(page: &mut Page, condition: &str, what: &str) {
    let start = Instant::now();
    loop {
        if page.eval(&format!("(() => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }})()"))
            == true
        {
            return;
        }
        let error = page.eval(
            "document.getElementById('error')?.hidden === false ? document.getElementById('error').textContent : ''",
        );
        assert_eq!(error, "", "waiting for {what}");
        assert!(start.elapsed() < Duration::from_secs(120), "waited 120 s for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).expect("base64 from the page")
}
