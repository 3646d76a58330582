//! Reformer LSH attention: Kitaev, Kaiser and Levskaya 2020, "Reformer: The Efficient
//! Transformer", ICLR (<https://arxiv.org/abs/2001.04451>), a baseline of the Long Range Arena.
//!
//! Queries and keys are shared (`K = Q/‖Q‖`). In each of `n_hashes` rounds a random rotation `R`
//! `[d, n_buckets/2]` hashes every token to `argmax([xR, −xR])`; tokens are sorted by (bucket,
//! position) and the sorted sequence is cut into chunks of `bucket_size`; each chunk attends to
//! itself and the previous chunk. A query never attends to itself unless nothing else is
//! available (its score is replaced by −5e4). Each round's output is undone from the sort, and
//! the rounds are combined with weights `softmax_r(logsumexp of round r's scores)`, i.e. as one
//! softmax over the union of the rounds' keys (keys found in several rounds count several times,
//! as in the paper without duplicate removal).
//!
//! Complexity: O(h·n·c·d) time and O(h·n·c) memory for `h = n_hashes` rounds of chunk length
//! `c = bucket_size`, plus the O(h·n·log n) sort. `n_buckets = n/c` as in lucidrains.
//!
//! Official code checked: google/trax `trax/layers/research/efficient_attention.py` (LSH
//! self-attention) and lucidrains/reformer-pytorch `reformer_pytorch/reformer_pytorch.py`
//! (`LSHAttention`); LRA's `lra_benchmarks/models/reformer/`. Written from them, not copied.
//!
//! Projections: only Q, V and the output, since K is Q. Like `soft`, this mixer therefore builds
//! its own projections (the shared K projection would get no gradient) and is not an
//! `AttentionCore`; [`ReformerAttention::attend_shared`] is its core on projected heads.
//!
//! Randomness: the rotations are drawn from the device RNG on every call, in training and in
//! evaluation (trax and lucidrains resample per call), so outputs are reproducible under the
//! caller's seed. One rotation per round is shared by every batch row and head (lucidrains'
//! default `random_rotations_per_head = False`), which keeps rows independent of each other.
//!
//! Deviations, and why:
//! - Padded tokens are hashed to an extra last bucket, so they sort after every real token and
//!   their content cannot move real tokens between chunks; they are also masked as keys.
//!   lucidrains/trax hash padding like any token (padding then changes which real tokens meet).
//! - The sequence is padded at the end to a multiple of `2·bucket_size` (an even bucket count),
//!   which the official code requires of its input.
//! - The first chunk of a round looks back at the last chunk of the same round (trax's
//!   `look_adjacent` wraps around within a round; lucidrains' and Hugging Face's wrap across
//!   rounds: `look_back = "across_rounds"`). Other options for the Hugging Face layer Skyformer
//!   runs: `buckets_per_chunk = 2`, `scale_scores = false`, `rotations_per_head = true`.
//! - No same-bucket restriction and no duplicate removal across rounds (lucidrains' defaults
//!   `attend_across_buckets = True`, `allow_duplicate_attention = True`); not causal (LRA
//!   encoders are bidirectional).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::kind::Basic;
use burn::tensor::{Bool, Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::common::log_sum_exp;
use super::common::projection::{merge_heads, split_heads};
use super::common::reference::PAD_BIAS;
use super::{Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, TokenMixer, at_least_one};

use crate::folded_linear::FoldedLinear;

/// Score of a query with itself: lower than any real score, higher than padding (lucidrains'
/// `TOKEN_SELF_ATTN_VALUE`).
const SELF_SCORE: f32 = -5e4;

/// Settings of [`ReformerAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReformerConfig {
    /// Hash rounds `n_hashes`. Default: 2 (mlpen/Skeinformer LRA setting `num_hash = 2`).
    pub n_hashes: usize,
    /// Chunk length `c` after sorting; the number of buckets is `buckets_per_chunk · n / c`.
    /// Default: 64 (lucidrains `bucket_size = 64`).
    pub bucket_size: usize,
    /// Buckets per chunk length. Default: 1 (lucidrains: `n / bucket_size` buckets); 2 is the
    /// Hugging Face `ReformerConfig(num_buckets = None)` rule, `2n / chunk_length` for
    /// power-of-two `n` (`modeling_reformer.py:699-717`, what Skyformer's `LSHAttention` runs).
    pub buckets_per_chunk: usize,
    /// Divide the scores `q·k̂` by `√d`. Default: true (lucidrains); false for trax and Hugging
    /// Face, which scale the unit keys only (`modeling_reformer.py:737, 955-971`).
    pub scale_scores: bool,
    /// Which chunk the first chunk of a round looks back at. Default: `within_round` (its own
    /// round's last, as trax); `across_rounds`: the previous round's last (the rounds' chunks
    /// concatenated, Hugging Face `_look_adjacent`, `modeling_reformer.py:275-296`, lucidrains).
    pub look_back: LookBack,
    /// One rotation per head instead of one shared by the heads. Default: false (lucidrains'
    /// `random_rotations_per_head = False`); Hugging Face draws `[heads, d, …]`
    /// (`modeling_reformer.py:631-643`).
    pub rotations_per_head: bool,
}

