//! The `wgrad` command line: devices, check, eval, train, predict, show, bench.

fn main() {
    std::process::exit(wgrad::cli::main());
}
