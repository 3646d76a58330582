//! Inputs and checks shared by the mixers' unit tests and the integration tests (`tests/`).

use burn::module::Module;
use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData, Tolerance};

use crate::mixer::{MixerInput, TokenMixer};

/// The environment variable that names the device of the device-generic tests.
pub const TEST_DEVICE_VARIABLE: &str = "LRA_TEST_DEVICE";

/// The device the device-generic tests (conformance suite, ops' exactness tests) run on: the
/// `--device` name in `LRA_TEST_DEVICE` (e.g. `vulkan`; it needs that cargo feature), else the CPU.
///
/// # Panics
/// When the named device cannot be opened: the test run asked for it, so it must not pass on
/// another.
pub fn device() -> Device {
    let name = std::env::var(TEST_DEVICE_VARIABLE).unwrap_or_else(|_| "cpu".to_string());
    crate::device::parse(&name).unwrap_or_else(|error| panic!("{TEST_DEVICE_VARIABLE}: {error}"))
}

/// The test [`device`] when the op under test has a kernel there (`supported`); otherwise `None`,
/// after printing that `test` is skipped and why (the mixers use the composed reference there).
pub fn device_with_kernel(supported: fn(&Device) -> bool, test: &str) -> Option<Device> {
    let device = device();
    if supported(&device) {
        return Some(device);
    }
    eprintln!(
        "skipped {test}: the op has no kernel on {device:?}; mixers fall back to the reference"
    );
    None
}

/// Whether `device` is the embedded CPU backend.
pub fn is_cpu(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// Bound of a comparison whose CPU bound is `cpu`. GPU kernels sum in other orders (tiled,
/// autotuned per shape) and lavapipe's `exp` is not the CPU's, so values equal up to f32 rounding
/// differ by more there; the CPU bounds stay as strict as they were.
pub fn tolerance(device: &Device, cpu: f32) -> f32 {
    if is_cpu(device) {
        cpu
    } else {
        cpu.max(GPU_TOLERANCE)
    }
}

/// Relative bound of f32 results that agree up to summation order on a GPU backend.
const GPU_TOLERANCE: f32 = 1e-4;

/// `shape` of independent N(0, 1) draws under device seed `seed`.
pub fn gaussian<const D: usize>(device: &Device, seed: u64, shape: [usize; D]) -> Tensor<D> {
    normal(device, seed, shape, 1.0)
}

/// `shape` of independent N(0, 1) draws from the device RNG as it stands (not reseeded).
pub fn standard_normal<const D: usize>(device: &Device, shape: [usize; D]) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// `shape` of independent N(0, std²) draws under device seed `seed`.
pub fn normal<const D: usize>(
    device: &Device,
    seed: u64,
    shape: [usize; D],
    std: f64,
) -> Tensor<D> {
    device.seed(seed);
    Tensor::random(shape, Distribution::Normal(0.0, std), device)
}

/// A float tensor's values, row-major, as `f64` (for reference computations in loops).
pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f64> {
    let values = tensor.into_data().try_to_vec::<f32>().expect("f32 tensor");
    values.into_iter().map(f64::from).collect()
}

/// `[2, seq]` padding mask: row 0 unpadded, row 1 padded from position `real` on.
pub fn pad_mask(device: &Device, seq: usize, real: usize) -> Tensor<2, Bool> {
    padded_from(&[seq, real], seq, device)
}

/// `[real.len(), seq]` padding mask: row `r` padded from position `real[r]` on.
pub fn padded_from(real: &[usize], seq: usize, device: &Device) -> Tensor<2, Bool> {
    let values: Vec<bool> = real
        .iter()
        .flat_map(|&n| (0..seq).map(move |j| j >= n))
        .collect();
    Tensor::from_data(TensorData::new(values, [real.len(), seq]), device)
}

/// `x` `[b, h, n, d]` with the positions that `pad` `[b, n]` marks replaced by noise 100× larger
/// than the inputs (drawn under device seed `seed`): what a mixer that honours padding must not
/// see.
pub fn spoil_padding(x: Tensor<4>, pad: &Tensor<2, Bool>, seed: u64) -> Tensor<4> {
    let [b, h, n, d] = x.dims();
    let noise = gaussian(&x.device(), seed, [b, h, n, d]) * 100.0;
    x.mask_where(
        pad.clone().reshape([b, 1, n, 1]).expand([b, h, n, d]),
        noise,
    )
}

/// A mixer whose randomness (dropout, noise, sampled landmarks or sketches) follows the device
/// seed while training and is absent or fixed in evaluation: same seed → same output, another
/// seed → another output, and in evaluation the seed changes nothing. `what` names the
/// randomness in failure messages.
pub fn assert_random_only_in_training<M>(mixer: &M, x: Tensor<3>, what: &str)
where
    M: TokenMixer + Module,
{
    let device = x.device();
    let run = |mixer: &M, x: Tensor<3>, seed| {
        device.seed(seed);
        mixer.forward(MixerInput::new(x)).x.into_data()
    };
    let train = run(mixer, x.clone(), 7);
    assert_eq!(train, run(mixer, x.clone(), 7), "same seed, same {what}");
    assert_ne!(
        train,
        run(mixer, x.clone(), 8),
        "another seed, another {what}"
    );
    let (eval_mixer, eval_x) = (mixer.valid(), x.inner());
    assert_eq!(
        run(&eval_mixer, eval_x.clone(), 7),
        run(&eval_mixer, eval_x, 8),
        "{what} must not vary in evaluation"
    );
}

/// Output and q/k/v gradients of `actual` equal those of `expected` on the same inputs.
pub fn assert_same_output_and_gradients(
    seq: usize,
    head_dim: usize,
    tolerance: f32,
    actual: impl Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>,
    expected: impl Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>,
) {
    let device = Device::flex().autodiff();
    let shape = [2, 2, seq, head_dim];
    let data: Vec<_> = (1..=4)
        .map(|s| gaussian(&device, s, shape).into_data())
        .collect();
    let leaves =
        || [0, 1, 2].map(|i| Tensor::<4>::from_data(data[i].clone(), &device).require_grad());
    let weights = Tensor::<4>::from_data(data[3].clone(), &device);
    let [q1, k1, v1] = leaves();
    let out1 = actual(q1.clone(), k1.clone(), v1.clone());
    let grads1 = (out1.clone() * weights.clone()).sum().backward();
    let [q2, k2, v2] = leaves();
    let out2 = expected(q2.clone(), k2.clone(), v2.clone());
    let grads2 = (out2.clone() * weights).sum().backward();
    let close = |what: &str, a: Tensor<4>, b: Tensor<4>| {
        eprintln!("seq {seq}: {what}"); // shown if the assertion fails
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(tolerance));
    };
    close("output", out1, out2);
    for (name, a, b) in [("q", q1, q2), ("k", k1, k2), ("v", v1, v2)] {
        let grad = |x: Tensor<4>, g| x.grad(g).expect("gradient");
        close(&format!("grad {name}"), grad(a, &grads1), grad(b, &grads2));
    }
}