/// See [`ReformerConfig::look_back`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookBack {
    #[default]
    WithinRound,
    AcrossRounds,
}

impl Default for ReformerConfig {
    fn default() -> Self {
        Self {
            n_hashes: 2,
            bucket_size: 64,
            buckets_per_chunk: 1,
            scale_scores: true,
            look_back: LookBack::WithinRound,
            rotations_per_head: false,
        }
    }
}

impl MixerSpec for ReformerConfig {
    type Mixer = ReformerAttention;
    const SUMMARY: &'static str =
        "Reformer: shared-QK LSH attention over sorted chunks, several hash rounds";

    fn caps(&self) -> Caps {
        Caps {
            qkv_width: true,
            projection_bias: true,
            ..Caps::WITHOUT_CORE
        }
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("n_hashes", self.n_hashes)?;
        at_least_one("bucket_size", self.bucket_size)?;
        at_least_one("buckets_per_chunk", self.buckets_per_chunk)?;
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> ReformerAttention {
        let linear = |d_in, d_out| {
            LinearConfig::new(d_in, d_out)
                .with_bias(dims.projection_bias)
                .init(device)
        };
        let input = || linear(dims.d_model, dims.qkv_dim);
        ReformerAttention {
            query: input(),
            value: input(),
            output: linear(dims.qkv_dim, dims.d_model),
            dropout: DropoutConfig::new(dims.dropout).init(),
            n_heads: dims.n_heads,
            n_hashes: self.n_hashes,
            bucket_size: self.bucket_size,
            buckets_per_chunk: self.buckets_per_chunk,
            scale_scores: self.scale_scores,
            look_back: self.look_back,
            rotations_per_head: self.rotations_per_head,
        }
    }
}

/// Multi-head LSH attention with shared queries and keys.
#[derive(Module, Debug)]
pub struct ReformerAttention {
    query: Linear,
    value: Linear,
    output: Linear,
    dropout: Dropout,
    n_heads: usize,
    n_hashes: usize,
    bucket_size: usize,
    buckets_per_chunk: usize,
    scale_scores: bool,
    #[module(skip)]
    look_back: LookBack,
    rotations_per_head: bool,
}

impl TokenMixer for ReformerAttention {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        let MixerInput { x, pad_mask, carry } = input;
        let qk = split_heads(self.query.forward_folded(x.clone()), self.n_heads);
        let v = split_heads(self.value.forward_folded(x), self.n_heads);
        let context = self.attend_shared(qk, v, pad_mask);
        MixerOutput {
            x: self.output.forward_folded(merge_heads(context)),
            carry,
        }
    }
}

