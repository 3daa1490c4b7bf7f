//! DataLoader: batch counts, drop_last, seeded shuffling with a new permutation each epoch,
//! ToTensor and Normalize; the synthetic set is deterministic and balanced.

mod common;
use common::*;
use std::sync::Arc;
use wgrad::data::loader::{Config, DataLoader};
use wgrad::data::{load, synthetic, DatasetKind, Split};

fn dataset() -> Arc<wgrad::data::Dataset> {
    Arc::new(wgrad::data::cifar10::load(&data_path("cifar10").join("bin"), Split::Train).unwrap())
}

#[test]
fn batches_cover_the_dataset_in_order_without_shuffle() {
    let ds = dataset();
    let dl = DataLoader::new(ds.clone(), Config::new(8)).unwrap();
    assert_eq!(dl.len(), 5);
    let batches: Vec<_> = dl.epoch(0, 0).collect();
    assert_eq!(batches.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![8, 8, 8, 8, 3]);
    let targets: Vec<i64> = batches.iter().flat_map(|b| b.targets.clone()).collect();
    assert_eq!(targets, ds.labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
    // ToTensor: u8 / 255, channel-planar like the file.
    let images = batches[0].images();
    assert_eq!(images[0], ds.images[0] as f32 / 255.0);
    assert_eq!(images[1024], ds.images[1024] as f32 / 255.0);
    // The bytes the images are made of (what `upload_pixels` sends).
    let pixels: Vec<u8> = batches.iter().flat_map(|b| b.pixels.clone()).collect();
    assert_eq!(pixels, ds.images);
    let dl = DataLoader::new(ds, Config { drop_last: true, ..Config::new(8) }).unwrap();
    assert_eq!(dl.len(), 4);
    assert_eq!(dl.epoch(0, 0).count(), 4);
}

#[test]
fn shuffle_is_seeded_and_new_each_epoch() {
    let ds = dataset();
    let cfg = Config { shuffle: true, seed: 5, ..Config::new(4) };
    let a = DataLoader::new(ds.clone(), cfg).unwrap();
    let b = DataLoader::new(ds.clone(), cfg).unwrap();
    assert_eq!(a.order(0), b.order(0), "same seed, same epoch: same order");
    assert_ne!(a.order(0), a.order(1), "a new permutation each epoch");
    let mut sorted = a.order(3);
    sorted.sort();
    assert_eq!(sorted, (0..ds.len()).collect::<Vec<_>>());
    let c = DataLoader::new(ds, Config { seed: 6, ..cfg }).unwrap();
    assert_ne!(a.order(0), c.order(0));
    // Starting mid-epoch yields the same batches as skipping.
    let all: Vec<_> = a.epoch(2, 0).collect();
    let tail: Vec<_> = a.epoch(2, 3).collect();
    assert_eq!(&all[3..], &tail[..]);
}

#[test]
fn normalize_applies_mean_and_std_per_channel() {
    let ds = dataset();
    let (m, s) = ([0.5, 0.4, 0.3], [0.2, 0.25, 0.5]);
    let dl = DataLoader::new(ds.clone(), Config { normalize: Some((m, s)), ..Config::new(2) }).unwrap();
    let b = dl.epoch(0, 0).next().unwrap();
    let images = b.images();
    for c in 0..3 {
        let want = (ds.images[c * 1024 + 7] as f32 / 255.0 - m[c]) / s[c];
        assert_eq!(images[c * 1024 + 7], want);
    }
    assert_eq!(*b.to_tensor, *dl.to_tensor());
    assert!(DataLoader::new(ds.clone(), Config { normalize: Some((m, [0.0, 1.0, 1.0])), ..Config::new(2) }).is_err());
    assert!(DataLoader::new(ds, Config::new(0)).is_err());
}

#[test]
fn the_synthetic_set_is_deterministic_balanced_and_says_so() {
    let dir = tempdir();
    let a = load(DatasetKind::Synthetic, &dir, Split::Test, false).unwrap();
    assert!(a.synthetic && a.describe().contains("SYNTHETIC"));
    assert_eq!(a.len(), synthetic::PER_FILE);
    let mut counts = [0usize; 10];
    a.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [synthetic::PER_FILE / 10; 10]);
    let other = tempdir();
    synthetic::write(&other.join("x"), synthetic::SEED).unwrap();
    let b = wgrad::data::cifar10::load_bin(&other.join("x"), Split::Test).unwrap();
    assert_eq!(a.images, b.images, "the same seed must give the same bytes");
    synthetic::write(&other.join("y"), synthetic::SEED + 1).unwrap();
    assert_ne!(a.images, wgrad::data::cifar10::load_bin(&other.join("y"), Split::Test).unwrap().images);
    assert_eq!(load(DatasetKind::Synthetic, &dir, Split::Train, false).unwrap().len(), 5 * synthetic::PER_FILE);
    // The browser's copy, generated in memory, is the CLI's to the byte.
    for split in [Split::Train, Split::Test] {
        let files = load(DatasetKind::Synthetic, &dir, split, false).unwrap();
        let memory = synthetic::generate(synthetic::SEED, split).unwrap();
        assert_eq!((memory.images, memory.labels), (files.images, files.labels), "{split:?}");
        assert_eq!((memory.name, memory.classes, memory.synthetic), (files.name, files.classes, true));
    }
}

