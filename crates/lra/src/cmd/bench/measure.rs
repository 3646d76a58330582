//! Timing and peak memory of repeated calls, and the row each timed configuration becomes.

use std::time::Instant;

use anyhow::Result;
use burn::tensor::Device;
use serde::Serialize;

use super::Mode;
use crate::memory;

/// One timed configuration.
#[derive(Debug, Serialize)]
pub struct BenchRow {
    pub bench: &'static str,
    /// `train` (forward + backward [+ update]) or `forward`.
    pub mode: &'static str,
    pub attention: String,
    pub seq_len: usize,
    pub batch: usize,
    pub d_model: usize,
    pub device: String,
    pub median_ms: f64,
    pub min_ms: f64,
    /// Peak memory growth during the timed calls: the process heap on the CPU backend, the
    /// device memory pool's reserved bytes on GPU backends (see [`MemoryProbe`]).
    pub peak_mib: f64,
}

impl BenchRow {
    /// Legend / table label: the method, with the mode when a benchmark has both.
    pub(super) fn label(&self, both_modes: bool) -> String {
        if both_modes {
            format!("{} ({})", self.attention, self.mode)
        } else {
            self.attention.clone()
        }
    }
}

/// Milliseconds of each timed call and the peak memory growth over them.
pub(super) struct Timing {
    pub(super) times: Vec<f64>,
    pub(super) peak_mib: f64,
}

/// One warm-up call (on GPU backends it also compiles and autotunes the kernels), then `repeats`
/// timed calls, synchronising the device after each.
pub(super) fn time_repeats(repeats: usize, device: &Device, mut f: impl FnMut()) -> Result<Timing> {
    f();
    device.sync()?;
    let probe = MemoryProbe::start(device);
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f();
        device.sync()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Timing {
        times,
        peak_mib: probe.peak_growth(device) as f64 / (1024.0 * 1024.0),
    })
}

/// Where peak memory is read. Tensors of the CPU backend live on the process heap, whose peak the
/// allocator tracks; GPU backends keep tensors in a device memory pool, which reports only its
/// current state: the pool is emptied first, and the bytes it reserves afterwards are the pages
/// the timed calls needed at their peak (it keeps them for reuse), as PyTorch's
/// `max_memory_reserved` counts them.
enum MemoryProbe {
    Heap { baseline: usize },
    DevicePool { baseline: u64 },
}

impl MemoryProbe {
    fn start(device: &Device) -> Self {
        device.memory_cleanup();
        match device.memory_pool_usage() {
            Some(usage) => Self::DevicePool {
                baseline: usage.bytes_reserved,
            },
            None => {
                memory::reset_peak();
                Self::Heap {
                    baseline: memory::current_bytes(),
                }
            }
        }
    }

    /// Bytes above the baseline at the peak since [`MemoryProbe::start`].
    fn peak_growth(&self, device: &Device) -> u64 {
        match *self {
            Self::Heap { baseline } => memory::peak_bytes().saturating_sub(baseline) as u64,
            Self::DevicePool { baseline } => device
                .memory_pool_usage()
                .map_or(0, |usage| usage.bytes_reserved.saturating_sub(baseline)),
        }
    }
}

/// The device as given, and on the CPU the vector extension its kernels use and the threads:
/// `cpu (AVX2+FMA, 2 threads)`.
fn device_label(device: &str) -> String {
    if device == "cpu" {
        format!("cpu ({})", lra_model::ops::cpu_description())
    } else {
        device.to_string()
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn row(
    bench: &'static str,
    mode: Mode,
    attention: &str,
    seq_len: usize,
    batch: usize,
    d_model: usize,
    device: &str,
    timing: &Timing,
) -> BenchRow {
    let mut sorted = timing.times.clone();
    sorted.sort_by(f64::total_cmp);
    BenchRow {
        bench,
        mode: mode.name(),
        attention: attention.to_string(),
        seq_len,
        batch,
        d_model,
        device: device_label(device),
        median_ms: sorted[sorted.len() / 2],
        min_ms: sorted[0],
        peak_mib: timing.peak_mib,
    }
}
