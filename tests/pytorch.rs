//! PyTorch's own files (`torch.save`: .pt, .pth), as tests/golden/make_goldens.py's `torch_files`
//! wrote them from the weights of tests/data/residual_init.safetensors: every way PyTorch saves a
//! state dict (the ZIP archive, the legacy format, a training checkpoint's dict, the whole module,
//! f16, nn.DataParallel, an nn.Sequential of the same layers, whose children PyTorch names by
//! position) loads into the same model, entry for entry; what cannot be read is an error naming the
//! file and the tensor, never a panic.

mod common;
use common::*;
use std::path::PathBuf;
use wgrad::io::safetensors::{Array, File};
use wgrad::io::state_dict;
use wgrad::nn::{Model, ParamSet};
use wgrad::ops::interface::Role;

fn torch_file(name: &str) -> PathBuf {
    data_path(&format!("torch/{name}"))
}

fn residual() -> Model {
    Model::new(&residual_net(), [3, 8, 8], 0).unwrap()
}

/// The model's entries as PyTorch saved them with safetensors.
fn expected() -> ParamSet {
    let mut m = residual();
    state_dict::load_into(&data_path("residual_init.safetensors"), &mut m.params).unwrap();
    m.params
}

fn load(path: &std::path::Path) -> wgrad::Result<ParamSet> {
    let mut m = residual();
    state_dict::load_into(path, &mut m.params)?;
    Ok(m.params)
}

/// Every entry of `got` equals `want`'s, bit for bit (counters too), after `f` of each value.
fn assert_entries(name: &str, got: &ParamSet, want: &ParamSet, f: impl Fn(f32) -> f32) {
    assert_eq!(got.specs.len(), want.specs.len());
    for (i, s) in want.specs.iter().enumerate() {
        let w: Vec<u32> = want.get(i).iter().map(|&v| f(v).to_bits()).collect();
        let g: Vec<u32> = got.get(i).iter().map(|v| v.to_bits()).collect();
        assert_eq!(g, w, "{name}: {}", s.key);
        if s.role == Role::Counter {
            assert_eq!(got.counter(i), want.counter(i), "{name}: {}", s.key);
        }
    }
    assert!(want.specs.iter().any(|s| s.role == Role::Counter), "the counters are compared too");
}

