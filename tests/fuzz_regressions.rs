//! Inputs that fuzzing found crashing a parser (tests/data/fuzz/regressions/<target>/), kept so the
//! fix stays: each must now give an error, not a panic.

mod common;
use common::*;

fn inputs(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let dir = data_path("fuzz/regressions").join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn cifar_pickle_crashes_are_errors() {
    let found = inputs("cifar_pickle");
    assert!(!found.is_empty(), "the regression inputs are missing");
    for (p, bytes) in found {
        let r = std::panic::catch_unwind(|| wgrad::data::cifar10::parse_pickle(&p, &bytes));
        let e = r.unwrap_or_else(|_| panic!("{} panics", p.display())).expect_err("malformed input must be an error");
        assert!(e.to_string().contains("not a readable pickle"), "{e}");
    }
}