impl ReformerAttention {
    /// LSH attention of shared queries/keys `qk` with rotations drawn from the device RNG.
    ///
    /// # Shapes
    /// - `qk`, `v`: `[batch, heads, seq, head_dim]`; `pad_mask`: `[batch, seq]`, `true` = padding
    /// - output: `[batch, heads, seq, head_dim]`
    pub fn attend_shared(
        &self,
        qk: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [_, heads, seq, head_dim] = qk.dims();
        let layout = Layout::new(seq, self.bucket_size, self.n_hashes, self.buckets_per_chunk);
        let groups = if self.rotations_per_head { heads } else { 1 };
        let rotations = Tensor::random(
            [groups, head_dim, self.n_hashes * layout.buckets / 2],
            Distribution::Normal(0.0, 1.0),
            &qk.device(),
        );
        self.attend_rotated(qk, v, pad_mask, rotations)
    }

    /// [`Self::attend_shared`] with given rotations `[1 or heads, head_dim, n_hashes · n_buckets / 2]`.
    fn attend_rotated(
        &self,
        qk: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
        rotations: Tensor<3>,
    ) -> Tensor<4> {
        let [batch, heads, seq, head_dim] = qk.dims();
        let device = qk.device();
        let layout = Layout::new(seq, self.bucket_size, self.n_hashes, self.buckets_per_chunk);
        let (p, rows) = (layout.padded, batch * heads);
        let is_pad = pad_mask
            .map(|mask| mask.float())
            .unwrap_or_else(|| Tensor::zeros([batch, seq], &device));
        let is_pad = extend_seq(is_pad.reshape([batch, 1, seq, 1]), p, 1.0)
            .expand([batch, heads, p, 1])
            .reshape([rows, p]); // [bh, p]
        let flat = |x: Tensor<4>| extend_seq(x, p, 0.0).reshape([rows, p, head_dim]);
        let (qk, v) = (flat(qk), flat(v));
        let keys = qk.clone() / (qk.clone().powi_scalar(2).sum_dim(2).sqrt() + 1e-12);

        let width = rotations.dims()[2];
        let rotations = rotations
            .unsqueeze::<4>()
            .expand([batch, heads, head_dim, width])
            .reshape([rows, head_dim, width]);
        let buckets = layout.hash(qk.clone(), rotations, is_pad.clone()); // [bh, R, p]
        let order = layout.sort(buckets); // [bh, R·p]
        let sorted_rows = layout.rounds * p;
        let position = order.clone().remainder_scalar(p as i64);
        let gathered =
            (position.clone() + row_offsets(rows, p, &device)).reshape([rows * sorted_rows]);
        let pick = |x: Tensor<3>| {
            let width = x.dims()[2];
            layout.chunked(
                x.reshape([rows * p, width]).select(0, gathered.clone()),
                rows,
            )
        };
        let (sq, sk, sv) = (pick(qk), pick(keys), pick(v)); // [bh, R, nc, c, d]
        let key_pad = pick(is_pad.reshape([rows, p, 1])); // [bh, R, nc, c, 1]
        let positions = layout.chunked(position.reshape([rows * sorted_rows, 1]), rows);

        let scores = sq.matmul(self.previous_chunks(sk).swap_dims(3, 4));
        let scores = if self.scale_scores {
            scores / (head_dim as f64).sqrt()
        } else {
            scores
        };
        let shape = scores.dims(); // [bh, R, nc, c, 2c]
        let itself = positions.clone().expand(shape).equal(
            self.previous_chunks(positions)
                .swap_dims(3, 4)
                .expand(shape),
        );
        let padded_key = self
            .previous_chunks(key_pad)
            .swap_dims(3, 4)
            .greater_elem(0.5);
        let scores = scores
            .mask_fill(itself, SELF_SCORE)
            .mask_fill(padded_key.expand(shape), PAD_BIAS);

        let lse = log_sum_exp(scores.clone(), 4); // [bh, R, nc, c, 1]
        let probs = self.dropout.forward((scores - lse.clone()).exp());
        let context = probs.matmul(self.previous_chunks(sv)); // [bh, R, nc, c, d]

        // Undo the sort: token t of round r sits at sorted slot `slot[r·p + t]`.
        let int_dtype = order.dtype();
        let slot = (order.argsort(1).cast(int_dtype) + row_offsets(rows, sorted_rows, &device))
            .reshape([rows * sorted_rows]);
        let unsort = |x: Tensor<5>, width| {
            x.reshape([rows * sorted_rows, width])
                .select(0, slot.clone())
                .reshape([rows, layout.rounds, p, width])
        };
        let context = unsort(context, head_dim);
        let weights = softmax(unsort(lse, 1), 1); // [bh, R, p, 1]
        (context * weights)
            .sum_dim(1)
            .reshape([batch, heads, p, head_dim])
            .narrow(2, 0, seq)
    }
}

