//! Which instruction the GPU int8 kernels' `dot4I8Packed` becomes on the wgpu device.
//!
//! quantlab's GPU int8 GEMM is WGSL. naga (wgpu's shader compiler) lowers `dot4I8Packed` to
//! SPIR-V's `OpSDot` when the `DotProductInput4x8BitPacked` capability is available, and
//! wgpu-hal makes it available exactly when the Vulkan device reports `shaderIntegerDotProduct`
//! (core in Vulkan 1.3, else `VK_KHR_shader_integer_dot_product`). Otherwise, and on every
//! other backend, naga writes four extracts and multiply-adds. Whether `OpSDot` is then one
//! hardware instruction is the driver's `integerDotProduct4x8BitPackedSignedAccelerated`.
//! wgpu 30 reports none of this, so it is read from Vulkan directly, through the adapter's
//! raw handles.

use ash::{khr, vk};
use burn::tensor::wgpu::wgpu;
use serde::{Deserialize, Serialize};

/// The path the int8 dot product takes on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Int8Dot {
    /// `OpSDot`, which the driver runs as a hardware instruction.
    Accelerated,
    /// `OpSDot`, which the driver says it does not accelerate (it emulates it).
    NotAccelerated,
    /// naga's shift-and-mask polyfill: the device has no integer dot product.
    Polyfill,
    /// The Vulkan handles could not be read (not a wgpu-core adapter), or a record from
    /// before this was read.
    #[default]
    Unknown,
}

impl Int8Dot {
    /// One phrase for logs and reports.
    pub fn describe(self) -> &'static str {
        match self {
            Int8Dot::Accelerated => {
                "native integer dot product (SPIR-V OpSDot, hardware-accelerated)"
            }
            Int8Dot::NotAccelerated => {
                "native integer dot product instruction (SPIR-V OpSDot), not accelerated by the driver"
            }
            Int8Dot::Polyfill => "fallback: shift-and-mask arithmetic (no shaderIntegerDotProduct)",
            Int8Dot::Unknown => "unknown (the device's Vulkan features could not be read)",
        }
    }
}

/// Reads the path off the adapter's Vulkan physical device.
pub(crate) fn int8_dot(adapter: &wgpu::Adapter) -> Int8Dot {
    if adapter.get_info().backend != wgpu::Backend::Vulkan {
        return Int8Dot::Polyfill;
    }
    // SAFETY: the raw handles are only queried (no object is created, destroyed or mutated)
    // while `adapter`, which owns them, is borrowed.
    let Some(hal) = (unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }) else {
        return Int8Dot::Unknown;
    };
    let instance = hal.shared_instance().raw_instance();
    let device = hal.raw_physical_device();
    // SAFETY: `device` is a valid physical device of `instance` (both from wgpu-hal).
    let api = unsafe { instance.get_physical_device_properties(device) }.api_version;
    // The *2 queries are core from Vulkan 1.1, which wgpu's Vulkan backend needs anyway.
    if api < vk::API_VERSION_1_1 {
        return Int8Dot::Polyfill;
    }
    let extension = || {
        // SAFETY: as above.
        unsafe { instance.enumerate_device_extension_properties(device) }
            .map(|list| {
                list.iter().any(|e| {
                    e.extension_name_as_c_str() == Ok(khr::shader_integer_dot_product::NAME)
                })
            })
            .unwrap_or(false)
    };
    if api < vk::API_VERSION_1_3 && !extension() {
        return Int8Dot::Polyfill;
    }
    let mut features = vk::PhysicalDeviceShaderIntegerDotProductFeatures::default();
    {
        let mut query = vk::PhysicalDeviceFeatures2::default().push_next(&mut features);
        // SAFETY: as above; the chained struct outlives the call.
        unsafe { instance.get_physical_device_features2(device, &mut query) };
    }
    if features.shader_integer_dot_product == vk::FALSE {
        return Int8Dot::Polyfill;
    }
    let mut properties = vk::PhysicalDeviceShaderIntegerDotProductProperties::default();
    {
        let mut query = vk::PhysicalDeviceProperties2::default().push_next(&mut properties);
        // SAFETY: as above.
        unsafe { instance.get_physical_device_properties2(device, &mut query) };
    }
    if properties.integer_dot_product4x8_bit_packed_signed_accelerated == vk::TRUE {
        Int8Dot::Accelerated
    } else {
        Int8Dot::NotAccelerated
    }
}
