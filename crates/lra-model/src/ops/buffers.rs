//! Access to the f32 buffers of the CPU backend's tensors, for the kernels in this module.

use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;

/// The elements of a contiguous f32 tensor, in order.
///
/// # Panics
/// If the tensor is not contiguous f32 (the kernels' callers make it so).
pub(crate) fn f32_slice(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("the fused CPU kernels work on contiguous f32 tensors")
}

/// A contiguous copy that the caller owns alone, so it can be overwritten in place (the tensor
/// itself when it already is one: no copy).
pub(crate) fn owned_contiguous(tensor: FlexTensor) -> FlexTensor {
    let tensor = tensor.to_contiguous();
    let whole_buffer =
        tensor.as_slice::<f32>().map(<[f32]>::len) == Some(tensor.storage::<f32>().len());
    if tensor.is_unique() && whole_buffer {
        tensor
    } else {
        let shape = tensor.layout().shape().clone();
        FlexTensor::from_data(TensorData::new(
            f32_slice(&tensor.to_contiguous()).to_vec(),
            shape,
        ))
    }
}

/// `len` zeros, written rather than requested zeroed from the allocator: a zeroed allocation is
/// mapped to the shared zero page, and the first write to each of its pages then costs a
/// copy-on-write fault and a TLB shootdown on every thread (a tenth of the run time here).
pub(crate) fn written_zeros(len: usize) -> Vec<f32> {
    let mut zeros = Vec::with_capacity(len);
    zeros.resize(len, 0.0);
    zeros
}
