//! `wgrad convert`: the weights of any file `--weights` reads (PyTorch's `.pt`/`.pth`: a state
//! dict, a whole module, a checkpoint's dict; f16 or bf16; a wgrad checkpoint) written as the
//! model's plain safetensors state dict, with PyTorch's names: what the browser page loads, and
//! `model.load_state_dict(safetensors.torch.load_file(path))` in PyTorch.

use super::model_args::WeightsArgs;
use crate::io::safetensors::{has_metadata_key, CONVERT_MARK};
use crate::io::state_dict;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: WeightsArgs,
    /// The safetensors file to write (replacing only one that `wgrad convert` wrote).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::io::check_named_output(&a.out, "a state dict `wgrad convert` wrote", |p| has_metadata_key(p, CONVERT_MARK))?;
    let (kind, model) = a.weights.load()?;
    let mark = serde_json::json!({ "model": kind.name(), "from": a.weights.path.display().to_string() });
    state_dict::save(&a.out, &model.params, Some(HashMap::from([(CONVERT_MARK.to_string(), mark.to_string())])))?;
    println!(
        "wrote {}'s state dict ({} entries, {} parameters) from {} to {}",
        kind.name(),
        model.params.specs.len(),
        model.params.count(),
        a.weights.path.display(),
        a.out.display()
    );
    Ok(0)
}
