//! The CPU kernels of FlashAttention (see the parent module): the tiled forward with the online
//! softmax and the FA2 backward that recomputes score tiles, over borrowed flat slices.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::{FlashAttentionKernels, FlashExtras};
use crate::ops::buffers::{f32_slice, written_zeros};
use crate::ops::dropout::keep_mask;
use crate::ops::fast_exp;
use crate::ops::tile_product::{View, product};

/// Defines a method that runs `self.$inline(..)` (an `#[inline(always)]` method) compiled for
/// AVX-512F, or else AVX2, when the CPU has it. The crate targets baseline x86-64, whose 4-lane
/// SSE2 code made the exp and max passes a fifth of the run time; 16 lanes halve 8 lanes' cost.
macro_rules! widest_simd {
    (
        $(#[$doc:meta])*
        fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) $(-> $ret:ty)? => $inline:ident
    ) => {
        $(#[$doc])*
        fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512(problem: &Problem $(, $arg: $ty)*) $(-> $ret)? {
                    problem.$inline($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2(problem: &Problem $(, $arg: $ty)*) $(-> $ret)? {
                    problem.$inline($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512(self $(, $arg)*) };
                }
                if is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2(self $(, $arg)*) };
                }
            }
            self.$inline($($arg),*)
        }
    };
}

/// Most rows (forward: keys, backward: queries) that one run of consecutive kept blocks puts into
/// a single product: a longer product loads and stores its accumulators less often, and the
/// `gemm` crate (the fallback without AVX-512) packs its operands once per call.
const RUN_ROWS: usize = 256;

impl FlashAttentionKernels for Flex {
    fn forward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        extras: &FlashExtras<Self>,
    ) -> (FlexTensor, FlexTensor) {
        let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
        let problem = Problem::new(&q, &k, &v, extras);
        let (out, lse) = problem.forward();
        let [b, h, n, d] = problem.query_shape();
        (
            FlexTensor::from_data(TensorData::new(out, [b, h, n, d])),
            FlexTensor::from_data(TensorData::new(lse, [b, h, n])),
        )
    }

    fn backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        out: FlexTensor,
        lse: FlexTensor,
        grad_out: FlexTensor,
        extras: &FlashExtras<Self>,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
        let (out, lse, grad_out) = (
            out.to_contiguous(),
            lse.to_contiguous(),
            grad_out.to_contiguous(),
        );
        let problem = Problem::new(&q, &k, &v, extras);
        let (dq, dk, dv) = problem.backward(f32_slice(&out), f32_slice(&lse), f32_slice(&grad_out));
        let [b, h, n, d] = problem.query_shape();
        let m = problem.keys;
        (
            FlexTensor::from_data(TensorData::new(dq, [b, h, n, d])),
            FlexTensor::from_data(TensorData::new(dk, [b, h, m, d])),
            FlexTensor::from_data(TensorData::new(dv, [b, h, m, d])),
        )
    }
}

/// Borrowed inputs of one call, flattened: `q` is `[b·h, n, d]`, `k`, `v` are `[b·h, m, d]`.
struct Problem<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    key_bias: Vec<f32>,
    layout: Layout,
    batch: usize,
    heads: usize,
    queries: usize,
    keys: usize,
    head_dim: usize,
    dropout: f32,
    seed: u64,
}

/// Which `[block, block]` tiles are computed, per head (or one for all heads).
struct Layout {
    block: usize,
    heads: usize,
    query_blocks: usize,
    key_blocks: usize,
    kept: Vec<bool>,
}

impl Layout {
    fn index(&self, head: usize, query_block: usize, key_block: usize) -> usize {
        let head = if self.heads == 1 { 0 } else { head };
        (head * self.query_blocks + query_block) * self.key_blocks + key_block
    }

    /// Kept key blocks of one query block, ascending.
    fn row(&self, head: usize, query_block: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.key_blocks).filter(move |&j| self.kept[self.index(head, query_block, j)])
    }

    /// Query blocks that keep one key block, ascending.
    fn column(&self, head: usize, key_block: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.query_blocks).filter(move |&i| self.kept[self.index(head, i, key_block)])
    }
}

/// Runs `(first, count)` of consecutive indices of the ascending `indices`, at most `max` long.
fn runs(indices: impl Iterator<Item = usize>, max: usize) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for index in indices {
        match runs.last_mut() {
            Some((first, count)) if *first + *count == index && *count < max => *count += 1,
            _ => runs.push((index, 1)),
        }
    }
    runs
}

/// Rows `start..start + len` of a `[rows, width]` row-major matrix.
fn rows(data: &[f32], width: usize, start: usize, len: usize) -> &[f32] {
    &data[start * width..(start + len) * width]
}

