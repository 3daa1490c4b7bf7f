// The page: a form, a training loop that yields to the browser between steps, a live chart,
// weights in and out, and predictions. The engine is the wasm module (web/src/lib.rs).
//
// The URL query sets the form (?model=tudui&dataset=synthetic&seed=0&batch=64&steps=20&autorun=1,
// also optimizer, lr, momentum, weight_decay, lr_schedule, warmup_steps, lr_min, lr_step_size,
// lr_milestones (M1,M2,…), lr_gamma, eval, augment=1, label_smoothing, clip_grad_norm); when a run
// ends, document.title becomes "wgrad: done" (or "wgrad: error") and #result holds a JSON summary.
import init, { Gpu, Data, Run, modelNames } from "./wgrad_web.js";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
let gpu = null;
let adapterName = "";
let run = null;
let stopRequested = false;
let losses = [];
// A run whose weights were loaded from a file: the next Train continues it instead of starting anew.
let loadedRun = null;

function showError(message) {
  $("error").hidden = false;
  $("error").textContent = message;
  document.title = "wgrad: error";
  $("result").textContent = JSON.stringify({ error: message });
}

function errorText(e) {
  return e instanceof Error ? e.message : String(e);
}

// ---- the chart: per-step loss and its exponential moving average ----
function smooth(values, beta = 0.9) {
  const out = [];
  let avg = 0;
  values.forEach((v, i) => {
    avg = beta * avg + (1 - beta) * v;
    out.push(avg / (1 - Math.pow(beta, i + 1)));
  });
  return out;
}

function draw() {
  const c = $("chart");
  const g = c.getContext("2d");
  const [w, h, left, bottom] = [c.width, c.height, 48, 24];
  g.clearRect(0, 0, w, h);
  g.fillStyle = "#fff";
  g.fillRect(0, 0, w, h);
  g.font = "11px sans-serif";
  g.fillStyle = "#444";
  if (losses.length === 0) {
    g.fillText("no steps yet", w / 2 - 30, h / 2);
    return;
  }
  // The range of the losses, padded: a loss moving from 2.30 to 2.26 must be visible.
  const [top, bot] = [Math.max(...losses), Math.min(...losses)];
  const pad = Math.max((top - bot) * 0.1, 1e-3);
  const [hi, lo] = [top + pad, Math.max(bot - pad, 0)];
  const n = Math.max(losses.length, 2);
  const x = (i) => left + ((w - left - 10) * i) / (n - 1);
  const y = (v) => 8 + (h - bottom - 8) * (1 - (v - lo) / (hi - lo));
  g.strokeStyle = "#ddd";
  g.beginPath();
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    g.moveTo(left, y(v));
    g.lineTo(w - 10, y(v));
    g.fillText(v.toFixed(3), 4, y(v) + 4);
  }
  g.stroke();
  g.fillText(`step ${losses.length}`, w - 70, h - 6);
  const line = (values, colour, width) => {
    g.strokeStyle = colour;
    g.lineWidth = width;
    g.beginPath();
    values.forEach((v, i) => (i === 0 ? g.moveTo(x(i), y(v)) : g.lineTo(x(i), y(v))));
    g.stroke();
    g.lineWidth = 1;
  };
  line(losses, "#9ecae1", 1);
  line(smooth(losses), "#08519c", 2);
}

// ---- the form ----
function settings() {
  const num = (id) => ($(id).value === "" ? null : Number($(id).value));
  return {
    model: $("model").value,
    batch: num("batch"),
    optimizer: $("optimizer").value,
    lr: num("lr"),
    momentum: num("momentum"),
    weight_decay: num("weight_decay"),
    seed: num("seed") ?? 0,
    eval_images: num("eval"),
    augment: $("augment").checked,
    label_smoothing: num("label_smoothing") ?? 0,
    clip_grad_norm: num("clip_grad_norm"),
    ...schedule(num),
    steps: num("steps") ?? 0,
  };
}

// The schedule's fields, as `wgrad train`'s flags: only those of the schedule chosen (a value left
// in another's field is not an error here), each unset when empty.
function schedule(num) {
  const kind = $("lr_schedule").value;
  const milestones = $("lr_milestones").value.trim();
  return {
    lr_schedule: kind,
    warmup_steps: num("warmup_steps"),
    lr_min: kind === "cosine" ? num("lr_min") : null,
    lr_step_size: kind === "step" ? num("lr_step_size") : null,
    lr_milestones: kind === "multistep" && milestones !== "" ? milestones.split(",").map(Number) : null,
    lr_gamma: ["step", "multistep", "exponential"].includes(kind) ? num("lr_gamma") : null,
  };
}

