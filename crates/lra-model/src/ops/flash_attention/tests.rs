//! FlashAttention against naive softmax, an f64 computation and dense softmax with block masks.

use burn::tensor::activation::softmax;
use burn::tensor::{Distribution, TensorData, Tolerance};

use super::*;
use crate::mixer::common::testing::device_with_kernel;
use crate::mixer::reference::PAD_BIAS;
use crate::ops::dropout::kept;
use crate::ops::softmax_attention::softmax_attention;

const HEADS: usize = 2;
const HEAD_DIM: usize = 8;

/// `q`, `k`, `v` `[2, HEADS, seq, HEAD_DIM]` and a key bias padding the second sequence from
/// `real` on.
fn inputs(device: &Device, seq: usize, real: usize) -> [Tensor<4>; 4] {
    device.seed(5);
    let shape = [2, HEADS, seq, HEAD_DIM];
    let draw = || Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let pad: Vec<f32> = (0..2 * seq)
        .map(|i| if i >= seq + real { PAD_BIAS } else { 0.0 })
        .collect();
    let bias = Tensor::<2>::from_data(TensorData::new(pad, [2, seq]), device);
    [draw(), draw(), draw(), bias.reshape([2, 1, 1, seq])]
}

/// `dropout(softmax(q kᵀ + bias + block_bias)) v` composed from Burn ops, with the dropout
/// mask of [`kept`] built explicitly; `block_bias` `[h, n, m]` is −∞ outside kept tiles.
fn reference(
    [q, k, v, bias]: [Tensor<4>; 4],
    block_bias: Option<Tensor<3>>,
    dropout: f32,
    seed: u64,
) -> Tensor<4> {
    let [b, h, n, _] = q.dims();
    let m = k.dims()[2];
    let mut scores = q.matmul(k.swap_dims(2, 3)) + bias; // [b, h, n, m]
    if let Some(block_bias) = block_bias {
        scores = scores + block_bias.unsqueeze_dim(0);
    }
    let probs = softmax(scores, 3);
    let keep = 1.0 - dropout;
    let mask: Vec<f32> = (0..(b * h * n * m) as u64)
        .map(|i| match dropout == 0.0 || kept(seed, i, keep) {
            true => 1.0 / keep,
            false => 0.0,
        })
        .collect();
    let mask = Tensor::<4>::from_data(TensorData::new(mask, [b, h, n, m]), &probs.device());
    (probs * mask).matmul(v)
}

/// Asserts equal outputs and equal gradients of `sum(out ⊙ w)` with respect to q, k and v.
fn assert_same_outputs_and_gradients(
    inputs: &[Tensor<4>; 4],
    fast: impl Fn([Tensor<4>; 4]) -> Tensor<4>,
    slow: impl Fn([Tensor<4>; 4]) -> Tensor<4>,
) {
    let tracked = |inputs: &[Tensor<4>; 4]| {
        let [q, k, v, bias] = inputs.clone();
        [q.require_grad(), k.require_grad(), v.require_grad(), bias]
    };
    let (fast_in, slow_in) = (tracked(inputs), tracked(inputs));
    let out_fast = fast(fast_in.clone());
    let out_slow = slow(slow_in.clone());
    let tol = Tolerance::absolute(1e-5);
    out_fast
        .to_data()
        .assert_approx_eq::<f32>(&out_slow.to_data(), tol);
    let weights = Tensor::<4>::random(
        out_fast.dims(),
        Distribution::Normal(0.0, 1.0),
        &out_fast.device(),
    );
    let grads_fast = (out_fast * weights.clone()).sum().backward();
    let grads_slow = (out_slow * weights).sum().backward();
    for (name, (a, b)) in ["q", "k", "v"].iter().zip(fast_in.iter().zip(&slow_in)) {
        let (a, b) = (a.grad(&grads_fast).unwrap(), b.grad(&grads_slow).unwrap());
        assert!(
            b.clone().abs().sum().into_scalar::<f32>() > 0.0,
            "d{name} is zero"
        );
        a.to_data().assert_approx_eq::<f32>(&b.to_data(), tol);
    }
}

fn key_bias(bias: Tensor<4>) -> Tensor<2> {
    let [b, _, _, m] = bias.dims();
    bias.reshape([b, m])
}

