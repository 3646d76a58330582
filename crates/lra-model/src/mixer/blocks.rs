//! Block-sparse attention by gathering: the sequence is cut into blocks of `chunk` tokens, each
//! query block lists the key blocks it sees, and only those are gathered (`select` on the block
//! axis) and scored with batched `[chunk, slots·chunk]` matmuls. Sliding windows (`local`,
//! `longformer`) and BigBird's window + global + random blocks are all such lists; no `[n, n]`
//! score matrix is ever built.
//!
//! Cost per head: O(n·slots·chunk·d) time and O(n·slots·chunk) memory for the scores, plus the
//! gathered keys and values `[nb, slots·chunk, d]` (`slots` copies of K and V).

use burn::nn::Dropout;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::reference::{PAD_BIAS, attention_probs};

/// Which key blocks each query block sees.
pub(super) struct BlockPlan {
    /// Tokens per block.
    pub chunk: usize,
    /// Query blocks `nb = ⌈n / chunk⌉`; key block index `nb` is an empty (fully masked) block,
    /// used for slots that fall outside the sequence or would repeat a key.
    pub blocks: usize,
    /// Key-block lists: one shared by all heads (`groups = 1`) or one per head.
    pub groups: usize,
    /// Key blocks per query block.
    pub slots: usize,
    /// `[groups, blocks, slots]` key-block indices, row-major.
    pub indices: Vec<usize>,
    /// `[chunk, slots·chunk]`, `true` where a query offset must not see a key of a slot
    /// (the exact edge of a sliding window); the same for every query block.
    pub token_mask: Option<Vec<bool>>,
}

impl BlockPlan {
    /// Sliding window `-left ≤ j - i ≤ right` with blocks of `chunk` tokens: query block `B`
    /// gathers the blocks `B - c ..= B + c`, `c = ⌈max(left, right) / chunk⌉`, and the exact
    /// window is cut out of them by `token_mask`.
    pub fn sliding(seq: usize, chunk: usize, left: usize, right: usize) -> Self {
        let blocks = seq.div_ceil(chunk);
        let reach = left.max(right).div_ceil(chunk);
        let slots = 2 * reach + 1;
        let mut indices = Vec::with_capacity(blocks * slots);
        for block in 0..blocks {
            for slot in 0..slots {
                let key_block = (block + slot).checked_sub(reach);
                indices.push(key_block.filter(|&b| b < blocks).unwrap_or(blocks));
            }
        }
        let width = slots * chunk;
        let token_mask = (0..chunk * width)
            .map(|x| {
                let (query, key) = (x / width, x % width);
                // Key position minus query position, both counted from block B - reach.
                let offset = key as isize - (query + reach * chunk) as isize;
                offset < -(left as isize) || offset > right as isize
            })
            .collect();
        Self {
            chunk,
            blocks,
            groups: 1,
            slots,
            indices,
            token_mask: Some(token_mask),
        }
    }
}

/// Keys every query sees besides its blocks (Longformer's global tokens).
pub(super) struct SharedKeys {
    /// `[b, h, g, dh]`.
    pub k: Tensor<4>,
    /// `[b, h, g, dh]`.
    pub v: Tensor<4>,
    /// `[b, g]`, 1 at padding.
    pub is_pad: Tensor<2>,
}

