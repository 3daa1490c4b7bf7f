//! `wgrad eval`: accuracy and mean CrossEntropyLoss of a state dict or checkpoint over a split.

use super::model_args::WeightsArgs;
use super::progress::Progress;
use super::{data_args::DataArgs, DeviceArgs};
use crate::data::{DatasetKind, Split};
use crate::eval::Evaluator;
use crate::io::checkpoint;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: WeightsArgs,
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, value_enum, default_value = "test")]
    split: Split,
    #[arg(long = "batch-size", default_value_t = 256, value_parser = super::positive)]
    batch_size: u64,
    /// Print one JSON object (accuracy as a fraction, loss, images, dataset, split, synthetic,
    /// per_class: each class's name, images and accuracy, and confusion: confusion[label][predicted]
    /// image counts, as sklearn's confusion_matrix).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let device = a.device.select()?;
    let (kind, model) = a.weights.load()?;
    // A checkpoint is evaluated on its own dataset unless --dataset says otherwise.
    let recorded = checkpoint::meta_of(&a.weights.path).ok();
    let mut ds = a.data.defaulting_to(recorded.as_ref()).load(a.split)?;
    // An image folder's classes are its folders' names: labelled by the checkpoint's classes of
    // those names (a folder of some of them, in any order, scores as they were learnt).
    if let Some(m) = recorded.as_ref().filter(|m| ds.name == DatasetKind::ImageFolder.name() && m.classes != ds.classes)
    {
        let index = |c: &String| m.classes.iter().position(|k| k == c);
        if let Some(c) = ds.classes.iter().find(|c| index(c).is_none()) {
            anyhow::bail!(
                "{}: its class {c:?} is not one the checkpoint learnt ({})",
                ds.source.display(),
                m.classes.join(", ")
            );
        }
        let to: Vec<u8> = ds.classes.iter().map(|c| index(c).unwrap() as u8).collect();
        let d = std::sync::Arc::make_mut(&mut ds);
        d.labels.iter_mut().for_each(|l| *l = to[*l as usize]);
        d.classes = m.classes.clone();
    }
    if let Some(m) = recorded.filter(|m| m.classes != ds.classes) {
        eprintln!(
            "note: the checkpoint learnt {}'s classes, not {}'s: the scores below count its class i as {}'s class i",
            m.dataset, ds.name, ds.name
        );
    }
    let mut progress: Option<Progress> = None;
    let s =
        Evaluator::new(&device, &model, a.batch_size as usize).score_with(&model.params, &ds, &mut |done, total| {
            let p = progress.get_or_insert_with(|| Progress::new("eval", total, 0));
            p.set(done, done, || format!("batch {done}"));
        })?;
    drop(progress);
    let class = |c: usize| ds.classes.get(c).cloned().unwrap_or_else(|| format!("class {c}"));
    if a.json {
        let per_class: Vec<serde_json::Value> = (s.per_class.iter().enumerate())
            .map(|(c, p)| serde_json::json!({"class": class(c), "images": p.images, "accuracy": p.accuracy()}))
            .collect();
        let v = serde_json::json!({
            "dataset": ds.name, "split": format!("{:?}", a.split).to_lowercase(), "synthetic": ds.synthetic,
            "images": s.images, "accuracy": s.accuracy, "loss": s.loss, "device": device.name(), "model": kind.name(),
            "per_class": per_class,
            "confusion": s.confusion,
        });
        println!("{v}");
    } else {
        println!(
            "{} {:?}: accuracy {:.2}% ({} images), loss {:.4}",
            ds.name,
            a.split,
            100.0 * s.accuracy,
            s.images,
            s.loss
        );
        for (c, p) in s.per_class.iter().enumerate() {
            println!("  {:<12} {:6.2}% ({} images)", class(c), 100.0 * p.accuracy(), p.images);
        }
    }
    Ok(0)
}