#[test]
fn dense_equals_naive_softmax_for_lengths_off_the_tile_grid() {
    let Some(device) = device_with_kernel(
        is_supported,
        "dense_equals_naive_softmax_for_lengths_off_the_tile_grid",
    ) else {
        return;
    };
    let device = device.autodiff();
    let flash = |[q, k, v, bias]: [Tensor<4>; 4]| flash_attention(q, k, v, key_bias(bias), 0.0, 0);
    // One tile of 128 + 22, and 2 tiles + 44; the second sequence is padded from `real` on.
    for (seq, real) in [(150, 117), (300, 250)] {
        assert_exact_outputs_and_gradients(&inputs(&device, seq, real), flash, 0.0, 0);
    }
}

#[test]
fn dropout_drops_what_the_materialised_op_drops() {
    let Some(device) =
        device_with_kernel(is_supported, "dropout_drops_what_the_materialised_op_drops")
    else {
        return;
    };
    let device = device.autodiff();
    let inputs = inputs(&device, 300, 250);
    let flash = |[q, k, v, bias]: [Tensor<4>; 4]| flash_attention(q, k, v, key_bias(bias), 0.3, 77);
    let materialised =
        |[q, k, v, bias]: [Tensor<4>; 4]| softmax_attention(q, k, v, key_bias(bias), 0.3, 77);
    // Each f32 op is held to the f64 computation rather than to the other (their gradients,
    // of magnitude ~10, are 1e-5 (flash) and 5e-5 (materialised) from it); a different mask
    // would miss by O(1).
    assert_exact_outputs_and_gradients(&inputs, flash, 0.3, 77);
    assert_exact_outputs_and_gradients(&inputs, materialised, 0.3, 77);
}

/// `(out, [dq, dk, dv])` of `sum(out ⊙ w)` for `out = dropout(softmax(q kᵀ + bias)) v`,
/// written out in f64 per (batch, head) with the mask of [`kept`].
fn exact_outputs_and_gradients(
    inputs: &[Tensor<4>; 4],
    w: &Tensor<4>,
    dropout: f32,
    seed: u64,
) -> (Vec<f64>, [Vec<f64>; 3]) {
    let [b, h, n, d] = inputs[0].dims();
    let f64s = |t: &Tensor<4>| -> Vec<f64> {
        let values = t.to_data().try_to_vec::<f32>().expect("f32 tensor");
        values.into_iter().map(f64::from).collect()
    };
    let ([q, k, v, bias], w) = (inputs.each_ref().map(f64s), f64s(w));
    let keep = 1.0 - dropout;
    let (mut out, mut dq, mut dk, mut dv) = (
        vec![0.0; q.len()],
        vec![0.0; q.len()],
        vec![0.0; q.len()],
        vec![0.0; q.len()],
    );
    for bh in 0..b * h {
        let row = |_: &[f64], i: usize| (bh * n + i) * d;
        let dot = |x: &[f64], i: usize, y: &[f64], j: usize| -> f64 {
            (0..d).map(|t| x[row(x, i) + t] * y[row(y, j) + t]).sum()
        };
        for i in 0..n {
            let scores: Vec<f64> = (0..n)
                .map(|j| dot(&q, i, &k, j) + bias[(bh / h) * n + j])
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            let probs: Vec<f64> = scores.iter().map(|s| (s - max).exp() / total).collect();
            let scale: Vec<f64> = (0..n)
                .map(
                    |j| match dropout == 0.0 || kept(seed, ((bh * n + i) * n + j) as u64, keep) {
                        true => 1.0 / f64::from(keep),
                        false => 0.0,
                    },
                )
                .collect();
            // dP = (dO Vᵀ) ⊙ mask / keep; dS = P ⊙ (dP − rowsum(dP ⊙ P))
            let grad_probs: Vec<f64> = (0..n).map(|j| dot(&w, i, &v, j) * scale[j]).collect();
            let delta: f64 = (0..n).map(|j| grad_probs[j] * probs[j]).sum();
            for j in 0..n {
                let weight = probs[j] * scale[j];
                let grad_score = probs[j] * (grad_probs[j] - delta);
                for t in 0..d {
                    out[row(&q, i) + t] += weight * v[row(&v, j) + t];
                    dv[row(&v, j) + t] += weight * w[row(&w, i) + t];
                    dq[row(&q, i) + t] += grad_score * k[row(&k, j) + t];
                    dk[row(&k, j) + t] += grad_score * q[row(&q, i) + t];
                }
            }
        }
    }
    (out, [dq, dk, dv])
}