/// Softmax attention of every query over the keys its block sees (and `shared`), one softmax
/// over both. `excluded` (`[b, n]`, 1 = excluded) removes keys from the block part: padding, and
/// keys that `shared` already holds.
///
/// # Shapes
/// - `q`, `k`, `v`: `[b, h, n, dh]`; output `[b, h, n, dh]`
pub(super) fn block_sparse_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    excluded: Tensor<2>,
    plan: &BlockPlan,
    shared: Option<SharedKeys>,
    dropout: &Dropout,
) -> Tensor<4> {
    let [batch, heads, seq, head_dim] = q.dims();
    let (chunk, blocks, slots) = (plan.chunk, plan.blocks, plan.slots);
    let padded = blocks * chunk;
    let width = slots * chunk;
    let device = q.device();
    assert!(
        plan.groups == 1 || plan.groups == heads,
        "block plan has {} groups for {heads} heads",
        plan.groups
    );
    // One empty block after the sequence; positions past the end count as excluded.
    let with_empty = padded + chunk;
    let q = pad_tail(q, padded, 0.0).reshape([batch, heads, blocks, chunk, head_dim]);
    let gather_rows = |x: Tensor<4>| {
        let x =
            pad_tail(x, with_empty, 0.0).reshape([batch, heads * (blocks + 1), chunk, head_dim]);
        x.select(1, plan_indices(plan, heads, &device))
            .reshape([batch, heads, blocks, width, head_dim])
    };
    let (k, v) = (gather_rows(k), gather_rows(v)); // [b, h, nb, W, dh]
    let excluded = pad_tail(excluded, with_empty, 1.0)
        .reshape([batch, 1, blocks + 1, chunk])
        .expand([batch, plan.groups, blocks + 1, chunk])
        .reshape([batch, plan.groups * (blocks + 1), chunk])
        .select(1, plan_indices(plan, plan.groups, &device))
        .reshape([batch, plan.groups, blocks, 1, width]);
    let scores = q.clone().matmul(k.swap_dims(3, 4)) / (head_dim as f64).sqrt(); // [b, h, nb, c, W]
    let mut scores = scores + excluded * PAD_BIAS;
    if let Some(mask) = &plan.token_mask {
        let bias: Vec<f32> = mask
            .iter()
            .map(|&m| if m { PAD_BIAS } else { 0.0 })
            .collect();
        scores =
            scores + Tensor::from_data(TensorData::new(bias, [1, 1, 1, chunk, width]), &device);
    }
    let Some(shared) = shared else {
        let probs = dropout.forward(softmax(scores, 4));
        return unblock(probs.matmul(v), seq);
    };
    let globals = shared.k.dims()[2];
    let shared_scores = (q
        .reshape([batch, heads, padded, head_dim])
        .matmul(shared.k.swap_dims(2, 3))
        / (head_dim as f64).sqrt())
    .reshape([batch, heads, blocks, chunk, globals])
        + (shared.is_pad * PAD_BIAS).reshape([batch, 1, 1, 1, globals]);
    let probs = dropout.forward(softmax(Tensor::cat(vec![scores, shared_scores], 4), 4));
    let from_blocks = probs.clone().narrow(4, 0, width).matmul(v);
    let from_shared = probs
        .narrow(4, width, globals)
        .reshape([batch, heads, padded, globals])
        .matmul(shared.v)
        .reshape([batch, heads, blocks, chunk, head_dim]);
    unblock(from_blocks + from_shared, seq)
}

/// Softmax attention of the queries `q` (`[b, h, m, dh]`) over every key, padding excluded.
pub(super) fn dense_rows(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    is_pad: Tensor<2>,
    dropout: &Dropout,
) -> Tensor<4> {
    let [batch, seq] = is_pad.dims();
    let bias = (is_pad * PAD_BIAS).reshape([batch, 1, 1, seq]);
    dropout.forward(attention_probs(q, k, Some(bias))).matmul(v)
}

/// Indices into a `[groups·(nb + 1)]` block axis for `rows` (= groups, or heads sharing one
/// group) in `[rows, nb, slots]` order.
fn plan_indices(plan: &BlockPlan, rows: usize, device: &Device) -> Tensor<1, Int> {
    let per_group = plan.blocks * plan.slots;
    let indices: Vec<i64> = (0..rows)
        .flat_map(|row| {
            let group = if plan.groups == 1 { 0 } else { row };
            let list = &plan.indices[group * per_group..(group + 1) * per_group];
            list.iter()
                .map(move |&b| (row * (plan.blocks + 1) + b) as i64)
        })
        .collect();
    Tensor::from_data(TensorData::new(indices, [rows * per_group]), device)
}

/// `[b, h, nb, c, dh]` → `[b, h, seq, dh]`.
fn unblock(x: Tensor<5>, seq: usize) -> Tensor<4> {
    let [batch, heads, blocks, chunk, head_dim] = x.dims();
    x.reshape([batch, heads, blocks * chunk, head_dim])
        .narrow(2, 0, seq)
}

/// `[b, n]` padding mask (or none) → 1.0 at padding, 0.0 elsewhere.
pub(super) fn pad_indicator(
    pad_mask: Option<Tensor<2, burn::tensor::Bool>>,
    batch: usize,
    seq: usize,
    device: &Device,
) -> Tensor<2> {
    pad_mask
        .map(|mask| mask.float())
        .unwrap_or_else(|| Tensor::zeros([batch, seq], device))
}

/// Extends the sequence axis (axis 2 for 4-D, axis 1 for 2-D, i.e. the axis after batch/heads)
/// to `len` with `value`.
pub(super) fn pad_tail<const D: usize>(x: Tensor<D>, len: usize, value: f32) -> Tensor<D> {
    let axis = if D == 4 { 2 } else { 1 };
    let mut dims = x.dims();
    let missing = len - dims[axis];
    if missing == 0 {
        return x;
    }
    dims[axis] = missing;
    let fill = Tensor::<D>::full(dims, value, &x.device());
    Tensor::cat(vec![x, fill], axis)
}

