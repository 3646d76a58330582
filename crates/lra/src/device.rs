//! Run-time backend choice. The embedded CPU backend (Burn `flex`) is always there; `wgpu`,
//! `cuda` and `tch` are compiled in by the cargo features of the same names.

use anyhow::{Result, bail};
use burn::tensor::Device;

/// Device names accepted by `--device` in this build.
pub fn available() -> Vec<&'static str> {
    let mut names = vec!["cpu"];
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        names.push("cuda[:INDEX]");
    }
    if cfg!(feature = "tch") {
        names.push("tch");
    }
    names
}

/// Parses `--device`: `cpu`, `wgpu`, `cuda`, `cuda:1`, `tch`.
pub fn parse(name: &str) -> Result<Device> {
    let (backend, index) = match name.split_once(':') {
        Some((backend, index)) => match index.parse::<usize>() {
            Ok(index) => (backend, index),
            Err(_) => bail!("device `{name}`: `{index}` is not a device index"),
        },
        None => (name, 0),
    };
    let device = match backend {
        "cpu" | "flex" => Some(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Some(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        "cuda" => Some(Device::cuda(index)),
        #[cfg(feature = "tch")]
        "tch" => Some(Device::libtorch()),
        _ => None,
    };
    let _ = index; // only the cuda backend takes an index
    match device {
        Some(device) => Ok(device),
        None => bail!(
            "unknown device `{name}`; this build supports: {} (build with --features wgpu, cuda or tch for GPUs)",
            available().join(", ")
        ),
    }
}
