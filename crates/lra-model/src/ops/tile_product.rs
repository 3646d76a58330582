//! Small dense products `dst (+)= lhs · rhs` for the fused attention kernels, on borrowed slices
//! with arbitrary strides (a transposed operand is just a view with swapped strides).
//!
//! On CPUs with AVX-512 or AVX2 + FMA a register-blocked kernel reads both operands in place: the
//! attention kernels arrange every right-hand side to have contiguous rows (key/value/`dO` rows,
//! or keys and values transposed once per head), so nothing is packed per call. The `gemm` crate,
//! which Burn's CPU backend uses and which does the product elsewhere, packs both operands on
//! every call: through it FlashAttention fwd+bwd ran 10–25 % slower with AVX-512 and 3–8 % slower
//! with AVX2 (n = 2K–4K) on this project's machines. Other CPUs, and transposed right-hand
//! sides, use the crate.

/// A read-only matrix view: element `(i, p)` is `data[i * row + p * col]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub row: usize,
    pub col: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix whose rows are `row` elements apart.
    pub fn rows(data: &'a [f32], row: usize) -> Self {
        Self { data, row, col: 1 }
    }

    /// The transpose of a row-major matrix whose rows are `row` elements apart.
    pub fn transposed(data: &'a [f32], row: usize) -> Self {
        Self {
            data,
            row: 1,
            col: row,
        }
    }

    /// Whether every element of a `[rows, cols]` matrix lies inside `data`.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.row + (cols - 1) * self.col < self.data.len()
    }
}

/// Which code multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// The register-blocked kernel in AVX-512F (needs a right-hand side with contiguous rows).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// The same kernel in AVX2 + FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The `gemm` crate (any CPU, any strides).
    Gemm,
}