function fillFromQuery() {
  const set = (id, key) => {
    if (query.has(key)) $(id).value = query.get(key);
  };
  set("model", "model");
  set("dataset", "dataset");
  set("batch", "batch");
  set("optimizer", "optimizer");
  set("lr", "lr");
  set("momentum", "momentum");
  set("weight_decay", "weight_decay");
  set("seed", "seed");
  set("steps", "steps");
  set("eval", "eval");
  set("label_smoothing", "label_smoothing");
  set("clip_grad_norm", "clip_grad_norm");
  set("lr_schedule", "lr_schedule");
  set("warmup_steps", "warmup_steps");
  set("lr_min", "lr_min");
  set("lr_step_size", "lr_step_size");
  set("lr_milestones", "lr_milestones");
  set("lr_gamma", "lr_gamma");
  if (query.has("augment")) $("augment").checked = query.get("augment") === "1";
  $("files-label").hidden = $("dataset").value === "synthetic";
}

async function readFiles() {
  const files = [...$("files").files];
  const bytes = await Promise.all(files.map(async (f) => new Uint8Array(await f.arrayBuffer())));
  return [files.map((f) => f.name), bytes];
}

async function loadData() {
  const kind = $("dataset").value;
  if (kind === "synthetic") return Data.synthetic();
  const [names, bytes] = await readFiles();
  if (names.length === 0) throw new Error(`pick the ${kind} files first`);
  if (kind === "fashion-mnist") return Data.fashionMnist(names, bytes);
  if (kind === "mnist") return Data.mnist(names, bytes);
  return Data.cifar10(names, bytes);
}

function setRunning(running) {
  $("train").disabled = running;
  $("stop").disabled = !running;
  $("weights").disabled = running;
  for (const id of ["download", "picture"]) $(id).disabled = running || run === null;
}

function addEpochRow(epoch, steps, score) {
  const row = document.createElement("tr");
  for (const v of [epoch, steps, `${(100 * score.accuracy).toFixed(2)} %`, score.loss.toFixed(4)]) {
    const td = document.createElement("td");
    td.textContent = v;
    row.appendChild(td);
  }
  $("epochs").querySelector("tbody").appendChild(row);
}

const yieldToPage = () => new Promise((resolve) => setTimeout(resolve, 0));

async function train() {
  $("error").hidden = true;
  document.title = "wgrad: training";
  $("result").textContent = "";
  $("epochs").querySelector("tbody").innerHTML = "";
  losses = [];
  stopRequested = false;
  draw();
  if (loadedRun === null) run = null;
  setRunning(true);
  try {
    const s = settings();
    $("status").textContent = "preparing the data…";
    await yieldToPage();
    const data = await loadData();
    $("status").textContent = `${data.summary}; building ${s.model}…`;
    await yieldToPage();
    run = loadedRun ?? Run.create(gpu, data, JSON.stringify(s));
    loadedRun = null;
    const steps = Number($("steps").value || 0);
    const perEpoch = run.batchesPerEpoch;
    let trainMs = 0;
    let done = 0;
    while ((steps === 0 || done < steps) && !stopRequested) {
      const t = performance.now();
      const r = JSON.parse(await run.step());
      trainMs += performance.now() - t;
      done = r.step;
      losses.push(r.loss);
      const perSecond = (1000 * done) / trainMs;
      $("status").textContent =
        `step ${r.step} (epoch ${r.epoch + 1}, ${((r.step - 1) % perEpoch) + 1}/${perEpoch}): loss ${r.loss.toFixed(4)}, ` +
        `lr ${Number(r.lr.toPrecision(6))}, ${perSecond.toFixed(2)} steps/s, ${(perSecond * s.batch).toFixed(1)} images/s`;
      draw();
      if (r.step % perEpoch === 0) {
        const score = JSON.parse(await run.evaluate());
        addEpochRow(r.epoch + 1, r.step, score);
      }
      await yieldToPage();
    }
    $("status").textContent += " — evaluating…";
    await yieldToPage();
    const score = JSON.parse(await run.evaluate());
    $("status").textContent = $("status").textContent.replace(" — evaluating…", "") +
      ` — test accuracy ${(100 * score.accuracy).toFixed(2)} % on ${score.images} images` +
      (stopRequested ? " (stopped)" : "");
    const summary = {
      adapter: adapterName,
      model: s.model,
      data: data.summary,
      steps: losses.length,
      losses,
      test_accuracy: score.accuracy,
      ms_per_step: trainMs / Math.max(losses.length, 1),
    };
    $("result").textContent = JSON.stringify(summary);
    document.title = "wgrad: done";
  } catch (e) {
    showError(`training failed: ${errorText(e)}`);
  } finally {
    setRunning(false);
  }
}

