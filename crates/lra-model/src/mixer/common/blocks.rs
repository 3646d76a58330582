//! Block-sparse attention by gathering: the sequence is cut into blocks of `chunk` tokens, each
//! query block lists the key blocks it sees (its slots), and only those are gathered and scored
//! with batched `[chunk, slots·chunk]` matmuls. Sliding windows (`local`, `longformer`) and
//! BigBird's window + global + random blocks are all such lists; no `[n, n]` score matrix is ever
//! built.
//!
//! Cost per head: O(n·slots·chunk·d) time and O(n·slots·chunk) memory for the scores, plus the
//! gathered keys and values `[nb, slots·chunk, d]` (`slots` copies of K and V). Slots that are a
//! fixed shift of the query block or one fixed block are gathered by slicing (whose backward is a
//! slice copy); only per-row lists (BigBird's random blocks) use `select`, whose backward (a
//! scatter-add) is several times slower on the CPU backend.

use burn::nn::Dropout;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::reference::{PAD_BIAS, attention_probs};

/// Where one slot's key block comes from, for every query block `B`.
pub enum Slot {
    /// Block `B + offset`; outside the sequence, an empty (fully excluded) block.
    Shift(isize),
    /// The same block for every query block (a global block).
    Fixed(usize),
    /// `[groups, blocks]` block indices: one list shared by the heads (`groups = 1`) or one per
    /// head.
    Listed { groups: usize, indices: Vec<usize> },
}

/// Which key blocks each query block sees.
pub struct BlockPlan {
    /// Tokens per block.
    pub chunk: usize,
    /// Query (and key) blocks `nb = ⌈n / chunk⌉`.
    pub blocks: usize,
    /// The key blocks of every query block, in order.
    pub slots: Vec<Slot>,
    /// `[blocks, slots]`, `true` where a query block must not use a slot (it repeats the key
    /// block of another slot, which would count those keys twice).
    pub dropped: Option<Vec<bool>>,
    /// `[chunk, slots·chunk]`, `true` where a query offset must not see a key of a slot
    /// (the exact edge of a sliding window); the same for every query block.
    pub token_mask: Option<Vec<bool>>,
}

impl BlockPlan {
    /// Sliding window `-left ≤ j - i ≤ right` with blocks of `chunk` tokens: query block `B`
    /// gathers the blocks `B - c ..= B + c`, `c = ⌈max(left, right) / chunk⌉`, and the exact
    /// window is cut out of them by `token_mask`.
    pub fn sliding(seq: usize, chunk: usize, left: usize, right: usize) -> Self {
        let reach = left.max(right).div_ceil(chunk);
        let slots: Vec<Slot> = (-(reach as isize)..=reach as isize)
            .map(Slot::Shift)
            .collect();
        let width = slots.len() * chunk;
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
            blocks: seq.div_ceil(chunk),
            slots,
            dropped: None,
            token_mask: Some(token_mask),
        }
    }

    /// Head groups of the plan: 1, or the heads when some slot lists blocks per head.
    fn groups(&self) -> usize {
        self.slots
            .iter()
            .map(|slot| match slot {
                Slot::Listed { groups, .. } => *groups,
                _ => 1,
            })
            .max()
            .unwrap_or(1)
    }

    /// `[b, g, nb, c, e]` blocks → `[b, g', nb, slots·c, e]`: for each query block the key
    /// blocks of its slots, side by side; blocks outside the sequence are filled with `fill`.
    /// `g` is 1 or the heads; `g'` grows to a listed slot's groups when `g` is 1.
    fn gather(&self, x: Tensor<5>, fill: f32) -> Tensor<5> {
        let [batch, groups, blocks, chunk, width] = x.dims();
        let groups = groups.max(self.groups());
        let x = x.expand([batch, groups, blocks, chunk, width]);
        let device = x.device();
        let empty =
            |count: usize| Tensor::full([batch, groups, count, chunk, width], fill, &device);
        let parts = self
            .slots
            .iter()
            .map(|slot| match *slot {
                Slot::Shift(offset) if offset.unsigned_abs() >= blocks => empty(blocks),
                Slot::Shift(offset) if offset < 0 => {
                    let shift = offset.unsigned_abs();
                    Tensor::cat(
                        vec![empty(shift), x.clone().narrow(2, 0, blocks - shift)],
                        2,
                    )
                }
                Slot::Shift(offset) if offset > 0 => {
                    let shift = offset as usize;
                    Tensor::cat(
                        vec![x.clone().narrow(2, shift, blocks - shift), empty(shift)],
                        2,
                    )
                }
                Slot::Shift(_) => x.clone(),
                Slot::Fixed(block) => x
                    .clone()
                    .narrow(2, block, 1)
                    .expand([batch, groups, blocks, chunk, width]),
                Slot::Listed {
                    groups: listed,
                    ref indices,
                } => {
                    // Flat indices into the `[groups·blocks]` axis, per head when listed so.
                    let flat: Vec<i64> = (0..groups)
                        .flat_map(|group| {
                            let list = if listed == 1 { 0 } else { group };
                            indices[list * blocks..(list + 1) * blocks]
                                .iter()
                                .map(move |&block| (group * blocks + block) as i64)
                        })
                        .collect();
                    let flat = Tensor::<1, Int>::from_data(
                        TensorData::new(flat, [groups * blocks]),
                        &device,
                    );
                    x.clone()
                        .reshape([batch, groups * blocks, chunk, width])
                        .select(1, flat)
                        .reshape([batch, groups, blocks, chunk, width])
                }
            })
            .collect();
        Tensor::cat(parts, 3)
    }
}