impl ReformerAttention {
    /// Each chunk followed by the chunk it looks back at (see [`LookBack`]): `[bh, R, nc, c, x]`
    /// → `[bh, R, nc, 2c, x]`.
    fn previous_chunks<K: Basic>(&self, x: Tensor<5, K>) -> Tensor<5, K> {
        match self.look_back {
            LookBack::WithinRound => look_one_back(x),
            LookBack::AcrossRounds => {
                let [rows, rounds, chunks, chunk, width] = x.dims();
                look_one_back(x.reshape([rows, 1, rounds * chunks, chunk, width])).reshape([
                    rows,
                    rounds,
                    chunks,
                    2 * chunk,
                    width,
                ])
            }
        }
    }
}

/// Sizes of one call: `rounds` hash rounds over `padded` positions, `buckets` real buckets (plus
/// one for padding), chunks of `chunk` sorted tokens.
struct Layout {
    padded: usize,
    chunk: usize,
    buckets: usize,
    rounds: usize,
}

impl Layout {
    fn new(seq: usize, chunk: usize, rounds: usize, buckets_per_chunk: usize) -> Self {
        let padded = seq.div_ceil(2 * chunk).max(1) * 2 * chunk;
        Self {
            padded,
            chunk,
            buckets: buckets_per_chunk * padded / chunk,
            rounds,
        }
    }

    /// Bucket of each token in each round `[bh, R, p]`: `argmax([xR, −xR])`, padding → `buckets`.
    /// `rotations`: `[bh, d, R·buckets/2]`, each row's (shared, or its head's).
    fn hash(&self, qk: Tensor<3>, rotations: Tensor<3>, is_pad: Tensor<2>) -> Tensor<3, Int> {
        let [rows, p, _] = qk.dims();
        let half = self.buckets / 2;
        let rotated = qk
            .detach()
            .matmul(rotations)
            .reshape([rows, p, self.rounds, half]);
        let buckets = Tensor::cat(vec![rotated.clone(), rotated.neg()], 3)
            .argmax(3)
            .reshape([rows, p, self.rounds])
            .swap_dims(1, 2); // [bh, R, p]
        let padding = is_pad
            .greater_elem(0.5)
            .reshape([rows, 1, p])
            .expand([rows, self.rounds, p]);
        buckets.mask_fill(padding, self.buckets as i64)
    }

    /// Index `r·p + t` (round, original position) of the token at each sorted slot `[bh, R·p]`:
    /// rounds in order, within a round by bucket, then by position.
    fn sort(&self, buckets: Tensor<3, Int>) -> Tensor<2, Int> {
        let [rows, rounds, p] = buckets.dims();
        let device = buckets.device();
        let round = Tensor::<1, Int>::arange(0..rounds as i64, &device)
            .reshape([1, rounds, 1])
            .mul_scalar((self.buckets + 1) as i64);
        let position = Tensor::<1, Int>::arange(0..p as i64, &device).reshape([1, 1, p]);
        let int_dtype = position.dtype();
        let key = ((buckets + round) * p as i64 + position).reshape([rows, rounds * p]);
        let (_, sorted) = key.sort_with_indices(1); // index r·p + t of each sorted slot
        // Sort indices come back as i64 on some backends; index arithmetic needs one int type.
        sorted.cast(int_dtype)
    }

