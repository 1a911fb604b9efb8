//! burn's GPU device (brought up by `quantlab_train::gpu`) and quantlab's GPU int8 kernels
//! (`quantlab_gpu`) must run on the same wgpu graphics API, or they would bring up two
//! runtimes, one of them on wgpu's automatic choice (the OpenGL fallback that hangs on a
//! machine without Vulkan). The two crates do not depend on each other, so this checks it.

#[test]
fn burn_and_the_int8_kernels_share_one_graphics_api() {
    assert_eq!(quantlab_train::WGPU_API, quantlab_gpu::WGPU_API);
}