/// Keys every query sees besides its blocks (Longformer's global tokens).
pub struct SharedKeys {
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
pub fn block_sparse_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    excluded: Tensor<2>,
    plan: &BlockPlan,
    shared: Option<SharedKeys>,
    dropout: &Dropout,
) -> Tensor<4> {
    let [batch, heads, seq, head_dim] = q.dims();
    let (chunk, blocks) = (plan.chunk, plan.blocks);
    let padded = blocks * chunk;
    let width = plan.slots.len() * chunk;
    let device = q.device();
    let to_blocks =
        |x: Tensor<4>| pad_tail(x, padded, 0.0).reshape([batch, heads, blocks, chunk, head_dim]);
    let q = to_blocks(q);
    let k = plan.gather(to_blocks(k), 0.0); // [b, h, nb, W, dh]
    let v = plan.gather(to_blocks(v), 0.0);
    // Positions past the end of the sequence count as excluded.
    let excluded = pad_tail(excluded, padded, 1.0).reshape([batch, 1, blocks, chunk, 1]);
    let excluded = plan
        .gather(excluded, 1.0)
        .reshape([batch, plan.groups(), blocks, 1, width]);
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
    if let Some(dropped) = &plan.dropped {
        // Repeat each slot's flag over its `chunk` keys.
        let bias: Vec<f32> = dropped
            .iter()
            .flat_map(|&d| std::iter::repeat_n(if d { PAD_BIAS } else { 0.0 }, chunk))
            .collect();
        scores =
            scores + Tensor::from_data(TensorData::new(bias, [1, 1, blocks, 1, width]), &device);
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
pub fn dense_rows(
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

/// `[b, h, nb, c, dh]` → `[b, h, seq, dh]`.
fn unblock(x: Tensor<5>, seq: usize) -> Tensor<4> {
    let [batch, heads, blocks, chunk, head_dim] = x.dims();
    x.reshape([batch, heads, blocks * chunk, head_dim])
        .narrow(2, 0, seq)
}

/// `[b, n]` padding mask (or none) → 1.0 at padding, 0.0 elsewhere.
pub fn pad_indicator(
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
pub fn pad_tail<const D: usize>(x: Tensor<D>, len: usize, value: f32) -> Tensor<D> {
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
pub mod dense {
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
    fn sliding_plan_shifts_by_up_to_the_reach_and_masks_the_window_edge() {
        let plan = BlockPlan::sliding(10, 4, 4, 4); // 3 blocks, reach 1
        assert_eq!(plan.blocks, 3);
        let offsets: Vec<isize> = plan
            .slots
            .iter()
            .map(|slot| match slot {
                Slot::Shift(offset) => *offset,
                _ => panic!("a sliding plan only shifts"),
            })
            .collect();
        assert_eq!(offsets, vec![-1, 0, 1]);
        // Query offset 0 sees slot keys at offsets -4..=4 around it: window slots 0..=8 of 12.
        let mask = plan.token_mask.unwrap();
        let expected: Vec<bool> = (0..12).map(|x| x > 8).collect();
        assert_eq!(mask[..12].to_vec(), expected);
    }

    #[test]
    fn gather_places_shifted_fixed_and_listed_blocks_side_by_side() {
        let device = Device::flex();
        // 2 heads, 3 blocks of 1 token, value = 10·head + block.
        let values: Vec<f32> = (0..6).map(|x| (10 * (x / 3) + x % 3) as f32).collect();
        let x = Tensor::<5>::from_data(TensorData::new(values, [1, 2, 3, 1, 1]), &device);
        let plan = BlockPlan {
            chunk: 1,
            blocks: 3,
            slots: vec![
                Slot::Shift(-1),
                Slot::Shift(2),
                Slot::Fixed(2),
                Slot::Listed {
                    groups: 2,
                    indices: vec![2, 0, 1, 1, 1, 0],
                },
            ],
            dropped: None,
            token_mask: None,
        };
        let gathered = plan
            .gather(x, -1.0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        #[rustfmt::skip]
        let expected = vec![
            -1.0, 2.0, 2.0, 2.0,   0.0, -1.0, 2.0, 0.0,   1.0, -1.0, 2.0, 1.0,
            -1.0, 12.0, 12.0, 11.0,   10.0, -1.0, 12.0, 11.0,   11.0, -1.0, 12.0, 10.0,
        ];
        assert_eq!(gathered, expected);
    }
}