/// Dense references for the block-sparse mixers' tests: a pattern written as "does query `i`
/// see key `j`" becomes an `[n, n]` bias, and masked dense softmax with it is compared (output
/// and q/k/v gradients) with the blocked computation.
#[cfg(test)]
pub(super) mod dense {
    use burn::tensor::{Bool, Device, Tensor, TensorData, Tolerance};

    use super::super::reference::{PAD_BIAS, attention_probs};
    use super::super::testing::gaussian;

    /// `[b, heads, seq, seq]` bias: 0 where `sees(head, i, j)` and key `j` is not padding.
    /// Panics if some real query sees no key (the comparison would be meaningless there); padded
    /// queries' outputs are never used and are not compared.
    pub fn bias(
        sees: &dyn Fn(usize, usize, usize) -> bool,
        heads: usize,
        pad: &[bool],
        seq: usize,
        device: &Device,
    ) -> Tensor<4> {
        let batch = pad.len() / seq;
        let mut bias = vec![0f32; batch * heads * seq * seq];
        for b in 0..batch {
            for h in 0..heads {
                for i in 0..seq {
                    let mut any = false;
                    for j in 0..seq {
                        let at = ((b * heads + h) * seq + i) * seq + j;
                        if sees(h, i, j) && !pad[b * seq + j] {
                            any = true;
                        } else {
                            bias[at] = PAD_BIAS;
                        }
                    }
                    assert!(
                        any || pad[b * seq + i],
                        "query {i} (row {b}, head {h}) sees no key"
                    );
                }
            }
        }
        Tensor::from_data(TensorData::new(bias, [batch, heads, seq, seq]), device)
    }

    /// `attend` (the blocked computation) equals dense softmax attention masked by `sees`, in
    /// the output and the gradients of q, k and v, to 1e-5, on `[2, heads, seq, 4]` inputs whose
    /// second row is padded after `real` tokens. Outputs at padded queries are left out (zero
    /// weight in the loss): with every visible key padded they are arbitrary by design.
    pub fn assert_equals_dense(
        attend: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<4>, Tensor<2, Bool>) -> Tensor<4>,
        sees: &dyn Fn(usize, usize, usize) -> bool,
        heads: usize,
        seq: usize,
        real: usize,
    ) {
        let device = Device::flex().autodiff();
        let pad: Vec<bool> = (0..2 * seq).map(|x| x >= seq + real).collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [2, seq]), &device);
        let shape = [2, heads, seq, 4];
        let data = [1, 2, 3].map(|seed| gaussian(&device, seed, shape).into_data());
        let real_query: Vec<f32> = pad.iter().map(|&p| if p { 0.0 } else { 1.0 }).collect();
        let real_query =
            Tensor::<4>::from_data(TensorData::new(real_query, [2, 1, seq, 1]), &device);
        let w = gaussian(&device, 4, shape) * real_query.clone();
        let leaves = || {
            data.clone()
                .map(|d| Tensor::<4>::from_data(d, &device).require_grad())
        };

        let [q1, k1, v1] = leaves();
        let actual = attend(q1.clone(), k1.clone(), v1.clone(), mask);
        let grads1 = (actual.clone() * w.clone()).sum().backward();
        let [q2, k2, v2] = leaves();
        let bias = bias(sees, heads, &pad, seq, &device);
        let expected = attention_probs(q2.clone(), k2.clone(), Some(bias)).matmul(v2.clone());
        let grads2 = (expected.clone() * w).sum().backward();

        let close = |what: &str, a: Tensor<4>, b: Tensor<4>| {
            eprintln!("seq {seq}, real {real}: {what}"); // shown if the assertion fails
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-5));
        };
        close("output", actual * real_query.clone(), expected * real_query);
        for (name, a, b) in [("q", q1, q2), ("k", k1, k2), ("v", v1, v2)] {
            close(
                &format!("grad {name}"),
                a.grad(&grads1).expect("gradient"),
                b.grad(&grads2).expect("gradient"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_plan_lists_neighbour_blocks_and_the_empty_block_at_the_edges() {
        let plan = BlockPlan::sliding(10, 4, 4, 4); // 3 blocks, reach 1
        assert_eq!((plan.blocks, plan.slots), (3, 3));
        assert_eq!(plan.indices, vec![3, 0, 1, 0, 1, 2, 1, 2, 3]);
        // Query offset 0 sees slot keys at offsets -4..=4 around it: window slots 0..=8 of 12.
        let mask = plan.token_mask.unwrap();
        let row0: Vec<bool> = mask[..12].to_vec();
        let expected: Vec<bool> = (0..12).map(|x| x > 8).collect();
        assert_eq!(row0, expected);
    }
}
