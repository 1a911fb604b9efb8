//! burn's own weight quantization, kept as a comparison row: `quantize_weights` with MinMax
//! calibration and burn's default 8-bit symmetric per-tensor scheme, applied to weights only
//! (burn would also quantize biases otherwise). burn stores int8 but dequantizes before every
//! op, so this saves memory on disk, not arithmetic.

use burn::module::{Module, ParamGroup, Quantizer};
use burn::tensor::Device;
use burn::tensor::quantization::{Calibration, QuantValue};
use quantlab_models::Classifier;

/// `model` with its weights quantized by burn (MinMax, Q8S, per tensor).
pub fn quantize_weights(model: Classifier, device: &Device) -> Classifier {
    let scheme = device
        .settings()
        .quantization
        .scheme
        .with_value(QuantValue::Q8S);
    let mut q = Quantizer::new(Calibration::MinMax, scheme);
    q.set_param_group(ParamGroup::from_predicate("weight"));
    model.quantize_weights(&mut q)
}