/// Asserts that `op`'s output and its gradients of `sum(out ⊙ w)` are within 1e-5 (times the
/// largest magnitude, when above 1) of [`exact_outputs_and_gradients`].
fn assert_exact_outputs_and_gradients(
    inputs: &[Tensor<4>; 4],
    op: impl Fn([Tensor<4>; 4]) -> Tensor<4>,
    dropout: f32,
    seed: u64,
) {
    let [q, k, v, bias] = inputs.clone();
    let tracked = [q.require_grad(), k.require_grad(), v.require_grad(), bias];
    let out = op(tracked.clone());
    let w = Tensor::<4>::random(out.dims(), Distribution::Normal(0.0, 1.0), &out.device());
    let (exact_out, exact_grads) = exact_outputs_and_gradients(inputs, &w, dropout, seed);
    let grads = (out.clone() * w).sum().backward();
    let computed = [&tracked[0], &tracked[1], &tracked[2]].map(|x| x.grad(&grads).unwrap());
    let named = std::iter::once(("out", out.inner(), exact_out)).chain(
        ["dq", "dk", "dv"]
            .into_iter()
            .zip(computed)
            .zip(exact_grads)
            .map(|((name, got), exact)| (name, got, exact)),
    );
    for (name, got, exact) in named {
        let got = got.to_data().try_to_vec::<f32>().expect("f32 tensor");
        let worst = got
            .iter()
            .zip(&exact)
            .map(|(&g, e)| (f64::from(g) - e).abs())
            .fold(0.0, f64::max);
        // f32 sums over a row carry ~10 ulps of the largest terms, so the bound is relative
        // to the tensor's scale (elements near 0 come from cancelling terms of that scale).
        let scale = exact.iter().fold(1.0f64, |a, e| a.max(e.abs()));
        assert!(
            worst < 1e-5 * scale,
            "{name} is {worst:e} from the exact values (largest magnitude {scale})"
        );
    }
}

/// Per-head layouts `[HEADS, nb, nb]`: the diagonal plus pseudo-random blocks.
fn layout(blocks: usize) -> Vec<f32> {
    (0..HEADS * blocks * blocks)
        .map(|index| {
            let (i, j) = ((index / blocks) % blocks, index % blocks);
            f32::from(u8::from(i == j || (index * 7919) % 5 < 2))
        })
        .collect()
}

/// `[h, n, m]` bias: 0 in kept tiles, −∞ elsewhere.
fn block_bias(
    layout: &[f32],
    blocks: usize,
    block: usize,
    seq: usize,
    device: &Device,
) -> Tensor<3> {
    let bias: Vec<f32> = (0..HEADS * seq * seq)
        .map(|index| {
            let (h, i, j) = (index / (seq * seq), (index / seq) % seq, index % seq);
            match layout[(h * blocks + i / block) * blocks + j / block] != 0.0 {
                true => 0.0,
                false => f32::NEG_INFINITY,
            }
        })
        .collect();
    Tensor::from_data(TensorData::new(bias, [HEADS, seq, seq]), device)
}

#[test]
fn block_sparse_equals_dense_softmax_with_the_block_mask() {
    let Some(device) = device_with_kernel(
        is_supported,
        "block_sparse_equals_dense_softmax_with_the_block_mask",
    ) else {
        return;
    };
    let device = device.autodiff();
    let (seq, block) = (100usize, 16); // 7 blocks, the last one of 4 rows
    let blocks = seq.div_ceil(block);
    let layout = layout(blocks);
    assert!(layout.contains(&0.0), "the test layout skips blocks");
    let layout_tensor = || {
        Tensor::<3>::from_data(
            TensorData::new(layout.clone(), [HEADS, blocks, blocks]),
            &device,
        )
    };
    let mask = block_bias(&layout, blocks, block, seq, &device);
    let inputs = inputs(&device, seq, 70);
    for (dropout, seed) in [(0.0, 0), (0.2, 5)] {
        let sparse = |[q, k, v, bias]: [Tensor<4>; 4]| {
            block_sparse_flash_attention(
                q,
                k,
                v,
                key_bias(bias),
                layout_tensor(),
                block,
                dropout,
                seed,
            )
        };
        let dense = |x| reference(x, Some(mask.clone()), dropout, seed);
        assert_same_outputs_and_gradients(&inputs, sparse, dense);
    }
}

#[test]
#[should_panic(expected = "does not fit")]
fn a_layout_that_does_not_fit_is_rejected() {
    let device = Device::flex();
    let [q, k, v, bias] = inputs(&device, 40, 40);
    let layout = Tensor::<3>::ones([1, 2, 2], &device); // 40 tokens need 3 blocks of 16
    block_sparse_flash_attention(q, k, v, key_bias(bias), layout, 16, 0.0, 0);
}
