//! Inputs shared by the mixers' unit tests.

use burn::module::Module;
use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData};

use super::{MixerInput, TokenMixer};

/// `shape` of independent N(0, 1) draws under device seed `seed`.
pub(crate) fn gaussian(device: &Device, seed: u64, shape: [usize; 4]) -> Tensor<4> {
    device.seed(seed);
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// `[2, seq]` padding mask: row 0 unpadded, row 1 padded from position `real` on.
pub(crate) fn pad_mask(device: &Device, seq: usize, real: usize) -> Tensor<2, Bool> {
    let mask: Vec<bool> = (0..2 * seq).map(|i| i >= seq + real).collect();
    Tensor::from_data(TensorData::new(mask, [2, seq]), device)
}

/// `x` `[b, h, n, d]` with the positions that `pad` `[b, n]` marks replaced by noise 100× larger
/// than the inputs (drawn under device seed `seed`): what a mixer that honours padding must not
/// see.
pub(crate) fn spoil_padding(x: Tensor<4>, pad: &Tensor<2, Bool>, seed: u64) -> Tensor<4> {
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
pub(crate) fn assert_random_only_in_training<M>(mixer: &M, x: Tensor<3>, what: &str)
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