impl<'a> Problem<'a> {
    fn new(
        q: &'a FlexTensor,
        k: &'a FlexTensor,
        v: &'a FlexTensor,
        extras: &FlashExtras<Flex>,
    ) -> Self {
        let q_shape = q.layout().shape();
        let (batch, heads, queries, head_dim) = (q_shape[0], q_shape[1], q_shape[2], q_shape[3]);
        let keys = k.layout().shape()[2];
        let layout_tensor = extras.layout.to_contiguous();
        let layout_shape = layout_tensor.layout().shape();
        let block = extras.block_size;
        let layout = Layout {
            block,
            heads: layout_shape[0],
            query_blocks: layout_shape[1],
            key_blocks: layout_shape[2],
            kept: f32_slice(&layout_tensor)
                .iter()
                .map(|&x| x != 0.0)
                .collect(),
        };
        assert!(
            block > 0
                && layout.query_blocks == queries.div_ceil(block)
                && layout.key_blocks == keys.div_ceil(block)
                && (layout.heads == 1 || layout.heads == heads),
            "block layout {layout_shape:?} does not fit {heads} heads, {queries} queries, {keys} keys in blocks of {block}"
        );
        Self {
            q: f32_slice(q),
            k: f32_slice(k),
            v: f32_slice(v),
            key_bias: f32_slice(&extras.key_bias.to_contiguous()).to_vec(),
            layout,
            batch,
            heads,
            queries,
            keys,
            head_dim,
            dropout: extras.dropout,
            seed: extras.seed,
        }
    }

    fn query_shape(&self) -> [usize; 4] {
        [self.batch, self.heads, self.queries, self.head_dim]
    }

    /// First row and length of block `index` of a sequence of `len`.
    fn span(&self, index: usize, len: usize) -> (usize, usize) {
        self.run_span((index, 1), len)
    }

    /// First row and length of the blocks `first..first + count` of a sequence of `len`.
    fn run_span(&self, (first, count): (usize, usize), len: usize) -> (usize, usize) {
        let start = first * self.layout.block;
        (start, (count * self.layout.block).min(len - start))
    }

    /// `x` (`[b·h, m, d]` keys or values) with each key block `[c, d]` stored transposed as a
    /// `[d, c]` panel at the block's own offset, so a block's column of `xᵀ` is contiguous.
    fn panels(&self, x: &[f32]) -> Vec<f32> {
        let (m, d, block) = (self.keys, self.head_dim, self.layout.block);
        let mut panels = written_zeros(x.len());
        panels
            .par_chunks_mut(m * d)
            .zip(x.par_chunks(m * d))
            .for_each(|(panels, x)| {
                for (panel, x) in panels.chunks_mut(block * d).zip(x.chunks(block * d)) {
                    let width = x.len() / d;
                    for (i, row) in x.chunks(d).enumerate() {
                        for (p, &value) in row.iter().enumerate() {
                            panel[p * width + i] = value;
                        }
                    }
                }
            });
        panels
    }

    /// Blocks per run: [`RUN_ROWS`] rows, at least one block.
    fn run_blocks(&self) -> usize {
        (RUN_ROWS / self.layout.block).max(1)
    }

    /// `(output [b·h·n·d], logsumexp [b·h·n])`, parallel over (batch·head, query block).
    fn forward(&self) -> (Vec<f32>, Vec<f32>) {
        let (n, d, block) = (self.queries, self.head_dim, self.layout.block);
        let key_panels = self.panels(self.k);
        let mut out = written_zeros(self.batch * self.heads * n * d);
        let mut lse = written_zeros(self.batch * self.heads * n);
        out.par_chunks_mut(n * d)
            .zip(lse.par_chunks_mut(n))
            .enumerate()
            .for_each(|(bh, (out, lse))| {
                out.par_chunks_mut(block * d)
                    .zip(lse.par_chunks_mut(block))
                    .enumerate()
                    .for_each(|(i, (out, lse))| {
                        self.forward_query_block(bh, i, &key_panels, out, lse)
                    });
            });
        (out, lse)
    }

    widest_simd! {
        /// Online softmax over the kept key blocks of query block `i` (FA2 forward, one tile of
        /// rows).
        fn forward_query_block(
            &self,
            bh: usize,
            i: usize,
            key_panels: &[f32],
            acc: &mut [f32],
            lse: &mut [f32],
        ) => forward_query_block_inline
    }

