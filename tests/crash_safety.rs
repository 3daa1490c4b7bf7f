//! Crash safety of `wgrad train`: SIGKILL at many moments (checkpoints are written every step, so
//! many kills land inside a write) always leaves a newest checkpoint that loads and is the previous
//! or a newer one; a full disk gives a clear error and keeps the previous checkpoint.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use wgrad::io::checkpoint;

fn train(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgrad"));
    c.args([
        "train",
        "--device",
        "cpu",
        "--dataset",
        "synthetic",
        "--batch-size",
        "8",
        "--epochs",
        "100",
        "--checkpoint-every",
        "1",
    ]);
    c.arg("--data-dir").arg(data).arg("--out").arg(out).args(extra);
    c
}

fn newest_step(out: &Path) -> Option<u64> {
    let p = checkpoint::latest(out)?;
    let ck = checkpoint::load(&p, &wgrad::models::tudui(0).params)
        .unwrap_or_else(|e| panic!("the newest checkpoint {} does not load: {e}", p.display()));
    Some(ck.meta.step)
}

#[test]
fn sigkill_at_any_moment_leaves_a_loadable_checkpoint() {
    let dir = tempdir();
    let (data, out) = (dir.join("data"), dir.join("run"));
    // Generate the data once, and a first checkpoint.
    let st = train(&data, &out, &["--max-steps", "1"]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(st.success());
    let mut last = newest_step(&out).expect("a first checkpoint");
    let mut kills_after_progress = 0;
    for i in 0..24u64 {
        let mut child = train(&data, &out, &["--resume", out.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Delays from 0.25 s to about 1.4 s, spread so kills fall at start-up, mid-step and mid-write.
        std::thread::sleep(Duration::from_millis(250 + (i * 397) % 1150));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let step = newest_step(&out).expect("a checkpoint must survive the kill");
        assert!(step >= last, "kill {i}: the newest checkpoint went back from step {last} to {step}");
        if step > last {
            kills_after_progress += 1;
        }
        last = step;
    }
    println!(
        "24 SIGKILLs; training progressed between {kills_after_progress} of them; newest checkpoint at step {last}"
    );
    assert!(kills_after_progress >= 5, "training should progress between kills (only {kills_after_progress} times)");
}

#[test]
fn a_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint() {
    let dir = tempdir();
    let (data, out) = (dir.join("data"), dir.join("small"));
    std::fs::create_dir_all(&out).unwrap();
    // One checkpoint (two files of ~580 KB) fits; a second does not.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1400k", "tmpfs"])
        .arg(&out)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        assert!(!is_root(), "running as root, mounting a tmpfs must work");
        eprintln!("skipping: mounting a tmpfs needs root");
        return;
    }
    let o = train(&data, &out, &["--max-steps", "3"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let step = newest_step(&out);
    let _ = Command::new("umount").arg(&out).status();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device") && err.contains("cannot write"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(step, Some(1), "the checkpoint of step 1 must be kept and load");
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}
