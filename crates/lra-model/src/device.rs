//! Run-time backend choice: the `--device` names and the one table that maps them to Burn devices.
//!
//! The embedded CPU backend (Burn `flex`) is always built; the GPU backends are compiled in by the
//! cargo features of the same names (`wgpu`, `vulkan`, `cuda`, `tch`). Every device is made by its
//! explicit constructor (never `Device::default()`, which picks CUDA first and panics without it)
//! and opened here, so an absent adapter or a backend left out of the build is an error that names
//! the cause, not a panic at the first tensor.

use std::collections::BTreeMap;
use std::sync::Mutex;

use burn::tensor::Device;
use thiserror::Error;

/// Why a `--device` name gave no device.
#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("unknown device `{name}`; --device accepts: {accepted}")]
    Unknown { name: String, accepted: String },
    #[error("device `{name}`: `{argument}` after the colon is not valid; expected {expected}")]
    BadArgument {
        name: String,
        argument: String,
        expected: &'static str,
    },
    #[error(
        "device `{name}` is not in this build: rebuild with `--features {feature}` \
         (e.g. `cargo build --release --features {feature}`)"
    )]
    NotBuilt { name: String, feature: &'static str },
    #[error("device `{name}` cannot be opened: {reason}")]
    Unavailable { name: String, reason: String },
}

/// Opens a backend's device from the text after the colon (`None` when there is none).
type Opener = fn(Option<&str>) -> Result<Device, OpenError>;

