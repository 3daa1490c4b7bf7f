//! Your own pictures in torchvision's ImageFolder layout: classes in sorted order of their folders,
//! each class's files then its sub-folders', PNG, JPEG, BMP, PPM/PGM, TIFF and WebP of any size
//! framed as CIFAR-10's images, other files left out; bad folders refused by name; and through the
//! binary: a model of as many outputs as there are classes, trained, evaluated, asked to predict
//! and resumed (not with other classes), a plain state dict of another class count evaluated, and
//! weights for other classes fine-tuned with a fresh classifier.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use wgrad::data::image::{decode_pixels, Framing};
use wgrad::data::{self, DatasetKind, Split};
use wgrad::io::safetensors::File;
use wgrad::testing::assert_close;

fn wgrad(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgrad")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A picture of `w`×`h` around `rgb` (with some texture), in the format its extension names.
fn picture(path: &Path, w: u32, h: u32, rgb: [u8; 3], seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let t = ((x * 7 + y * 13 + seed * 31) % 41) as u8;
        image::Rgb(rgb.map(|c| c.saturating_add(t)))
    });
    img.save(path).unwrap();
}

const COLOURS: [(&str, [u8; 3]); 3] = [("red", [200, 30, 30]), ("blue", [30, 40, 200]), ("green", [30, 180, 50])];

/// train/ and test/ with a folder per colour (written out of order), `n` pictures each in train/,
/// of several sizes, PNG and JPEG, some in a sub-folder whose name sorts before theirs, and a text
/// file beside them.
fn folder(n: u32) -> TestDir {
    let d = tempdir();
    for (split, count) in [("train", n), ("test", n / 2)] {
        for (name, rgb) in COLOURS {
            for i in 0..count {
                let ext = if i % 3 == 0 { "jpg" } else { "png" };
                let sub = if i % 4 == 3 { "extra/" } else { "" };
                picture(&d.join(format!("{split}/{name}/{sub}p{i:03}.{ext}")), 20 + 7 * i, 50 - i % 9, rgb, i);
            }
            std::fs::write(d.join(format!("{split}/{name}/README.txt")), "not a picture").unwrap();
        }
    }
    d
}

#[test]
fn an_image_folder_reads_as_torchvisions_imagefolder() {
    let d = folder(8);
    let ds = data::load(DatasetKind::ImageFolder, &d, Split::Train, false).unwrap();
    assert_eq!(ds.name, "ImageFolder");
    assert!(ds.held_out.is_none() && !ds.describe().contains("test split"), "{}", ds.describe());
    assert_eq!(ds.classes, ["blue", "green", "red"], "sorted folder names");
    assert_eq!(ds.len(), 24);
    assert_eq!(ds.labels, [[0u8; 8], [1; 8], [2; 8]].concat());
    // blue's files, then its sub-folder's (though "extra" sorts first): p000, p001, p002, p004, p005,
    // p006, then extra/p003, extra/p007.
    let order = [0, 1, 2, 4, 5, 6, 3, 7];
    for (k, &i) in order.iter().enumerate() {
        let ext = if i % 3 == 0 { "jpg" } else { "png" };
        let sub = if i % 4 == 3 { "extra/" } else { "" };
        let path = d.join(format!("train/blue/{sub}p{i:03}.{ext}"));
        let want = decode_pixels(&path, &std::fs::read(&path).unwrap(), Framing::Colour).unwrap();
        assert_eq!(ds.image(k), &want[..], "image {k} is {}", path.display());
    }
    // Colour, 32×32, channel-planar: a red picture's first plane is the brightest.
    let red = ds.image(16);
    let plane = |c: usize| red[c * 1024..(c + 1) * 1024].iter().map(|&v| v as u32).sum::<u32>();
    assert!(plane(0) > 2 * plane(1) && plane(0) > 2 * plane(2), "{} {} {}", plane(0), plane(1), plane(2));

    let test = data::load(DatasetKind::ImageFolder, &d, Split::Test, false).unwrap();
    assert_eq!((test.len(), test.classes.clone()), (12, ds.classes.clone()));
    // val/ where there is no test/.
    std::fs::rename(d.join("test"), d.join("val")).unwrap();
    let val = data::load(DatasetKind::ImageFolder, &d, Split::Test, false).unwrap();
    assert_eq!(val.len(), 12);
    assert!(val.source.ends_with("val"), "{}", val.source.display());
}

