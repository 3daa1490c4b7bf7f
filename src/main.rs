//! The `wgrad` command line: devices, check, eval, train, predict, show, bench, serve, convert.

fn main() {
    // The command line is native only; in the browser the page (web/) is the interface.
    #[cfg(not(target_arch = "wasm32"))]
    std::process::exit(wgrad::cli::main());
}