#[test]
fn every_way_pytorch_saves_a_state_dict_loads_the_same_weights() {
    let want = expected();
    for name in [
        "residual_state_dict.pth",
        "residual_legacy.pth",
        "residual_checkpoint.pth",
        "residual_model.pth",
        "residual_data_parallel.pth",
        "residual_sequential.pth",
    ] {
        let got = load(&torch_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_entries(name, &got, &want, |v| v);
    }
}

#[test]
fn an_f16_state_dict_loads_as_its_values_in_f32() {
    let got = load(&torch_file("residual_half.pth")).unwrap();
    assert_entries("residual_half.pth", &got, &expected(), |v| half::f16::from_f32(v).to_f32());
    // Not the f32 values themselves: the rounding happened.
    let want = expected();
    let i = want.index("conv1.weight").unwrap();
    assert_ne!(got.get(i), want.get(i));
}

#[test]
fn a_training_checkpoint_keeps_every_tensor_by_its_path() {
    let path = torch_file("residual_checkpoint.pth");
    let f = File::read(&path).unwrap();
    // fc.weight was saved as a transposed view of its storage: read in its own order.
    let want = expected();
    let fc = want.index("fc.weight").unwrap();
    assert_eq!(f.f32(&path, "model_state_dict.fc.weight").unwrap(), (&[10usize, 16][..], want.get(fc)));
    // The optimizer's momentum buffers, beside the model's state dict (conv1.weight is the first
    // parameter).
    let (shape, _) = f.f32(&path, "optimizer_state_dict.state.0.momentum_buffer").unwrap();
    assert_eq!(shape, &[8, 3, 3, 3]);
    assert!(
        matches!(f.tensors.get("model_state_dict.bn1.num_batches_tracked"), Some(Array::I64 { data, .. }) if data == &[0])
    );
    // `select` takes the model's dictionary and nothing else: the optimizer's tensors are not
    // unexpected keys.
    let mut m = residual();
    let chosen = state_dict::select(&path, &f, &m.params).unwrap();
    assert_eq!(chosen.tensors.len(), m.params.specs.len());
    state_dict::apply(&path, &f, &mut m.params, |_| true).unwrap();
}

/// What cannot be loaded is refused by name: two state dicts that both fit (which one is meant is
/// not wgrad's guess to make), tensors of dtypes no state dict of wgrad's holds, and a view that
/// repeats its storage (one float expanded to 10^9 would take 4 GB from a file of 1.5 KB), the
/// last before anything is read.
#[test]
fn what_cannot_be_loaded_is_refused_by_name() {
    let cases: [(&str, &[&str]); 3] = [
        ("two_models.pth", &["under each of ema, model", "torch.save(checkpoint['ema'], path)"]),
        ("mask.pth", &["ids has dtype I32, mask has dtype Bool"]),
        ("expanded.pth", &["4000000000 bytes once read"]),
    ];
    for (name, expect) in cases {
        let err = load(&torch_file(name)).unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
        for e in expect {
            assert!(err.contains(e), "{name}: {err}");
        }
    }
}

#[test]
fn a_batch_saved_by_torch_reads_as_the_same_batch_in_safetensors() {
    let pt = File::read(&torch_file("tudui_batch1.pt")).unwrap();
    let st = File::read(&data_path("tudui_batch1.safetensors")).unwrap();
    assert_eq!(pt.tensors, st.tensors);
}

/// Cut anywhere, a PyTorch file is refused by name; with any byte changed, it loads or is refused
/// by name, and never panics.
#[test]
fn a_cut_or_damaged_file_is_refused_by_name() {
    let dir = tempdir();
    for name in ["residual_state_dict.pth", "residual_legacy.pth"] {
        let bytes = std::fs::read(torch_file(name)).unwrap();
        let path = dir.join(name);
        let step = bytes.len() / 97;
        for cut in (4..bytes.len()).step_by(step) {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = load(&path).expect_err(&format!("{name} cut at {cut} of {}", bytes.len())).to_string();
            assert!(err.contains(name), "{err}");
        }
        let mut rng = rng(7);
        for _ in 0..300 {
            let mut damaged = bytes.clone();
            for _ in 0..3 {
                let at = rand::Rng::random_range(&mut rng, 0..damaged.len());
                damaged[at] = rand::Rng::random(&mut rng);
            }
            std::fs::write(&path, &damaged).unwrap();
            if let Err(e) = load(&path) {
                assert!(e.to_string().contains(name), "{e}");
            }
        }
    }
}

/// A safetensors state dict of f64, f16 or bf16 tensors loads as f32 too, as `load_state_dict`
/// converts them.
#[test]
fn safetensors_of_any_float_width_load_as_f32() {
    use safetensors::tensor::{Dtype, TensorView};
    let values = [0.1f64, -2.5, 1.0 / 3.0, 65504.0, 1e-7];
    let f64s: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16s: Vec<u8> = values.iter().flat_map(|&v| half::f16::from_f64(v).to_le_bytes()).collect();
    let bf16s: Vec<u8> = values.iter().flat_map(|&v| half::bf16::from_f64(v).to_le_bytes()).collect();
    let views = [
        ("a", TensorView::new(Dtype::F64, vec![5], &f64s).unwrap()),
        ("b", TensorView::new(Dtype::F16, vec![5], &f16s).unwrap()),
        ("c", TensorView::new(Dtype::BF16, vec![1, 5], &bf16s).unwrap()),
    ];
    let bytes = safetensors::tensor::serialize(views, None).unwrap();
    let path = std::path::Path::new("widths.safetensors");
    let f = File::parse(path, &bytes).unwrap();
    let want = |to: fn(f64) -> f32| values.iter().map(|&v| to(v)).collect::<Vec<f32>>();
    assert_eq!(f.f32(path, "a").unwrap(), (&[5usize][..], &want(|v| v as f32)[..]));
    assert_eq!(f.f32(path, "b").unwrap().1, want(|v| half::f16::from_f64(v).to_f32()));
    assert_eq!(f.f32(path, "c").unwrap(), (&[1usize, 5][..], &want(|v| half::bf16::from_f64(v).to_f32())[..]));
    // Other dtypes are still refused by name.
    let ints = safetensors::tensor::serialize([("n", TensorView::new(Dtype::I32, vec![1], &[0; 4]).unwrap())], None);
    let err = File::parse(path, &ints.unwrap()).unwrap_err().to_string();
    assert!(err.contains("n has dtype I32"), "{err}");
}

/// The tutorial's Tudui holds its layers in an unnamed `nn.Sequential(Conv2d, MaxPool2d, …)`,
/// whose children PyTorch names by position: `model1.0.weight` for wgrad's `model1.conv1.weight`.
/// A state dict named that way loads as well.
#[test]
fn tudui_reads_the_tutorials_names_for_its_entries() {
    let m = wgrad::models::tudui(0);
    let file = File::read(&data_path("tudui_init.safetensors")).unwrap();
    let layers = [("conv1", 0), ("conv2", 2), ("conv3", 4), ("fc1", 7), ("fc2", 8)];
    let tutorial =
        |k: &str| layers.iter().fold(k.to_string(), |k, (n, i)| k.replace(&format!(".{n}."), &format!(".{i}.")));
    let renamed = File {
        tensors: file.tensors.iter().map(|(k, v)| (tutorial(k), v.clone())).collect(),
        metadata: Default::default(),
    };
    assert!(renamed.tensors.contains_key("model1.7.weight"), "{:?}", renamed.tensors.keys());
    let mut params = m.params.clone();
    state_dict::apply(std::path::Path::new("tutorial.pth"), &renamed, &mut params, |_| true).unwrap();
    assert_eq!(params, tudui_from_pytorch().params);
}

/// A safetensors file whose header is 640 bytes starts `\x80\x02`, as PyTorch's legacy format
/// does: it is read as safetensors all the same.
#[test]
fn a_safetensors_header_of_640_bytes_is_not_taken_for_pytorchs() {
    let mut header = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.to_string();
    header.push_str(&" ".repeat(640 - header.len()));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    assert_eq!(bytes[..2], [0x80, 0x02]);
    bytes.extend(header.as_bytes());
    bytes.extend([1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()));
    let dir = tempdir();
    let path = dir.join("w.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(File::read(&path).unwrap().f32(&path, "w").unwrap().1, [1.5, -2.0]);
    assert!(wgrad::io::safetensors::read_metadata(&path).unwrap().is_empty());
}
