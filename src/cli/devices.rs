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
        println!("{mark} [{i}] {}  backend={}  type={}  driver={}", ad.name, ad.backend, ad.device_type, ad.driver);
    }
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
