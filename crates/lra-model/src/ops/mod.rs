//! Custom tensor operations with handwritten backward passes (Burn backend extensions).

pub mod softmax_attention;