/// Keys for the accuracy comparison: a smooth random walk over positions (nearby tokens are
/// similar, giving the local, sparse part of the attention) plus independent noise (spread,
/// low-rank-like mass): the mixed regime of the Scatterbrain paper (§3, Fig. 2/3).
pub fn walk_plus_noise(device: &Device, seed: u64, seq: usize, dim: usize) -> Tensor<4> {
    let steps = gaussian(device, seed, [1, 2, seq, dim]) * 0.25;
    let walk = steps.cumsum(2);
    let centred = walk.clone() - walk.mean_dim(2);
    centred + gaussian(device, seed + 100, [1, 2, seq, dim]) * 0.5
}

/// The tiny deterministic q, k, v `[1, 1, 7, 4]` of the golden-value tests.
pub fn golden_qkv(device: &Device) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    let make = |f: &dyn Fn(f64, f64) -> f64| {
        let values: Vec<f32> = (0..7)
            .flat_map(|i| (0..4).map(move |j| (i as f64, j as f64)))
            .map(|(i, j)| f(i, j) as f32)
            .collect();
        Tensor::<4>::from_data(TensorData::new(values, [1, 1, 7, 4]), device)
    };
    (
        make(&|i, j| (0.7 * i + j + 0.3).sin() * 1.5),
        make(&|i, j| (0.5 * i - 0.8 * j).cos() * 1.5),
        make(&|i, j| (1.3 * i * (j + 1.0) + 0.1).sin()),
    )
}

/// Inputs and output of an official attention module on fixed Q/K/V with padding, written by
/// `scripts/make_fidelity_fixtures.py` (which names the file and commit in `source`).
#[derive(serde::Deserialize)]
pub struct OfficialFixture {
    /// `[batch, heads, seq, head_dim]` of Q, K, V and the output.
    pub shape: [usize; 4],
    /// Landmarks the module was built with (Nyström).
    pub landmarks: usize,
    /// Real tokens per batch row; the rest is padding.
    pub real: Vec<usize>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    out: Vec<f32>,
}

impl OfficialFixture {
    /// Parses a fixture file's text.
    pub fn parse(json: &str) -> Self {
        serde_json::from_str(json).expect("a fixture written by make_fidelity_fixtures.py")
    }

    /// Q, K, V and the padding mask.
    pub fn inputs(&self, device: &Device) -> (Tensor<4>, Tensor<4>, Tensor<4>, Tensor<2, Bool>) {
        let tensor = |values: &[f32]| {
            Tensor::<4>::from_data(TensorData::new(values.to_vec(), self.shape), device)
        };
        let mask = padded_from(&self.real, self.shape[2], device);
        (tensor(&self.q), tensor(&self.k), tensor(&self.v), mask)
    }

    /// The official module's output.
    pub fn expected(&self) -> TensorData {
        TensorData::new(self.out.clone(), self.shape)
    }
}
