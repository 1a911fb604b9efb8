//! The one CPU-feature probe: every path's availability, the bench's machine description and
//! the SIMD quantizer read it, so a feature is never checked two ways.

use std::sync::OnceLock;

/// The instruction-set extensions the kernels use, as this CPU reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    /// AVX2 (256-bit integer).
    pub avx2: bool,
    /// FMA3.
    pub fma: bool,
    /// AVX-512 Foundation.
    pub avx512f: bool,
    /// AVX-512 byte and word.
    pub avx512bw: bool,
    /// AVX-512 doubleword and quadword.
    pub avx512dq: bool,
    /// AVX-512 vector length (128/256-bit forms).
    pub avx512vl: bool,
    /// AVX-512 VNNI (`vpdpbusd`).
    pub avx512vnni: bool,
    /// AVX-VNNI (the 256-bit `vpdpbusd`; no kernel here uses it yet, other runtimes do).
    pub avx_vnni: bool,
    /// AVX-512 VBMI (`vpermb`: the few-output convolution gathers its pixels with it).
    pub avx512vbmi: bool,
}

impl CpuFeatures {
    /// This CPU's features, probed once per process.
    pub fn get() -> Self {
        static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
        *FEATURES.get_or_init(Self::probe)
    }

    #[cfg(target_arch = "x86_64")]
    fn probe() -> Self {
        Self {
            avx2: is_x86_feature_detected!("avx2"),
            fma: is_x86_feature_detected!("fma"),
            avx512f: is_x86_feature_detected!("avx512f"),
            avx512bw: is_x86_feature_detected!("avx512bw"),
            avx512dq: is_x86_feature_detected!("avx512dq"),
            avx512vl: is_x86_feature_detected!("avx512vl"),
            avx512vnni: is_x86_feature_detected!("avx512vnni"),
            avx_vnni: is_x86_feature_detected!("avxvnni"),
            avx512vbmi: is_x86_feature_detected!("avx512vbmi"),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn probe() -> Self {
        Self::default()
    }

    /// `(name, present)` for every feature, in a fixed order (reports, bench metadata).
    pub fn list(&self) -> [(&'static str, bool); 9] {
        [
            ("avx2", self.avx2),
            ("fma", self.fma),
            ("avx512f", self.avx512f),
            ("avx512bw", self.avx512bw),
            ("avx512dq", self.avx512dq),
            ("avx512vl", self.avx512vl),
            ("avx512vnni", self.avx512vnni),
            ("avx-vnni", self.avx_vnni),
            ("avx512vbmi", self.avx512vbmi),
        ]
    }

    /// What the VNNI GEMM needs.
    pub fn vnni(&self) -> bool {
        self.avx512f && self.avx512bw && self.avx512dq && self.avx512vl && self.avx512vnni
    }

    /// Whether the CPU has an 8-bit dot product with 32-bit accumulation (AVX-512 VNNI or
    /// AVX-VNNI): without one, int8 GEMMs either widen to 16 bits (quantlab's AVX2 path,
    /// exact) or saturate at 16 bits (`vpmaddubsw`, as ONNX Runtime's u8 x s8 GEMM does).
    pub fn int8_dot(&self) -> bool {
        self.avx512vnni || self.avx_vnni
    }

    /// What the AVX-512 f32 kernels and the SIMD quantizer need.
    pub fn avx512_f32(&self) -> bool {
        self.avx512f && self.avx512bw
    }

    /// What the AVX2 f32 kernels need.
    pub fn avx2_fma(&self) -> bool {
        self.avx2 && self.fma
    }
}