/// A folder of class folders alone (no train/, test/ or val/): a fifth of each class's pictures
/// (rounded, at least one of two or more) are the test split, the same ones at every load, the
/// rest the training split; together they are the folder's pictures, each once.
#[test]
fn a_folder_without_splits_holds_out_a_fifth_of_each_class() {
    let d = tempdir();
    for (k, (name, n)) in [("red", 10), ("blue", 6), ("green", 1), ("grey", 2)].into_iter().enumerate() {
        for i in 0..n {
            picture(&d.join(format!("{name}/p{i:02}.png")), 16, 16, [20 * i as u8, 60 * k as u8, 50], i);
        }
    }
    let load = |split| data::load(DatasetKind::ImageFolder, &d, split, false).unwrap();
    let (train, test) = (load(Split::Train), load(Split::Test));
    assert_eq!(train.classes, ["blue", "green", "grey", "red"]);
    assert_eq!(test.classes, train.classes);
    let count = |ds: &data::Dataset, c: u8| ds.labels.iter().filter(|&&l| l == c).count();
    // blue: 6 → 1 held out, green: 1 → none, grey: 2 → 1, red: 10 → 2.
    assert_eq!([0, 1, 2, 3].map(|c| count(&test, c)), [1, 0, 1, 2]);
    assert_eq!([0, 1, 2, 3].map(|c| count(&train, c)), [5, 1, 1, 8]);
    let images = |ds: &data::Dataset| (0..ds.len()).map(|i| ds.image(i).to_vec()).collect::<Vec<_>>();
    let mut all = [images(&train), images(&test)].concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 19, "every picture once");
    assert_eq!(images(&load(Split::Test)), images(&test), "the same pictures at every load");
    assert_eq!((train.held_out, test.held_out), (Some(0.2), Some(0.2)));
    assert!(train.describe().contains("20% of each class's pictures, the same ones every run, are the test split"));
    // The same split trains and evaluates through the binary.
    let runs = tempdir();
    let out = runs.join("run");
    let data = ["--dataset", "image-folder", "--data-dir", s(&d)];
    let (code, _, err) = wgrad(
        &[&["train", "--device", "cpu", "--epochs", "1", "--batch-size", "5", "--out", s(&out)][..], &data].concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("ImageFolder Train split: 15 images") && err.contains("Test split: 4 images"), "{err}");
    let (code, stdout, err) = wgrad(&["eval", "--device", "cpu", "--weights", s(&out), "--data-dir", s(&d), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["images"], 4, "{v}");
    // Another fraction: blue 6 → 3, green 1 → none, grey 2 → 1, red 10 → 5 (at most all but one).
    let half = data::load_image_folder(&d, Split::Test, 0.5).unwrap();
    assert_eq!([0, 1, 2, 3].map(|c| count(&half, c)), [3, 0, 1, 5]);
    assert_eq!(half.held_out, Some(0.5));
    assert!(half.describe().contains("50% of each class's pictures"), "{}", half.describe());
    let most = data::load_image_folder(&d, Split::Train, 0.9).unwrap();
    assert_eq!([0, 1, 2, 3].map(|c| count(&most, c)), [1, 1, 1, 1]);
    // Through the binary: recorded, taken by eval and --resume, a different one refused.
    let out = runs.join("half");
    let (code, _, err) = wgrad(
        &[
            &[
                "train",
                "--device",
                "cpu",
                "--epochs",
                "1",
                "--batch-size",
                "5",
                "--test-fraction",
                "0.5",
                "--out",
                s(&out),
            ][..],
            &data,
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Train split: 10 images") && err.contains("Test split: 9 images"), "{err}");
    let meta = wgrad::io::checkpoint::meta_of(&out).unwrap();
    assert_eq!(meta.test_fraction, Some(0.5));
    let (code, stdout, err) = wgrad(&["eval", "--device", "cpu", "--weights", s(&out), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["images"], 9, "the checkpoint's held-out pictures: {v}");
    let (code, _, err) =
        wgrad(&["train", "--device", "cpu", "--epochs", "2", "--resume", s(&out), "--test-fraction", "0.3"]);
    assert_eq!(code, 1);
    assert!(err.contains("test fraction 0.5 (this run: 0.3)"), "{err}");
    let (code, _, err) = wgrad(&["eval", "--device", "cpu", "--weights", s(&out), "--test-fraction", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("1 is not in (0, 1)"), "{err}");
    let grid = runs.join("grid.png");
    let show = ["show", "--dataset", "synthetic", "--test-fraction", "0.5", "--data-dir", s(&runs), "--out", s(&grid)];
    let (code, _, err) = wgrad(&show);
    assert_eq!(code, 1);
    assert!(!grid.exists());
    assert!(err.contains("--test-fraction 0.5: it splits a folder of class folders alone"), "{err}");
    // A run's folder among the class folders would be read as a class: refused, before it is made.
    let inside = d.join("runs/pets");
    let (code, _, err) = wgrad(&[&["train", "--device", "cpu", "--out", s(&inside)][..], &data].concat());
    assert_eq!(code, 1);
    assert!(
        err.contains("runs/pets: the run's folder is inside the pictures of")
            && err.contains("--out names a folder outside them"),
        "{err}"
    );
    assert!(!d.join("runs").exists(), "the refused run made its folder");
    // With train/ and test/, beside them is fine (train_eval_predict_and_resume_on_three_classes
    // trains into such a folder), inside either is not.
    std::fs::create_dir_all(d.join("train")).unwrap();
    std::fs::rename(d.join("red"), d.join("train/red")).unwrap();
    assert!(!data::image_folder::reads_into(&d, &d.join("run")));
    assert!(data::image_folder::reads_into(&d, &d.join("train/red/run")));
    assert!(data::image_folder::reads_into(&d, &d.join("test/run")), "test/ not made yet");
    assert!(!data::image_folder::reads_into(&d, &d.join("train")));
}

/// BMP, PPM, PGM, TIFF and WebP pictures (torchvision's other extensions, in any case) read as
/// PNGs do: each decodes to the pixels it was written with.
#[test]
fn bmp_ppm_pgm_tiff_and_webp_pictures_are_read_too() {
    let d = tempdir();
    let files = ["a.bmp", "b.ppm", "c.PGM", "d.tif", "e.TIFF", "f.webp"];
    for split in ["train", "test"] {
        for (name, rgb) in COLOURS {
            for (i, f) in files.iter().enumerate() {
                let path = d.join(format!("{split}/{name}/{f}"));
                if f.ends_with("PGM") {
                    let grey = image::GrayImage::from_fn(12, 12, |x, y| image::Luma([(x * 20 + y) as u8]));
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    grey.save_with_format(&path, image::ImageFormat::Pnm).unwrap();
                } else {
                    picture(&path, 9 + 8 * (i as u32 % 2), 17 - 8 * (i as u32 % 2), rgb, i as u32);
                }
            }
        }
    }
    let ds = data::load(DatasetKind::ImageFolder, &d, Split::Train, false).unwrap();
    assert_eq!(ds.len(), 3 * files.len());
    for (k, f) in files.iter().enumerate() {
        let path = d.join("train/blue").join(f);
        let want = decode_pixels(&path, &std::fs::read(&path).unwrap(), Framing::Colour).unwrap();
        assert_eq!(ds.image(k), &want[..], "{f}");
        if !f.ends_with("PGM") {
            // Lossless formats: the pixels written, resized as a PNG of them is.
            let png = d.join(format!("{f}.png"));
            image::open(&path).unwrap().save(&png).unwrap();
            let from_png = decode_pixels(&png, &std::fs::read(&png).unwrap(), Framing::Colour).unwrap();
            assert_eq!(want, from_png, "{f} decodes to other pixels than its PNG");
            let colour = [want[0], want[1024], want[2048]];
            assert!(colour[2] > colour[0] && colour[2] > colour[1], "{f}: not blue: {colour:?}");
        }
    }
    // The grey picture is replicated into three equal planes.
    let grey = ds.image(2);
    assert!(grey[..1024] == grey[1024..2048] && grey[..1024] == grey[2048..], "a PGM's planes differ");
}

/// The pictures are decoded once: kept beside them (data::image_folder::CACHE) by path, size and
/// modification time, read back at the next load, decoded again when changed; a file of that
/// name that is not wgrad's is left alone.
#[test]
fn decoded_pictures_are_kept_beside_them() {
    use data::image_folder::CACHE;
    let d = folder(4);
    let load = |split| data::load(DatasetKind::ImageFolder, &d, split, false);
    let first = load(Split::Train).unwrap();
    let cache = d.join(CACHE);
    let written = std::fs::read(&cache).unwrap();
    assert!(load(Split::Train).unwrap().images == first.images, "from the cache");
    assert!(std::fs::read(&cache).unwrap() == written, "nothing new: not written again");
    let test = load(Split::Test).unwrap();
    assert!(std::fs::read(&cache).unwrap().len() > written.len(), "the test split's pictures added");
    assert!(load(Split::Test).unwrap().images == test.images);
    // A picture overwritten with other bytes of its size, its time set back: the cache's pixels
    // (what proves the cache is read); once its time moves, it is decoded again (and refused).
    let pic = d.join("train/red/p000.jpg");
    let (bytes, when) = (std::fs::read(&pic).unwrap(), std::fs::metadata(&pic).unwrap().modified().unwrap());
    let set_time = |t| std::fs::File::options().write(true).open(&pic).unwrap().set_modified(t).unwrap();
    std::fs::write(&pic, vec![b'x'; bytes.len()]).unwrap();
    set_time(when);
    assert!(load(Split::Train).unwrap().images == first.images, "the changed picture was decoded");
    set_time(when + std::time::Duration::from_secs(1));
    let e = load(Split::Train).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("p000.jpg") && e.contains("not a PNG, JPEG"), "{e}");
    std::fs::write(&pic, &bytes).unwrap();
    assert!(load(Split::Train).unwrap().images == first.images);
    // Someone else's file of that name stays as it is, and the pictures are decoded.
    std::fs::write(&cache, "mine").unwrap();
    assert!(load(Split::Train).unwrap().images == first.images);
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), "mine");
}

#[test]
fn a_folder_that_is_not_an_image_folder_is_refused_by_name() {
    let load =
        |d: &Path, split| data::load(DatasetKind::ImageFolder, d, split, false).map(|_| ()).unwrap_err().to_string();
    let d = folder(4);
    // A test class the training split lacks: its labels would mean nothing.
    std::fs::create_dir_all(d.join("test/purple")).unwrap();
    picture(&d.join("test/purple/0.png"), 8, 8, [150, 0, 150], 0);
    let e = load(&d, Split::Test);
    assert!(e.contains("test/purple") && e.contains("a class the training split has no folder of"), "{e}");
    std::fs::remove_dir_all(d.join("test/purple")).unwrap();
    // A TIFF and a WebP cut short.
    for f in ["cut.tif", "cut.webp"] {
        let path = d.join("train/red").join(f);
        picture(&path, 30, 30, [1, 2, 3], 0);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = load(&d, Split::Train);
        assert!(e.contains(f) && e.contains("cannot decode"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }
    // A file named .png that is not one.
    std::fs::write(d.join("train/red/broken.png"), b"not a png").unwrap();
    let e = load(&d, Split::Train);
    assert!(e.contains("broken.png") && e.contains("not a PNG, JPEG, BMP, PPM/PGM, TIFF or WebP image"), "{e}");
    std::fs::remove_file(d.join("train/red/broken.png")).unwrap();
    // A training class without pictures.
    std::fs::create_dir_all(d.join("train/empty")).unwrap();
    let e = load(&d, Split::Train);
    assert!(e.contains("train/empty") && e.contains("holds no pictures"), "{e}");
    std::fs::remove_dir_all(d.join("train/empty")).unwrap();
    // No train/ at all, nor class folders: loose pictures.
    let loose = tempdir();
    picture(&loose.join("a.png"), 8, 8, [10, 20, 30], 0);
    let e = load(&loose, Split::Train);
    assert!(e.contains("no train/ folder of pictures here") && e.contains("test/ (or val/)"), "{e}");
    assert!(e.contains("or the class folders alone (cat/001.png, a fifth of them held out for testing)"), "{e}");
    // More classes than labels (bytes) hold.
    let many = tempdir();
    for c in 0..257 {
        std::fs::create_dir_all(many.join(format!("train/c{c:03}"))).unwrap();
    }
    let e = load(&many, Split::Train);
    assert!(e.contains("holds 257 class folders; wgrad trains at most 256 classes"), "{e}");
    // The same without train/: an unsplit folder says so too.
    let e = load(&many.join("train"), Split::Train);
    assert!(e.contains("holds 257 class folders; wgrad trains at most 256 classes"), "{e}");
}

#[test]
fn train_eval_predict_and_resume_on_three_classes() {
    let d = folder(12);
    let out = d.join("run");
    let data = ["--dataset", "image-folder", "--data-dir", s(&d)];
    let (code, stdout, err) = wgrad(
        &[&["train", "--device", "cpu", "--epochs", "2", "--batch-size", "6", "--out", s(&out)][..], &data[..]]
            .concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("ImageFolder Train split: 36 images"), "{err}");
    assert!(stdout.contains("training tudui (145123 parameters)"), "three outputs: {stdout}");
    // The checkpoint's classifier has three outputs, and it records the class names.
    let ck = wgrad::io::checkpoint::resolve(&out).unwrap();
    let meta = wgrad::io::checkpoint::meta_of(&ck).unwrap();
    assert_eq!(
        (meta.dataset.as_str(), meta.classes.clone()),
        ("ImageFolder", vec!["blue".into(), "green".into(), "red".into()])
    );
    let file = wgrad::io::safetensors::File::read(&ck).unwrap();
    assert!(
        matches!(&file.tensors["model1.fc2.weight"], wgrad::io::safetensors::Array::F32 { shape, .. } if shape == &[3, 64])
    );

    // It records the folder it read, absolute.
    assert_eq!(meta.data_dir.as_deref(), Some(s(&std::fs::canonicalize(&d).unwrap())));

    // eval takes the checkpoint's dataset and, run from anywhere, its folder; --data-dir names
    // another.
    let elsewhere = tempdir();
    let out_abs = std::fs::canonicalize(&out).unwrap();
    let run_in = |dir: &Path, args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_wgrad")).args(args).current_dir(dir).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, stdout, err) = run_in(&elsewhere, &["eval", "--device", "cpu", "--weights", s(&out_abs)]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("ImageFolder Test: accuracy") && stdout.contains("  red "), "{stdout}");
    assert!(err.contains(&format!("18 images from {}", s(&std::fs::canonicalize(d.join("test")).unwrap()))), "{err}");
    let (code, stdout, err) = wgrad(&["eval", "--device", "cpu", "--weights", s(&out), "--data-dir", s(&d)]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("ImageFolder Test: accuracy") && stdout.contains("  red "), "{stdout}");
    let (code, _, err) = wgrad(&["eval", "--device", "cpu", "--weights", s(&out), "--data-dir", s(&d.join("nowhere"))]);
    assert_eq!(code, 1);
    assert!(err.contains("no test/ or val/ folder of pictures here") && err.contains("--data-dir names it"), "{err}");
    // A folder of test pictures alone (no train/), of some of the classes: each picture scored as
    // the class of its folder's name (red is the checkpoint's class 2, not the folder's 1).
    let only = d.join("only-test");
    for (name, rgb) in [COLOURS[0], COLOURS[1]] {
        for i in 0..3 {
            picture(&only.join(format!("val/{name}/{i}.png")), 10 + i, 10, rgb, i);
        }
    }
    let (code, stdout, err) =
        wgrad(&["eval", "--device", "cpu", "--weights", s(&out), "--data-dir", s(&only), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let images: Vec<u64> = v["per_class"].as_array().unwrap().iter().map(|c| c["images"].as_u64().unwrap()).collect();
    assert_eq!(images, [3, 0, 3], "blue and red, as the checkpoint's classes 0 and 2: {v}");
    assert!(!err.contains("note: the checkpoint learnt"), "{err}");
    // A class the checkpoint never learnt is refused, named.
    picture(&only.join("val/purple/0.png"), 10, 10, [150, 0, 150], 0);
    let (code, _, err) = wgrad(&["eval", "--device", "cpu", "--weights", s(&out), "--data-dir", s(&only)]);
    assert_eq!(code, 1);
    assert!(err.contains("its class \"purple\" is not one the checkpoint learnt (blue, green, red)"), "{err}");

    // predict names the folders' classes.
    let pic = d.join("test/green/p000.jpg");
    let (code, stdout, err) = wgrad(&["predict", "--device", "cpu", "--weights", s(&out), s(&pic)]);
    assert_eq!(code, 0, "{err}");
    let names: Vec<&str> =
        stdout.trim().rsplit(": ").next().unwrap().split(", ").map(|c| c.split(' ').next().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["blue", "green", "red"], "{stdout}");

    // predict takes a folder of pictures too, in sorted order, and refuses one without any.
    let (code, stdout, err) = wgrad(&["predict", "--device", "cpu", "--weights", s(&out), s(&d.join("test/red"))]);
    assert_eq!(code, 0, "{err}");
    // Its own pictures (p000–p005 but p003, which is in extra/), not its sub-folders' nor the README.
    let names: Vec<&str> = stdout.lines().map(|l| l.split(": ").next().unwrap().rsplit('/').next().unwrap()).collect();
    assert_eq!(names, ["p000.jpg", "p001.png", "p002.png", "p004.png", "p005.png"], "{stdout}");
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, err) = wgrad(&["predict", "--device", "cpu", "--weights", s(&out), s(&pic), s(&empty)]);
    assert_eq!(code, 1);
    assert!(err.contains("empty: a folder without pictures"), "{err}");

    // Resumed with another seed, the run is refused before any picture is read (here there are
    // none to read).
    let (code, _, err) =
        wgrad(&["train", "--device", "cpu", "--resume", s(&out), "--seed", "5", "--data-dir", s(&d.join("nowhere"))]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("seed 0 (this run: 5)") && !err.contains("no train/ folder"), "{err}");
    // Resumed with a fourth class, the run is refused, naming both sets of classes.
    picture(&d.join("train/yellow/0.png"), 9, 9, [220, 220, 0], 0);
    let (code, _, err) =
        wgrad(&[&["train", "--device", "cpu", "--epochs", "3", "--resume", s(&out)][..], &data[2..]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("classes blue, green, red (this run: blue, green, red, yellow)"), "{err}");
    std::fs::remove_dir_all(d.join("train/yellow")).unwrap();
    // Resumed from anywhere, the run reads its own folder.
    let (code, _, err) = run_in(&elsewhere, &["train", "--device", "cpu", "--epochs", "3", "--resume", s(&out_abs)]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("ImageFolder Train split: 36 images"), "{err}");

    // Moved, the folder the checkpoint names is not there: said so, with the way out.
    let moved = elsewhere.join("moved");
    std::fs::rename(&d, &moved).unwrap();
    let (code, _, err) = wgrad(&["eval", "--device", "cpu", "--weights", s(&moved.join("run"))]);
    std::fs::rename(&moved, &d).unwrap();
    assert_eq!(code, 1);
    assert!(
        err.contains(s(&std::fs::canonicalize(&d).unwrap()))
            && err
                .contains("the checkpoint's data folder is not there (moved?): --data-dir names where the data is now"),
        "{err}"
    );
}

/// A plain state dict (as PyTorch saves `model.state_dict()`) of a network with five outputs is
/// recognised by its classifier's shape and evaluated on five classes.
/// An uneven folder (12 red pictures, 6 blue, 6 green) trained with `--class-weights balanced`:
/// each class weighs 24 / (3 × its pictures), recorded in the checkpoint; a resume with other
/// weights, and a count of weights that is not the folder's, are refused by name.
#[test]
fn balanced_class_weights_even_out_an_uneven_folder() {
    let d = folder(6);
    for i in 0..6 {
        picture(&d.join(format!("train/red/more{i}.png")), 24, 24, COLOURS[0].1, 100 + i);
    }
    let out = d.join("run");
    let train = |extra: &[&str]| {
        let common =
            ["train", "--device", "cpu", "--dataset", "image-folder", "--data-dir", s(&d), "--batch-size", "6"];
        wgrad(&[&common[..], extra].concat())
    };
    let (code, stdout, err) = train(&["--max-steps", "1", "--class-weights", "balanced", "--out", s(&out)]);
    assert_eq!(code, 0, "{err}");
    let want = [24.0 / 18.0, 24.0 / 18.0, 24.0 / 36.0].map(|w: f64| w as f32);
    let ck = wgrad::io::checkpoint::resolve(&out).unwrap();
    assert_eq!(wgrad::io::checkpoint::meta_of(&ck).unwrap().class_weights, Some(want.to_vec()));
    assert!(stdout.contains("CrossEntropyLoss(weight=[1.3333334, 1.3333334, 0.6666667])"), "{stdout}");
    let (code, _, err) = train(&["--max-steps", "2", "--class-weights", "1,1,1", "--resume", s(&out)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("class weights [1.3333334, 1.3333334, 0.6666667] (this run: [1, 1, 1])"), "{err}");
    // Resumed without the flag, the run keeps its weights.
    let (code, _, err) = train(&["--max-steps", "2", "--resume", s(&out)]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = train(&["--max-steps", "1", "--class-weights", "1,2", "--out", s(&d.join("other"))]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--class-weights: 2 class weights given but ImageFolder has 3 classes (blue, green, red)"),
        "{err}"
    );
}

#[test]
fn a_state_dict_of_another_class_count_is_evaluated_as_such() {
    let d = tempdir();
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        for split in ["train", "test"] {
            picture(&d.join(format!("{split}/{name}/0.png")), 12, 12, [40 * i as u8, 90, 200 - 40 * i as u8], 0);
        }
    }
    let model = wgrad::nn::models::ModelKind::CifarNet.build_with_classes(5, 7).unwrap();
    let weights = d.join("five.safetensors");
    let tensors: Vec<(String, wgrad::io::safetensors::Array)> = model
        .params
        .specs
        .iter()
        .zip(&model.params.offsets)
        .map(|(spec, &o)| {
            let data = model.params.data[o..o + spec.numel()].to_vec();
            (spec.key.clone(), wgrad::io::safetensors::Array::F32 { shape: spec.shape.clone(), data })
        })
        .collect();
    wgrad::io::safetensors::write(&weights, &tensors, None).unwrap();
    let (code, stdout, err) = wgrad(&[
        "eval",
        "--device",
        "cpu",
        "--weights",
        s(&weights),
        "--dataset",
        "image-folder",
        "--data-dir",
        s(&d),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!((v["model"].as_str(), v["images"].as_u64()), (Some("cifar-net"), Some(5)), "{v}");
    assert_eq!(v["per_class"].as_array().unwrap().len(), 5, "{v}");
    // confusion[label][predicted]: a row per label holding its images, the diagonal the right ones.
    let confusion: Vec<Vec<u64>> = serde_json::from_value(v["confusion"].clone()).unwrap();
    assert_eq!(confusion.len(), 5, "{v}");
    for (label, row) in confusion.iter().enumerate() {
        let class = &v["per_class"][label];
        assert_eq!(row.iter().sum::<u64>(), class["images"].as_u64().unwrap(), "{v}");
        let right = class["accuracy"].as_f64().unwrap() * class["images"].as_f64().unwrap();
        assert_eq!(row[label] as f64, right.round(), "{v}");
    }
}

/// Fine-tuning: `train --weights` of cifar-net for CIFAR-10's 10 classes on a folder of 3 takes
/// every weight but the classifier's, which starts afresh for the 3 (as a fine-tuning script
/// replaces `model.fc`), saying so.
#[test]
fn weights_for_other_classes_train_with_a_fresh_classifier() {
    let (d, runs) = (folder(4), tempdir());
    let run = runs.join("pets");
    let weights = data_path("torch/cifar_net.pth");
    let (code, stdout, stderr) = wgrad(&[
        "train",
        "--device",
        "cpu",
        "--dataset",
        "image-folder",
        "--data-dir",
        s(&d),
        "--weights",
        s(&weights),
        "--lr",
        "1e-30",
        "--batch-size",
        "4",
        "--max-steps",
        "1",
        "--out",
        s(&run),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("classifier for 10 classes, ImageFolder has 3: fc3.weight, fc3.bias initialised afresh"),
        "{stdout}"
    );
    let saved = wgrad::io::checkpoint::latest(&run).unwrap();
    let (got, init) = (File::read(&saved).unwrap(), data_path("cifar_net_init.safetensors"));
    let want = File::read(&init).unwrap();
    for k in want.tensors.keys().filter(|k| !k.starts_with("fc3.")) {
        let w = want.f32(&init, k).unwrap().1;
        assert_close(&format!("fine-tuned {k}"), got.f32(&saved, k).unwrap().1, w, 0.0, 1e-6);
    }
    let (shape, fc3) = got.f32(&saved, "fc3.weight").unwrap();
    assert_eq!(shape, &[3, 84]);
    assert_ne!(fc3, &want.f32(&init, "fc3.weight").unwrap().1[..3 * 84]);
}
