//! Runtime choice of the widest vector instructions for elementwise kernels. The crate targets
//! baseline x86-64 (4-lane SSE2, no FMA); a kernel written as an `#[inline(always)]` loop over
//! slices compiles to 16 lanes inside an AVX-512F function and to 8 inside an AVX2 one. Rust never
//! fuses `a * b + c` on its own, so all three versions round alike and give identical results.

/// Defines `$vis fn $name($args)` that runs `$kernel($args)` (an `#[inline(always)]` function)
/// compiled for AVX-512F, or else AVX2 + FMA, when the CPU has them, else for baseline x86-64.
macro_rules! widest_simd {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $kernel:path) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $kernel($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    };
}

pub(crate) use widest_simd;

/// The vector extension the CPU kernels run with on this machine: `"AVX-512F"`, `"AVX2+FMA"` or
/// `"baseline x86-64"` (SSE2), or `"no x86 SIMD"` elsewhere; benchmarks report it, since the
/// kernels' speed depends on it.
pub fn vector_extension() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return "AVX-512F";
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return "AVX2+FMA";
        }
        "baseline x86-64"
    }
    #[cfg(not(target_arch = "x86_64"))]
    "no x86 SIMD"
}