    /// `[bh·R·p, x]` in sorted order → chunks `[bh, R, nc, c, x]`.
    fn chunked<K: Basic>(&self, x: Tensor<2, K>, rows: usize) -> Tensor<5, K> {
        let width = x.dims()[1];
        let chunks = self.padded / self.chunk;
        x.reshape([rows, self.rounds, chunks, self.chunk, width])
    }
}

/// Each chunk followed by the previous chunk of its round (the first one by the last):
/// `[bh, R, nc, c, x]` → `[bh, R, nc, 2c, x]`.
fn look_one_back<K: Basic>(x: Tensor<5, K>) -> Tensor<5, K> {
    let chunks = x.dims()[2];
    let previous = Tensor::cat(
        vec![
            x.clone().narrow(2, chunks - 1, 1),
            x.clone().narrow(2, 0, chunks - 1),
        ],
        2,
    );
    Tensor::cat(vec![x, previous], 3)
}

/// Offsets `row·stride` `[rows, 1]` that turn per-row indices into indices of the flattened rows.
fn row_offsets(rows: usize, stride: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<1, Int>::arange(0..rows as i64, device)
        .reshape([rows, 1])
        .mul_scalar(stride as i64)
}

/// Extends axis 2 of `x` to `len` with `value`.
fn extend_seq(x: Tensor<4>, len: usize, value: f32) -> Tensor<4> {
    let mut dims = x.dims();
    let missing = len - dims[2];
    if missing == 0 {
        return x;
    }
    dims[2] = missing;
    let fill = Tensor::<4>::full(dims, value, &x.device());
    Tensor::cat(vec![x, fill], 2)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::reference::key_padding_bias;
    use crate::mixer::common::testing::{gaussian, pad_mask};

    const HEAD_DIM: usize = 8;

    fn reformer(n_hashes: usize, bucket_size: usize, device: &Device) -> ReformerAttention {
        reformer_with(
            ReformerConfig {
                n_hashes,
                bucket_size,
                ..ReformerConfig::default()
            },
            device,
        )
    }

    fn reformer_with(config: ReformerConfig, device: &Device) -> ReformerAttention {
        config.init(&MixerDims::new(2 * HEAD_DIM, 2, 256), device)
    }

    /// Shared-QK softmax attention over every key but the query itself (kept as a last resort).
    fn full_attention_without_self(qk: Tensor<4>, v: Tensor<4>, pad: Tensor<2, Bool>) -> Tensor<4> {
        let seq = qk.dims()[2];
        let keys = qk.clone() / qk.clone().powi_scalar(2).sum_dim(3).sqrt();
        let scores = qk.matmul(keys.swap_dims(2, 3)) / (HEAD_DIM as f64).sqrt();
        let diagonal = Tensor::<2, Bool>::from_data(
            TensorData::new(
                (0..seq * seq).map(|f| f / seq == f % seq).collect(),
                [seq, seq],
            ),
            &scores.device(),
        );
        let shape = scores.dims();
        let scores = scores.mask_fill(diagonal.reshape([1, 1, seq, seq]).expand(shape), SELF_SCORE);
        softmax(scores + key_padding_bias(pad), 3).matmul(v)
    }

    /// With two chunks every query sees every key (own chunk and the other one), whatever the
    /// hashes: one effective bucket, so LSH attention is full attention without self-attention.
    #[test]
    fn chunks_covering_the_sequence_give_full_attention_without_self() {
        let device = Device::flex();
        let seq = 13; // padded to 16 = two chunks of 8
        let [qk, v] = [1, 2].map(|seed| gaussian(&device, seed, [2, 2, seq, HEAD_DIM]));
        let pad = pad_mask(&device, seq, 9);
        device.seed(3);
        let actual =
            reformer(3, 8, &device).attend_shared(qk.clone(), v.clone(), Some(pad.clone()));
        let expected = full_attention_without_self(qk, v, pad);
        actual.narrow(2, 0, 9).to_data().assert_approx_eq::<f32>(
            &expected.narrow(2, 0, 9).to_data(),
            Tolerance::absolute(1e-5),
        );
    }

    #[test]
    fn a_query_attends_to_itself_only_when_nothing_else_is_visible() {
        let device = Device::flex();
        let seq = 16;
        let [qk, v] = [1, 2].map(|seed| gaussian(&device, seed, [2, 2, seq, HEAD_DIM]));
        let lone =
            reformer(2, 8, &device).attend_shared(qk, v.clone(), Some(pad_mask(&device, seq, 1)));
        let first = |x: Tensor<4>| x.narrow(0, 1, 1).narrow(2, 0, 1);
        first(lone)
            .to_data()
            .assert_approx_eq::<f32>(&first(v).to_data(), Tolerance::absolute(1e-6));
    }

    /// Several chunks and rounds: equals a dense computation that builds each round's visibility
    /// (own or previous chunk of the sorted order) from the same rotations, then combines the
    /// rounds by the softmax of their log-sum-exps; with one and with two buckets per chunk (the
    /// Hugging Face count).
    #[test]
    fn equals_a_dense_computation_of_the_same_buckets() {
        assert_equals_dense(1, LookBack::WithinRound, 1);
        assert_equals_dense(2, LookBack::WithinRound, 1);
        // Skyformer's (Hugging Face's): across rounds, one rotation per head.
        assert_equals_dense(2, LookBack::AcrossRounds, 2);
    }

    fn assert_equals_dense(buckets_per_chunk: usize, look_back: LookBack, groups: usize) {
        let device = Device::flex();
        let (seq, chunk, rounds, real) = (61, 8, 2, 50);
        let [qk, v] = [1, 2].map(|seed| gaussian(&device, seed, [2, 2, seq, HEAD_DIM]));
        let pad = pad_mask(&device, seq, real);
        let layout = Layout::new(seq, chunk, rounds, buckets_per_chunk);
        let (p, half) = (layout.padded, layout.buckets / 2);
        device.seed(4);
        let rotations = Tensor::<3>::random(
            [groups, HEAD_DIM, rounds * half],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let config = ReformerConfig {
            n_hashes: rounds,
            bucket_size: chunk,
            buckets_per_chunk,
            look_back,
            rotations_per_head: groups > 1,
            ..ReformerConfig::default()
        };
        let actual = reformer_with(config, &device).attend_rotated(
            qk.clone(),
            v.clone(),
            Some(pad.clone()),
            rotations.clone(),
        );

        let qk = extend_seq(qk, p, 0.0);
        let v = extend_seq(v, p, 0.0);
        let rotated: Vec<f32> = qk
            .clone()
            .matmul(rotations.unsqueeze())
            .into_data()
            .try_into_vec()
            .expect("f32 data");
        // Per (row, round, query, key): how often the key is in the query's two chunks (twice
        // when the chunk looked back at is another round's and holds it too), and the fixed
        // score of a padded key or of the query itself.
        let cells = 4 * rounds * p * p;
        let (mut log_count, mut fixed, mut is_fixed) =
            (vec![0f32; cells], vec![0f32; cells], vec![false; cells]);
        let chunks = p / chunk;
        for row in 0..4 {
            let is_pad = |t: usize| t >= seq || (row >= 2 && t >= real);
            let chunk_of: Vec<Vec<usize>> = (0..rounds)
                .map(|r| {
                    let bucket = |t: usize| {
                        if is_pad(t) {
                            return layout.buckets;
                        }
                        let x = &rotated[(row * p + t) * rounds * half + r * half..][..half];
                        let signed = x.iter().copied().chain(x.iter().map(|a| -a));
                        signed
                            .enumerate()
                            .fold(
                                (0, f32::MIN),
                                |best, (i, a)| if a > best.1 { (i, a) } else { best },
                            )
                            .0
                    };
                    let mut order: Vec<usize> = (0..p).collect();
                    order.sort_by_key(|&t| (bucket(t), t));
                    let mut chunk_of = vec![0; p];
                    for (slot, &t) in order.iter().enumerate() {
                        chunk_of[t] = slot / chunk;
                    }
                    chunk_of
                })
                .collect();
            for r in 0..rounds {
                for i in 0..p {
                    let own = chunk_of[r][i];
                    let (back_round, back_chunk) = match look_back {
                        LookBack::WithinRound => (r, (own + chunks - 1) % chunks),
                        LookBack::AcrossRounds => {
                            let global =
                                (r * chunks + own + rounds * chunks - 1) % (rounds * chunks);
                            (global / chunks, global % chunks)
                        }
                    };
                    let keys = chunk_of[r].iter().zip(&chunk_of[back_round]).enumerate();
                    for (j, (&same_round, &looked_back)) in keys {
                        let count =
                            usize::from(same_round == own) + usize::from(looked_back == back_chunk);
                        let cell = ((row * rounds + r) * p + i) * p + j;
                        log_count[cell] = if count == 0 {
                            -1e30
                        } else {
                            (count as f32).ln()
                        };
                        if is_pad(j) {
                            (fixed[cell], is_fixed[cell]) = (PAD_BIAS, true);
                        } else if i == j {
                            (fixed[cell], is_fixed[cell]) = (SELF_SCORE, true);
                        }
                    }
                }
            }
        }
        let shape = [4, rounds, p, p];
        let log_count = Tensor::<4>::from_data(TensorData::new(log_count, shape), &device);
        let fixed = Tensor::<4>::from_data(TensorData::new(fixed, shape), &device);
        let is_fixed = Tensor::<4, Bool>::from_data(TensorData::new(is_fixed, shape), &device);
        let qk = qk.reshape([4, 1, p, HEAD_DIM]);
        let keys = qk.clone() / qk.clone().powi_scalar(2).sum_dim(3).sqrt().clamp_min(1e-12);
        let scores = qk.matmul(keys.swap_dims(2, 3)) / (HEAD_DIM as f64).sqrt();
        let scores = scores.expand(shape).mask_where(is_fixed, fixed) + log_count;
        let max = scores.clone().max_dim(3);
        let lse = (scores.clone() - max.clone()).exp().sum_dim(3).log() + max; // [bh, R, p, 1]
        let rounds_out = (scores - lse.clone())
            .exp()
            .matmul(v.reshape([4, 1, p, HEAD_DIM]));
        let expected = (rounds_out * softmax(lse, 1))
            .sum_dim(1)
            .reshape([2, 2, p, HEAD_DIM]);
        actual.narrow(2, 0, real).to_data().assert_approx_eq::<f32>(
            &expected.narrow(2, 0, real).to_data(),
            Tolerance::absolute(1e-5),
        );
    }

    /// `scale_scores = false` (trax, Hugging Face): the unscaled scores `q·k̂`, i.e. the scaled
    /// layer's output for queries √d times longer (the hash, an argmax, ignores the length).
    #[test]
    fn unscaled_scores_equal_scaled_ones_of_longer_queries() {
        let device = Device::flex();
        let [qk, v] = [1, 2].map(|seed| gaussian(&device, seed, [1, 2, 40, HEAD_DIM]));
        let unscaled = ReformerConfig {
            bucket_size: 8,
            scale_scores: false,
            ..ReformerConfig::default()
        };
        let scaled = ReformerConfig {
            scale_scores: true,
            ..unscaled.clone()
        };
        let run = |config, qk: Tensor<4>| {
            device.seed(3);
            reformer_with(config, &device).attend_shared(qk, v.clone(), None)
        };
        let longer = qk.clone() * (HEAD_DIM as f64).sqrt();
        run(unscaled, qk)
            .into_data()
            .assert_approx_eq::<f32>(&run(scaled, longer).into_data(), Tolerance::absolute(1e-4));
    }
}
