//! Custom tensor operations with handwritten backward passes (Burn backend extensions).

pub mod fast_exp;
pub mod fft_conv;
pub mod flash_attention;
pub mod softmax_attention;
pub mod tile_product;