impl Kernel {
    fn for_operands(rhs: &View) -> Self {
        #[cfg(target_arch = "x86_64")]
        if rhs.col == 1 {
            if is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Self::Avx2;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = rhs; // only the x86-64 kernel depends on the operands' layout
        Self::Gemm
    }
}

/// `dst (+)= lhs · rhs` for `[rows, depth] · [depth, cols]`, where `dst` is row-major with rows
/// `dst_row` elements apart. Accumulates into `dst` when `accumulate`, overwrites it otherwise.
///
/// # Panics
/// If a view does not hold every element its shape addresses, or `dst_row < cols`.
pub fn product(
    dst: &mut [f32],
    dst_row: usize,
    lhs: View,
    rhs: View,
    shape: [usize; 3],
    accumulate: bool,
) {
    product_with(
        Kernel::for_operands(&rhs),
        dst,
        dst_row,
        lhs,
        rhs,
        shape,
        accumulate,
    );
}

fn product_with(
    kernel: Kernel,
    dst: &mut [f32],
    dst_row: usize,
    lhs: View,
    rhs: View,
    [rows, depth, cols]: [usize; 3],
    accumulate: bool,
) {
    let dst_fits =
        rows == 0 || cols == 0 || (dst_row >= cols && (rows - 1) * dst_row + cols <= dst.len());
    assert!(
        dst_fits && lhs.covers(rows, depth) && rhs.covers(depth, cols),
        "tile product [{rows}, {depth}] · [{depth}, {cols}] does not fit its slices \
         (dst {} elements, row {dst_row}; lhs {lhs:?}; rhs {rhs:?})",
        dst.len()
    );
    if rows == 0 || cols == 0 {
        return;
    }
    if depth == 0 {
        if !accumulate {
            dst.chunks_mut(dst_row)
                .take(rows)
                .for_each(|row| row[..cols].fill(0.0));
        }
        return;
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 | Kernel::Avx2 => {
            assert_eq!(
                rhs.col, 1,
                "the register-blocked kernel reads rhs rows as vectors"
            );
            let run = if kernel == Kernel::Avx512 {
                register_blocked::product_avx512
            } else {
                register_blocked::product_avx2
            };
            // SAFETY: the CPU has the kernel's extension (Kernel::for_operands, or a test that
            // checked it), every element addressed lies inside its slice (asserted above),
            // `rhs.col == 1`, and `dst` is borrowed mutably, so it aliases neither input.
            unsafe {
                run(
                    dst.as_mut_ptr(),
                    dst_row,
                    lhs,
                    rhs,
                    [rows, depth, cols],
                    accumulate,
                )
            }
        }
        // SAFETY: `dst` and the views as above (the gemm crate takes any strides).
        Kernel::Gemm => unsafe {
            gemm::gemm(
                rows,
                cols,
                depth,
                dst.as_mut_ptr(),
                1,
                dst_row as isize,
                accumulate,
                lhs.data.as_ptr(),
                lhs.col as isize,
                lhs.row as isize,
                rhs.data.as_ptr(),
                rhs.col as isize,
                rhs.row as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        },
    }
}

#[cfg(target_arch = "x86_64")]
mod register_blocked {
    //! One register-blocked kernel for two vector widths: `MR` rows × `NV` vectors of
    //! accumulators stay in registers for the whole depth, each step broadcasting one `lhs`
    //! element per row against `NV` `rhs` vectors.
    use std::arch::x86_64::*;

    use super::View;

    /// The vector instructions the kernel uses, for one x86-64 extension. The methods are
    /// `#[inline(always)]` so that they compile inside the `#[target_feature]` entry points.
    pub trait Lanes: Sized {
        type Vector: Copy;
        /// Which lanes of the last vector of a pass are inside it.
        type Mask: Copy;
        const LANES: usize;
        /// Columns per pass.
        const PASS: usize;
        fn mask(lanes: usize) -> Self::Mask;
        unsafe fn zero() -> Self::Vector;
        unsafe fn load(ptr: *const f32) -> Self::Vector;
        unsafe fn load_masked(ptr: *const f32, mask: Self::Mask) -> Self::Vector;
        unsafe fn store(ptr: *mut f32, value: Self::Vector);
        unsafe fn store_masked(ptr: *mut f32, mask: Self::Mask, value: Self::Vector);
        unsafe fn splat(ptr: *const f32) -> Self::Vector;
        /// `a · b + c`.
        unsafe fn fma(a: Self::Vector, b: Self::Vector, c: Self::Vector) -> Self::Vector;
        /// Runs the pass over all rows with this extension's block shape for `vectors`.
        unsafe fn rows(pass: &Pass<Self>, vectors: usize, masked: bool, rows: usize);
    }

    /// AVX-512F: 32 registers of 16 lanes, four vectors a pass (`rows × 4` accumulators, four
    /// `rhs` vectors and one broadcast fit).
    pub struct Avx512;

    /// AVX2 + FMA: 16 registers of 8 lanes, two vectors a pass (6 × 2 accumulators, two `rhs`
    /// vectors and one broadcast: three vectors a pass measured slower, its 16 live registers
    /// left LLVM none to spare and it shuffled them every step).
    pub struct Avx2;

    impl Lanes for Avx512 {
        type Vector = __m512;
        type Mask = __mmask16;
        const LANES: usize = 16;
        const PASS: usize = 64;
        #[inline(always)]
        fn mask(lanes: usize) -> __mmask16 {
            (u32::from(u16::MAX) >> (16 - lanes)) as u16
        }
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(ptr: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(ptr) }
        }
        #[inline(always)]
        unsafe fn load_masked(ptr: *const f32, mask: __mmask16) -> __m512 {
            unsafe { _mm512_maskz_loadu_ps(mask, ptr) }
        }
        #[inline(always)]
        unsafe fn store(ptr: *mut f32, value: __m512) {
            unsafe { _mm512_storeu_ps(ptr, value) }
        }
        #[inline(always)]
        unsafe fn store_masked(ptr: *mut f32, mask: __mmask16, value: __m512) {
            unsafe { _mm512_mask_storeu_ps(ptr, mask, value) }
        }
        #[inline(always)]
        unsafe fn splat(ptr: *const f32) -> __m512 {
            unsafe { _mm512_set1_ps(*ptr) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn rows(pass: &Pass<Self>, vectors: usize, masked: bool, rows: usize) {
            // SAFETY: forwarded from `product`.
            unsafe {
                match (vectors, masked) {
                    (1, false) => pass.rows::<1, 8, false>(rows),
                    (1, true) => pass.rows::<1, 8, true>(rows),
                    (2, false) => pass.rows::<2, 12, false>(rows),
                    (2, true) => pass.rows::<2, 12, true>(rows),
                    (3, false) => pass.rows::<3, 8, false>(rows),
                    (3, true) => pass.rows::<3, 8, true>(rows),
                    (_, false) => pass.rows::<4, 6, false>(rows),
                    (_, true) => pass.rows::<4, 6, true>(rows),
                }
            }
        }
    }

    impl Lanes for Avx2 {
        type Vector = __m256;
        type Mask = __m256i;
        const LANES: usize = 8;
        const PASS: usize = 16;
        #[inline(always)]
        fn mask(lanes: usize) -> __m256i {
            let lane = |i: usize| -i32::from(i < lanes);
            // SAFETY: SSE2/AVX `set` of integers, no memory access; the target has AVX (the
            // kernel is only chosen with AVX2).
            unsafe {
                _mm256_setr_epi32(
                    lane(0),
                    lane(1),
                    lane(2),
                    lane(3),
                    lane(4),
                    lane(5),
                    lane(6),
                    lane(7),
                )
            }
        }
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(ptr: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(ptr) }
        }
        #[inline(always)]
        unsafe fn load_masked(ptr: *const f32, mask: __m256i) -> __m256 {
            unsafe { _mm256_maskload_ps(ptr, mask) }
        }
        #[inline(always)]
        unsafe fn store(ptr: *mut f32, value: __m256) {
            unsafe { _mm256_storeu_ps(ptr, value) }
        }
        #[inline(always)]
        unsafe fn store_masked(ptr: *mut f32, mask: __m256i, value: __m256) {
            unsafe { _mm256_maskstore_ps(ptr, mask, value) }
        }
        #[inline(always)]
        unsafe fn splat(ptr: *const f32) -> __m256 {
            unsafe { _mm256_broadcast_ss(&*ptr) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn rows(pass: &Pass<Self>, vectors: usize, masked: bool, rows: usize) {
            // SAFETY: forwarded from `product`.
            unsafe {
                match (vectors, masked) {
                    (1, false) => pass.rows::<1, 8, false>(rows),
                    (1, true) => pass.rows::<1, 8, true>(rows),
                    (_, false) => pass.rows::<2, 6, false>(rows),
                    (_, true) => pass.rows::<2, 6, true>(rows),
                }
            }
        }
    }

    /// # Safety
    /// AVX-512F must be available, and as [`product`].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn product_avx512(
        dst: *mut f32,
        dst_row: usize,
        lhs: View,
        rhs: View,
        shape: [usize; 3],
        accumulate: bool,
    ) {
        // SAFETY: forwarded.
        unsafe { product::<Avx512>(dst, dst_row, lhs, rhs, shape, accumulate) }
    }

    /// # Safety
    /// AVX2 and FMA must be available, and as [`product`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn product_avx2(
        dst: *mut f32,
        dst_row: usize,
        lhs: View,
        rhs: View,
        shape: [usize; 3],
        accumulate: bool,
    ) {
        // SAFETY: forwarded.
        unsafe { product::<Avx2>(dst, dst_row, lhs, rhs, shape, accumulate) }
    }

    /// # Safety
    /// `rhs.col == 1`, every element addressed must lie inside the views and `dst`, and `dst`
    /// must not overlap them.
    #[inline(always)]
    unsafe fn product<L: Lanes>(
        dst: *mut f32,
        dst_row: usize,
        lhs: View,
        rhs: View,
        [rows, depth, cols]: [usize; 3],
        accumulate: bool,
    ) {
        for c0 in (0..cols).step_by(L::PASS) {
            let width = (cols - c0).min(L::PASS);
            let vectors = width.div_ceil(L::LANES);
            let last_lanes = width - L::LANES * (vectors - 1);
            let pass = Pass::<L> {
                depth,
                lhs: lhs.data.as_ptr(),
                lhs_row: lhs.row,
                lhs_col: lhs.col,
                // SAFETY: c0 < cols, inside rhs row 0 and dst row 0.
                rhs: unsafe { rhs.data.as_ptr().add(c0) },
                rhs_row: rhs.row,
                dst: unsafe { dst.add(c0) },
                dst_row,
                last_lanes: L::mask(last_lanes),
                accumulate,
            };
            // SAFETY: forwarded from the caller; the masked last vector covers `width`.
            unsafe { L::rows(&pass, vectors, last_lanes < L::LANES, rows) };
        }
    }

    /// One pass over at most `L::PASS` columns of `dst` (pointers already moved to its first one).
    pub struct Pass<L: Lanes> {
        depth: usize,
        lhs: *const f32,
        lhs_row: usize,
        lhs_col: usize,
        rhs: *const f32,
        rhs_row: usize,
        dst: *mut f32,
        dst_row: usize,
        last_lanes: L::Mask,
        accumulate: bool,
    }

    impl<L: Lanes> Pass<L> {
        /// All `rows`, `MR` at a time, then the rest with a smaller kernel.
        #[inline(always)]
        unsafe fn rows<const NV: usize, const MR: usize, const MASKED: bool>(&self, rows: usize) {
            let full = rows - rows % MR;
            for r0 in (0..full).step_by(MR) {
                // SAFETY: rows r0..r0 + MR exist.
                unsafe { self.block::<NV, MR, MASKED>(r0) };
            }
            // SAFETY: the remaining rows exist; MR ≤ 12 so the rest is below 12.
            unsafe {
                match rows - full {
                    0 => {}
                    1 => self.block::<NV, 1, MASKED>(full),
                    2 => self.block::<NV, 2, MASKED>(full),
                    3 => self.block::<NV, 3, MASKED>(full),
                    4 => self.block::<NV, 4, MASKED>(full),
                    5 => self.block::<NV, 5, MASKED>(full),
                    6 => self.block::<NV, 6, MASKED>(full),
                    7 => self.block::<NV, 7, MASKED>(full),
                    8 => self.block::<NV, 8, MASKED>(full),
                    9 => self.block::<NV, 9, MASKED>(full),
                    10 => self.block::<NV, 10, MASKED>(full),
                    _ => self.block::<NV, 11, MASKED>(full),
                }
            }
        }

        /// Loads vector `v` of `NV` at `ptr`, only the pass's lanes for a masked last one.
        #[inline(always)]
        unsafe fn load<const NV: usize, const MASKED: bool>(
            &self,
            ptr: *const f32,
            v: usize,
        ) -> L::Vector {
            // SAFETY: the caller's pointer is valid for the lanes loaded.
            unsafe {
                if MASKED && v + 1 == NV {
                    L::load_masked(ptr, self.last_lanes)
                } else {
                    L::load(ptr)
                }
            }
        }

        /// `dst[r0..r0 + MR, ..NV·LANES] (+)= lhs[r0..r0 + MR, :] · rhs`, with the `MR × NV`
        /// accumulators in registers for the whole depth.
        #[inline(always)]
        unsafe fn block<const NV: usize, const MR: usize, const MASKED: bool>(&self, r0: usize) {
            // SAFETY (whole body): rows r0..r0 + MR of lhs and dst exist, depth rows of rhs
            // exist, and the masked last vector stays inside the pass's columns.
            unsafe {
                let mut acc = [[L::zero(); NV]; MR];
                let dst = self.dst.add(r0 * self.dst_row);
                if self.accumulate {
                    for (i, acc) in acc.iter_mut().enumerate() {
                        for (v, acc) in acc.iter_mut().enumerate() {
                            let ptr = dst.add(i * self.dst_row + L::LANES * v);
                            *acc = self.load::<NV, MASKED>(ptr, v);
                        }
                    }
                }
                let mut lhs = self.lhs.add(r0 * self.lhs_row);
                let mut rhs = self.rhs;
                for _ in 0..self.depth {
                    let mut b = [L::zero(); NV];
                    for (v, b) in b.iter_mut().enumerate() {
                        *b = self.load::<NV, MASKED>(rhs.add(L::LANES * v), v);
                    }
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let a = L::splat(lhs.add(i * self.lhs_row));
                        for (acc, &b) in acc.iter_mut().zip(&b) {
                            *acc = L::fma(a, b, *acc);
                        }
                    }
                    lhs = lhs.add(self.lhs_col);
                    rhs = rhs.add(self.rhs_row);
                }
                for (i, acc) in acc.iter().enumerate() {
                    for (v, &acc) in acc.iter().enumerate() {
                        let ptr = dst.add(i * self.dst_row + L::LANES * v);
                        if MASKED && v + 1 == NV {
                            L::store_masked(ptr, self.last_lanes, acc);
                        } else {
                            L::store(ptr, acc);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[len]` deterministic values in [−1, 1).
    fn values(len: usize, salt: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                let h = (i ^ salt.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x85eb_ca6b);
                ((h >> 8) as f32 / (1 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn at(view: &View, i: usize, p: usize) -> f32 {
        view.data[i * view.row + p * view.col]
    }

    /// The product written out in f64.
    fn reference(
        dst: &[f32],
        dst_row: usize,
        lhs: &View,
        rhs: &View,
        [rows, depth, cols]: [usize; 3],
        accumulate: bool,
    ) -> Vec<f32> {
        let mut expected = dst.to_vec();
        for i in 0..rows {
            for j in 0..cols {
                let sum: f64 = (0..depth)
                    .map(|p| f64::from(at(lhs, i, p)) * f64::from(at(rhs, p, j)))
                    .sum();
                let base = if accumulate {
                    f64::from(dst[i * dst_row + j])
                } else {
                    0.0
                };
                expected[i * dst_row + j] = (base + sum) as f32;
            }
        }
        expected
    }

    fn kernels() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Gemm];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            kernels.push(Kernel::Avx512);
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            kernels.push(Kernel::Avx2);
        }
        kernels
    }

    /// Every kernel, every remainder of rows and columns, both lhs layouts, accumulate or not:
    /// equal to the f64 product to 1e-5, and the padding between `dst` rows untouched.
    #[test]
    fn products_equal_the_written_out_product() {
        for kernel in kernels() {
            for &(rows, depth, cols) in &[
                (1, 1, 1),
                (6, 64, 64),
                (64, 64, 64),
                (13, 7, 16),
                (25, 33, 17),
                (12, 5, 32),
                (7, 3, 48),
                (31, 64, 130),
                (64, 256, 64),
            ] {
                for lhs_transposed in [false, true] {
                    for accumulate in [false, true] {
                        let dst_row = cols + 3;
                        let dst = values(rows * dst_row, 1);
                        let lhs_data = values(rows * depth, 2);
                        let rhs_data = values(depth * (cols + 5), 3);
                        let lhs = if lhs_transposed {
                            View::transposed(&lhs_data, rows)
                        } else {
                            View::rows(&lhs_data, depth)
                        };
                        let rhs = View::rows(&rhs_data, cols + 5);
                        let shape = [rows, depth, cols];
                        let expected = reference(&dst, dst_row, &lhs, &rhs, shape, accumulate);
                        let mut got = dst.clone();
                        product_with(kernel, &mut got, dst_row, lhs, rhs, shape, accumulate);
                        for (index, (g, e)) in got.iter().zip(&expected).enumerate() {
                            assert!(
                                (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                                "{kernel:?} {shape:?} transposed {lhs_transposed} accumulate \
                                 {accumulate}: element {index} is {g}, expected {e}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_transposed_rhs_goes_to_the_gemm_crate_and_is_right() {
        let (rows, depth, cols) = (9, 20, 11);
        let lhs_data = values(rows * depth, 4);
        let rhs_data = values(cols * depth, 5);
        let (lhs, rhs) = (
            View::rows(&lhs_data, depth),
            View::transposed(&rhs_data, depth),
        );
        assert_eq!(Kernel::for_operands(&rhs), Kernel::Gemm);
        let mut got = vec![0.0; rows * cols];
        product(&mut got, cols, lhs, rhs, [rows, depth, cols], false);
        let expected = reference(&got, cols, &lhs, &rhs, [rows, depth, cols], false);
        assert!(got.iter().zip(&expected).all(|(g, e)| (g - e).abs() < 1e-5));
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_view_too_short_for_its_shape_is_rejected() {
        let data = vec![0.0; 9]; // a [2, 5] lhs needs 10
        let mut dst = vec![0.0; 4];
        product(
            &mut dst,
            2,
            View::rows(&data, 5),
            View::rows(&data, 2),
            [2, 5, 2],
            false,
        );
    }
}
