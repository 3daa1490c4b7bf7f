//! `wgrad devices`: every adapter wgpu finds, and the one wgrad would use.

use super::DeviceArgs;
use crate::device::list_adapters;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let opts = a.device.options();
    let (list, chosen) = list_adapters(&opts);
    if list.is_empty() {
        println!("no wgpu adapter found on backend {:?}", opts.backend);
    }
    for (i, ad) in list.iter().enumerate() {
        let mark = if Some(i) == chosen { "*" } else { " " };
        let kind = if ad.device_type == "Cpu" { "software (runs on the CPU)" } else { "hardware" };
        println!(
            "{mark} [{i}] {}  backend={}  type={} ({kind})  driver={}  precision: f32, {}",
            ad.name, ad.backend, ad.device_type, ad.driver, ad.mixed_precision
        );
    }
    println!(
        "--device auto takes the best hardware adapter (discrete > integrated > virtual), else the CPU path; \
         a software adapter only with --device gpu or --adapter naming it"
    );
    match crate::Device::select(&opts) {
        Ok((_, why)) => {
            println!("wgrad would use: {why}");
            Ok(0)
        }
        Err(e) => {
            println!("wgrad would use: nothing ({e})");
            Ok(1)
        }
    }
}