    #[inline(always)]
    fn forward_query_block_inline(
        &self,
        bh: usize,
        i: usize,
        key_panels: &[f32],
        acc: &mut [f32],
        lse: &mut [f32],
    ) {
        let (n, m, d) = (self.queries, self.keys, self.head_dim);
        let (q0, r) = self.span(i, n);
        let q = rows(self.q, d, bh * n + q0, r);
        let bias = &self.key_bias[(bh / self.heads) * m..][..m];
        let mut row_max = vec![f32::NEG_INFINITY; r];
        let mut row_sum = vec![0f32; r];
        let run_blocks = self.run_blocks();
        let mut scores = vec![0f32; r * run_blocks * self.layout.block];
        for run in runs(self.layout.row(bh % self.heads, i), run_blocks) {
            let (k0, c) = self.run_span(run, m);
            let scores = &mut scores[..r * c];
            for (first, block) in (k0..k0 + c).step_by(self.layout.block).enumerate() {
                let (_, width) = self.span(block / self.layout.block, m);
                let panel = rows(key_panels, d, bh * m + block, width);
                let dst = &mut scores[first * self.layout.block..];
                // S = Q Kᵀ, one key block at a time
                product(
                    dst,
                    c,
                    View::rows(q, d),
                    View::rows(panel, width),
                    [r, d, width],
                    false,
                );
            }
            for (a, s) in scores.chunks_mut(c).enumerate() {
                let new_max = row_max[a].max(fast_exp::add_and_max(s, &bias[k0..k0 + c]));
                let rescale = (row_max[a] - new_max).exp();
                row_max[a] = new_max;
                row_sum[a] = row_sum[a] * rescale + fast_exp::exp_shifted_sum(s, -new_max);
                acc[a * d..(a + 1) * d]
                    .iter_mut()
                    .for_each(|o| *o *= rescale);
            }
            if self.dropout > 0.0 {
                for (a, s) in scores.chunks_mut(c).enumerate() {
                    for (s, keep) in s.iter_mut().zip(self.dropout_scales(bh * n + q0 + a, k0)) {
                        *s *= keep;
                    }
                }
            }
            let (scores, v) = (View::rows(scores, c), rows(self.v, d, bh * m + k0, c));
            product(acc, d, scores, View::rows(v, d), [r, c, d], true); // O += dropout(P̃) V
        }
        for (a, out) in acc.chunks_mut(d).enumerate() {
            // A row without kept blocks keeps a zero output (never the case for our layouts).
            if row_sum[a] > 0.0 {
                let inv = 1.0 / row_sum[a];
                out.iter_mut().for_each(|o| *o *= inv);
                lse[a] = row_max[a] + row_sum[a].ln();
            }
        }
    }