// ---- weights and predictions ----
async function download() {
  try {
    const bytes = await run.stateDict();
    const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `${$("model").value}.safetensors`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    showError(`download failed: ${errorText(e)}`);
  }
}

// Loads weights into the current run, or into a new run of the form's settings (to predict, or
// to continue training with Train... which starts from the loaded weights).
async function loadWeights(file) {
  try {
    if (run === null) run = Run.create(gpu, await loadData(), JSON.stringify(settings()));
    run.loadStateDict(file.name, new Uint8Array(await file.arrayBuffer()));
    loadedRun = run;
    $("status").textContent = `loaded ${file.name} into ${$("model").value}: Train continues from it, Predict uses it`;
    setRunning(false);
  } catch (e) {
    showError(`loading ${file.name} failed: ${errorText(e)}`);
  }
}

async function predict(file) {
  try {
    const guesses = JSON.parse(await run.predict(file.name, new Uint8Array(await file.arrayBuffer())));
    $("guesses").innerHTML = "";
    for (const g of guesses) {
      const li = document.createElement("li");
      li.textContent = `${g.class} ${(100 * g.probability).toFixed(1)}%`;
      $("guesses").appendChild(li);
    }
  } catch (e) {
    showError(`prediction failed: ${errorText(e)}`);
  }
}

// The engine calls this when it panics (a bug in wgrad): the run cannot go on.
window.wgradFatal = (message) => showError(`wgrad stopped on an internal error (please report it): ${message}`);

async function main() {
  if (!navigator.gpu) {
    $("adapter").textContent = "Adapter: none";
    showError(
      "This browser does not offer WebGPU (navigator.gpu is missing). wgrad needs a browser with WebGPU " +
        "enabled (Chrome or Edge 113+, Safari 26+, Firefox 141+ on Windows) and the page served over " +
        "https:// or from localhost / 127.0.0.1.",
    );
    return;
  }
  await init();
  for (const name of modelNames()) {
    const o = document.createElement("option");
    o.value = o.textContent = name;
    $("model").appendChild(o);
  }
  fillFromQuery();
  try {
    // Some browsers leave the request unanswered where WebGPU is blocked: give up after 20 s.
    const silence = new Promise((_, reject) =>
      setTimeout(() => reject(new Error("the request for an adapter got no answer in 20 s")), 20000),
    );
    gpu = await Promise.race([Gpu.request(), silence]);
  } catch (e) {
    $("adapter").textContent = "Adapter: none";
    showError(
      "This browser has WebGPU but gave wgrad no GPU to use: it may support none of this machine's " +
        `GPUs, or WebGPU may be turned off in its settings or flags. (${errorText(e)})`,
    );
    return;
  }
  // GPUAdapterInfo's vendor and architecture (wgpu passes on only the description).
  const info = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))?.info;
  const names = [info?.vendor, info?.architecture, info?.device].filter((v) => v).join(" ");
  adapterName = names ? `${names} ${gpu.adapter}` : gpu.adapter;
  $("adapter").textContent = `Adapter: ${adapterName}`;
  draw();
  $("dataset").addEventListener("change", () => ($("files-label").hidden = $("dataset").value === "synthetic"));
  $("form").addEventListener("submit", (e) => {
    e.preventDefault();
    train();
  });
  $("stop").addEventListener("click", () => (stopRequested = true));
  $("download").addEventListener("click", download);
  $("weights").addEventListener("change", (e) => e.target.files[0] && loadWeights(e.target.files[0]));
  $("picture").addEventListener("change", (e) => e.target.files[0] && predict(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (run === null) return showError("train or load a model first");
    const f = e.dataTransfer.files[0];
    if (f) predict(f);
  });
  // For tests and automation: the state dict as base64, as the download button would save it.
  window.wgradStateDict = async () => {
    const bytes = await run.stateDict();
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  };
  if (query.get("autorun") === "1") train();
}

main().catch((e) => showError(`the page failed to start: ${errorText(e)}`));