/// Why an opener gave no device; [`parse`] adds the name.
enum OpenError {
    /// The text after the colon is malformed: what was expected instead.
    BadArgument(&'static str),
    /// The device is not there, or its driver refused it.
    #[cfg(any(feature = "wgpu", feature = "cuda", feature = "tch"))]
    Unavailable(String),
}

/// One backend of `--device`.
struct Backend {
    name: &'static str,
    /// What the name accepts, for help and errors.
    syntax: &'static str,
    /// The cargo feature that builds it (`None`: always built).
    feature: Option<&'static str>,
    /// `None` when the feature is not in this build.
    open: Option<Opener>,
}

const BACKENDS: &[Backend] = &[
    Backend {
        name: "cpu",
        syntax: "cpu",
        feature: None,
        open: Some(open_cpu),
    },
    Backend {
        name: "wgpu",
        syntax: "wgpu[:N]",
        feature: Some("wgpu"),
        #[cfg(feature = "wgpu")]
        open: Some(gpu::open_wgpu),
        #[cfg(not(feature = "wgpu"))]
        open: None,
    },
    Backend {
        name: "vulkan",
        syntax: "vulkan[:N]",
        feature: Some("vulkan"),
        #[cfg(feature = "vulkan")]
        open: Some(gpu::open_vulkan),
        #[cfg(not(feature = "vulkan"))]
        open: None,
    },
    Backend {
        name: "cuda",
        syntax: "cuda[:N]",
        feature: Some("cuda"),
        #[cfg(feature = "cuda")]
        open: Some(gpu::open_cuda),
        #[cfg(not(feature = "cuda"))]
        open: None,
    },
    Backend {
        name: "tch",
        syntax: "tch[:cpu|cuda:N]",
        feature: Some("tch"),
        #[cfg(feature = "tch")]
        open: Some(gpu::open_tch),
        #[cfg(not(feature = "tch"))]
        open: None,
    },
];

/// Every name `--device` accepts, those this build lacks marked with their cargo feature.
pub fn accepted() -> String {
    BACKENDS
        .iter()
        .map(|backend| match (backend.open, backend.feature) {
            (None, Some(feature)) => format!("{} (needs --features {feature})", backend.syntax),
            _ => backend.syntax.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses and opens `--device`: `cpu`, `wgpu[:N]`, `vulkan[:N]`, `cuda[:N]`, `tch[:cpu|cuda:N]`.
/// `N` is the index of a discrete GPU; without it the backend picks its best adapter (on a machine
/// without a GPU, wgpu/vulkan pick a software driver such as Mesa's lavapipe).
///
/// A device is opened once per process and reused: a wgpu runtime cannot be registered twice.
pub fn parse(name: &str) -> Result<Device, DeviceError> {
    static OPENED: Mutex<BTreeMap<String, Device>> = Mutex::new(BTreeMap::new());
    let mut opened = OPENED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(device) = opened.get(name) {
        return Ok(device.clone());
    }
    let (backend_name, argument) = match name.split_once(':') {
        Some((backend, argument)) => (backend, Some(argument)),
        None => (name, None),
    };
    let backend_name = if backend_name == "flex" {
        "cpu"
    } else {
        backend_name
    };
    let backend = BACKENDS
        .iter()
        .find(|backend| backend.name == backend_name)
        .ok_or_else(|| DeviceError::Unknown {
            name: name.to_string(),
            accepted: accepted(),
        })?;
    let open = backend.open.ok_or_else(|| DeviceError::NotBuilt {
        name: name.to_string(),
        feature: backend.feature.unwrap_or_default(),
    })?;
    let device = open(argument).map_err(|error| match error {
        OpenError::BadArgument(expected) => DeviceError::BadArgument {
            name: name.to_string(),
            argument: argument.unwrap_or_default().to_string(),
            expected,
        },
        #[cfg(any(feature = "wgpu", feature = "cuda", feature = "tch"))]
        OpenError::Unavailable(reason) => DeviceError::Unavailable {
            name: name.to_string(),
            reason,
        },
    })?;
    opened.insert(name.to_string(), device.clone());
    Ok(device)
}

fn open_cpu(argument: Option<&str>) -> Result<Device, OpenError> {
    match argument {
        None => Ok(Device::flex()),
        Some(_) => Err(OpenError::BadArgument(
            "nothing: the CPU backend takes no index",
        )),
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda", feature = "tch"))]
mod gpu {
    use super::OpenError;
    use burn::tensor::Device;

    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn index(argument: Option<&str>) -> Result<Option<usize>, OpenError> {
        argument
            .map(|text| {
                text.parse()
                    .map_err(|_| OpenError::BadArgument("a device index (0, 1, ...)"))
            })
            .transpose()
    }

    #[cfg(feature = "wgpu")]
    pub fn open_wgpu(argument: Option<&str>) -> Result<Device, OpenError> {
        open_wgpu_on(argument, burn::tensor::wgpu::WgpuBackend::Auto)
    }

    #[cfg(feature = "vulkan")]
    pub fn open_vulkan(argument: Option<&str>) -> Result<Device, OpenError> {
        open_wgpu_on(argument, burn::tensor::wgpu::WgpuBackend::Vulkan)
    }

    /// `N` is the N-th discrete GPU; no index is the adapter wgpu ranks best (on a machine
    /// without a GPU, a software driver such as Mesa's lavapipe). Burn's `init` acquires the
    /// adapter now and returns an error where the lazy `Device::wgpu` would panic at first use.
    #[cfg(feature = "wgpu")]
    fn open_wgpu_on(
        argument: Option<&str>,
        api: burn::tensor::wgpu::WgpuBackend,
    ) -> Result<Device, OpenError> {
        use burn::tensor::DeviceKind;
        let kind = match index(argument)? {
            Some(index) => DeviceKind::DiscreteGpu(index),
            None => DeviceKind::DefaultDevice,
        };
        Device::wgpu_options()
            .device_kind(kind)
            .graphics_api(api)
            .init()
            .map_err(|error| {
                OpenError::Unavailable(format!(
                    "{error} (`:N` counts discrete GPUs; no adapter at all needs the Vulkan \
                     loader, Debian `libvulkan1`, and a driver: the GPU vendor's, or \
                     `mesa-vulkan-drivers` for the software one)"
                ))
            })
    }

    #[cfg(feature = "cuda")]
    pub fn open_cuda(argument: Option<&str>) -> Result<Device, OpenError> {
        probe(Device::cuda(index(argument)?.unwrap_or(0)))
    }

    /// `tch` and `tch:cpu` are LibTorch on the CPU, `tch:cuda:N` on a CUDA GPU.
    #[cfg(feature = "tch")]
    #[allow(deprecated)] // burn-tch is deprecated since Burn 0.22; kept for machines with libtorch
    pub fn open_tch(argument: Option<&str>) -> Result<Device, OpenError> {
        const EXPECTED: &str = "`cpu`, `cuda` or `cuda:N`";
        let device = match argument {
            None | Some("cpu") => Device::libtorch(),
            Some("cuda") => Device::libtorch_cuda(0),
            Some(text) => {
                let index = text
                    .strip_prefix("cuda:")
                    .and_then(|index| index.parse::<usize>().ok())
                    .ok_or(OpenError::BadArgument(EXPECTED))?;
                Device::libtorch_cuda(index)
            }
        };
        probe(device)
    }

    /// Backends that open lazily panic at their first tensor when the device is absent, so one
    /// tensor is made here, with the panic caught (and its message kept, not printed).
    #[cfg(any(feature = "cuda", feature = "tch"))]
    fn probe(device: Device) -> Result<Device, OpenError> {
        use burn::tensor::Tensor;
        use std::panic::{AssertUnwindSafe, catch_unwind, set_hook, take_hook};
        let hook = take_hook();
        set_hook(Box::new(|_| {}));
        let result = catch_unwind(AssertUnwindSafe(|| {
            Tensor::<1>::zeros([1], &device).into_data()
        }));
        set_hook(hook);
        result.map(|_| device).map_err(|payload| {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("the backend panicked at its first tensor");
            OpenError::Unavailable(message.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_the_embedded_backend_and_is_opened_once() {
        assert_eq!(parse("cpu").unwrap(), Device::flex());
        assert_eq!(parse("flex").unwrap(), Device::flex());
        assert_eq!(parse("cpu").unwrap(), parse("cpu").unwrap());
    }

    #[test]
    fn an_unknown_name_lists_every_backend() {
        let message = parse("tpu").unwrap_err().to_string();
        for name in [
            "tpu",
            "cpu",
            "wgpu[:N]",
            "vulkan[:N]",
            "cuda[:N]",
            "tch[:cpu|cuda:N]",
        ] {
            assert!(message.contains(name), "`{name}` missing from: {message}");
        }
    }

    #[test]
    fn a_malformed_index_says_what_was_expected() {
        let error = parse("cpu:1").unwrap_err();
        assert!(matches!(error, DeviceError::BadArgument { .. }), "{error}");
        assert!(error.to_string().contains("takes no index"), "{error}");
        #[cfg(feature = "wgpu")]
        {
            let error = parse("wgpu:first").unwrap_err();
            assert!(error.to_string().contains("a device index"), "{error}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_backend_left_out_of_the_build_names_its_cargo_feature() {
        let error = parse("cuda:1").unwrap_err();
        assert!(matches!(error, DeviceError::NotBuilt { .. }), "{error}");
        assert!(error.to_string().contains("--features cuda"), "{error}");
        assert!(accepted().contains("cuda[:N] (needs --features cuda)"));
    }

    /// No machine this runs on has eight discrete GPUs: the adapter lookup fails, and that is an
    /// error naming the device, not a panic at the first tensor.
    #[cfg(feature = "wgpu")]
    #[test]
    fn an_absent_gpu_is_an_error() {
        let error = parse("wgpu:7").unwrap_err();
        assert!(matches!(error, DeviceError::Unavailable { .. }), "{error}");
        assert!(error.to_string().contains("wgpu:7"), "{error}");
    }
}
