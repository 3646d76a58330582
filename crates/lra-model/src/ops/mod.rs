//! Custom tensor operations with handwritten backward passes (Burn backend extensions), and the
//! CPU kernels' shared pieces.

pub mod adamw;
mod buffers;
pub mod dropout;
pub mod fast_exp;
pub mod fft_conv;
pub mod flash_attention;
pub mod gelu;
pub mod layer_norm;
mod simd;
pub mod softmax_attention;
pub mod tile_product;

pub use simd::vector_extension;

/// What the CPU kernels run with here: the vector extension and the worker threads
/// (`AVX2+FMA, 2 threads`).
pub fn cpu_description() -> String {
    format!(
        "{}, {} threads",
        vector_extension(),
        rayon::current_num_threads()
    )
}