/// The 3×32×32 image `img` cropped at (dy, dx) of its zero-padded 40×40 copy, then mirrored or
/// not: torchvision's RandomCrop(32, padding=4) and RandomHorizontalFlip(), written plainly.
fn cropped(img: &[u8], dy: usize, dx: usize, flip: bool) -> Vec<u8> {
    let mut out = vec![0u8; 3 * 32 * 32];
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                let (py, px) = (y + dy, if flip { 31 - x } else { x } + dx);
                if (4..36).contains(&py) && (4..36).contains(&px) {
                    out[(c * 32 + y) * 32 + x] = img[(c * 32 + py - 4) * 32 + px - 4];
                }
            }
        }
    }
    out
}

#[test]
fn augmentation_crops_and_flips_each_image_from_the_seed_epoch_and_batch() {
    let ds = dataset();
    let cfg = Config { shuffle: true, seed: 5, augment: true, ..Config::new(8) };
    let dl = DataLoader::new(ds.clone(), cfg).unwrap();
    let (order, batches): (Vec<usize>, Vec<_>) = (dl.order(2), dl.epoch(2, 0).collect());
    let mut seen = std::collections::HashSet::new();
    let (mut only_flipped, mut only_unflipped) = (0, 0);
    for (k, &i) in order.iter().enumerate() {
        let got = &batches[k / 8].pixels[(k % 8) * 3072..][..3072];
        let all = (0..=8).flat_map(|dy| (0..=8).flat_map(move |dx| [(dy, dx, false), (dy, dx, true)]));
        let found: Vec<_> = all.filter(|&(dy, dx, f)| cropped(ds.image(i), dy, dx, f) == got).collect();
        assert!(!found.is_empty(), "image {i} (position {k}) is no crop and flip of the original");
        only_flipped += usize::from(found.iter().all(|f| f.2));
        only_unflipped += usize::from(found.iter().all(|f| !f.2));
        seen.extend(found);
    }
    assert!(seen.len() > 20, "the crops vary: {seen:?}");
    assert!(only_flipped > 5 && only_unflipped > 5, "mirrored about half the time: {only_flipped}, {only_unflipped}");
    let (dys, dxs): (Vec<usize>, Vec<usize>) = seen.iter().map(|s| (s.0, s.1)).unzip();
    for d in [dys, dxs] {
        assert!(d.iter().min() < Some(&2) && d.iter().max() > Some(&6), "offsets over 0..=8: {d:?}");
    }
    // The same (seed, epoch, batch) gives the same images, from any starting batch; another
    // epoch other ones.
    let again: Vec<_> = dl.epoch(2, 3).collect();
    assert_eq!(again[0].pixels, batches[3].pixels);
    assert_ne!(dl.batch(3, &order, 3).pixels, batches[3].pixels);
    // Off, the images are the originals.
    let plain = DataLoader::new(ds.clone(), Config { augment: false, ..cfg }).unwrap();
    let b = plain.batch(2, &order, 0);
    assert_eq!(&b.pixels[..3072], ds.image(order[0]));
}