    /// Dropout factors (`1 / keep` or 0; all 1 without dropout) of row `row` of the flattened
    /// `[b·h·n, m]` weights from key `k0` on, at the element indices of `ops::softmax_attention`.
    fn dropout_scales(&self, row: usize, k0: usize) -> impl Iterator<Item = f32> + '_ {
        let keep = 1.0 - self.dropout;
        let start = (row * self.keys + k0) as u64;
        let mut mask = (self.dropout > 0.0).then(|| keep_mask(self.seed, start, keep));
        std::iter::repeat_with(
            move || match mask.as_mut().map(|m| m.next() == Some(true)) {
                None => 1.0,
                Some(true) => 1.0 / keep,
                Some(false) => 0.0,
            },
        )
    }

    /// `(dq, dk, dv)`, parallel over (batch·head, group of key blocks); each task owns the `dK`,
    /// `dV` rows of its key blocks and sums its `dQ` into a private buffer.
    fn backward(
        &self,
        out: &[f32],
        lse: &[f32],
        grad_out: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (n, m, d) = (self.queries, self.keys, self.head_dim);
        let heads_total = self.batch * self.heads;
        // D = rowsum(dO ⊙ O), one per query row.
        let delta: Vec<f32> = out
            .par_chunks(d)
            .zip(grad_out.par_chunks(d))
            .map(|(o, g)| o.iter().zip(g).map(|(o, g)| o * g).sum())
            .collect();
        // Enough groups per head to occupy every thread when there are few heads.
        let groups = rayon::current_num_threads()
            .div_ceil(heads_total)
            .clamp(1, self.layout.key_blocks.max(1));
        let blocks_per_group = self.layout.key_blocks.div_ceil(groups).max(1);
        let group_rows = blocks_per_group * self.layout.block;
        let panels = Panels {
            keys: self.panels(self.k),
            values: self.panels(self.v),
        };
        let mut dq = written_zeros(heads_total * n * d);
        let mut dk = written_zeros(heads_total * m * d);
        let mut dv = written_zeros(heads_total * m * d);
        dq.par_chunks_mut(n * d)
            .zip(dk.par_chunks_mut(m * d))
            .zip(dv.par_chunks_mut(m * d))
            .enumerate()
            .for_each(|(bh, ((dq, dk), dv))| {
                let rows_of_head = RowsOfHead {
                    grad_out: rows(grad_out, d, bh * n, n),
                    lse: &lse[bh * n..(bh + 1) * n],
                    delta: &delta[bh * n..(bh + 1) * n],
                };
                let partials: Vec<Vec<f32>> = dk
                    .par_chunks_mut(group_rows * d)
                    .zip(dv.par_chunks_mut(group_rows * d))
                    .enumerate()
                    .map(|(g, (dk, dv))| {
                        let first = g * blocks_per_group;
                        self.backward_key_blocks(bh, first, &rows_of_head, &panels, dk, dv)
                    })
                    .collect();
                for partial in partials {
                    dq.iter_mut().zip(partial).for_each(|(dq, p)| *dq += p);
                }
            });
        (dq, dk, dv)
    }

    widest_simd! {
        /// FA2 backward over the key blocks `first..` whose `dK`, `dV` rows are `dk`, `dv`;
        /// returns this task's contribution to `dQ` of head `bh`.
        fn backward_key_blocks(
            &self,
            bh: usize,
            first: usize,
            head: &RowsOfHead,
            panels: &Panels,
            dk: &mut [f32],
            dv: &mut [f32],
        ) -> Vec<f32> => backward_key_blocks_inline
    }

    #[inline(always)]
    fn backward_key_blocks_inline(
        &self,
        bh: usize,
        first: usize,
        head: &RowsOfHead,
        panels: &Panels,
        dk: &mut [f32],
        dv: &mut [f32],
    ) -> Vec<f32> {
        let (n, m, d, block) = (self.queries, self.keys, self.head_dim, self.layout.block);
        let bias = &self.key_bias[(bh / self.heads) * m..][..m];
        let mut dq = written_zeros(n * d);
        let run_blocks = self.run_blocks();
        let tile = run_blocks * block * block;
        let mut probs = vec![0f32; tile];
        let mut weights = vec![0f32; tile];
        let mut grad_scores = vec![0f32; tile];
        for (offset, (dk, dv)) in dk
            .chunks_mut(block * d)
            .zip(dv.chunks_mut(block * d))
            .enumerate()
        {
            let j = first + offset;
            let (k0, c) = self.span(j, m);
            let k = rows(self.k, d, bh * m + k0, c);
            let key_panel = View::rows(rows(&panels.keys, d, bh * m + k0, c), c);
            let value_panel = View::rows(rows(&panels.values, d, bh * m + k0, c), c);
            for run in runs(self.layout.column(bh % self.heads, j), run_blocks) {
                let (q0, r) = self.run_span(run, n);
                let q = rows(self.q, d, bh * n + q0, r);
                let grad_out = rows(head.grad_out, d, q0, r);
                let (p, w, ds) = (
                    &mut probs[..r * c],
                    &mut weights[..r * c],
                    &mut grad_scores[..r * c],
                );
                let (q, grad_out) = (View::rows(q, d), View::rows(grad_out, d));
                product(p, c, q, key_panel, [r, d, c], false); // S = Q Kᵀ
                product(ds, c, grad_out, value_panel, [r, d, c], false); // dW = dO Vᵀ
                let rows_iter = p.chunks_mut(c).zip(w.chunks_mut(c)).zip(ds.chunks_mut(c));
                for (a, ((p, w), ds)) in rows_iter.enumerate() {
                    let (lse, delta) = (head.lse[q0 + a], head.delta[q0 + a]);
                    if self.dropout == 0.0 {
                        // One pass without the mask iterator, so that it vectorises.
                        for ((p, g), b) in p.iter_mut().zip(ds).zip(&bias[k0..k0 + c]) {
                            *p = fast_exp::exp(*p + b - lse);
                            *g = *p * (*g - delta); // dS = P ⊙ (dP − D)
                        }
                        continue;
                    }
                    for (p, b) in p.iter_mut().zip(&bias[k0..k0 + c]) {
                        *p = fast_exp::exp(*p + b - lse);
                    }
                    // W = P ⊙ mask / keep and dP = dW ⊙ mask / keep share the factors.
                    let scales = self.dropout_scales(bh * n + q0 + a, k0);
                    for (((p, w), g), scale) in p.iter().zip(w.iter_mut()).zip(ds).zip(scales) {
                        *w = p * scale;
                        *g = p * (*g * scale - delta);
                    }
                }
                let w: &[f32] = if self.dropout > 0.0 { w } else { p };
                product(dv, d, View::transposed(w, c), grad_out, [c, r, d], true); // dV += Wᵀ dO
                product(dk, d, View::transposed(ds, c), q, [c, r, d], true); // dK += dSᵀ Q
                let dq = &mut dq[q0 * d..(q0 + r) * d];
                product(dq, d, View::rows(ds, c), View::rows(k, d), [r, c, d], true); // dQ += dS K
            }
        }
        dq
    }
}

/// Per-row backward inputs of one (batch·head).
struct RowsOfHead<'a> {
    grad_out: &'a [f32],
    lse: &'a [f32],
    delta: &'a [f32],
}

/// Keys and values of every head transposed block by block (see [`Problem::panels`]).
struct Panels {
    keys: Vec<f32>,
    values: Vec<f32>,
}
