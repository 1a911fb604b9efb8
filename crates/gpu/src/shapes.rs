//! The kernels' shape parameters as named structs. Each is `#[repr(C)]` i32 fields, and the
//! WGSL kernel it feeds declares a `struct` of the same fields in the same order (all i32,
//! so the storage-buffer layout is the same); the test at the end reads the WGSL
//! declarations and holds them to the Rust field lists.

/// A struct of i32 shape parameters, its field names and its words for upload.
macro_rules! shape_struct {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub(crate) struct $name {
            $($(#[$fdoc])* pub(crate) $field: i32,)*
        }

        impl $name {
            /// Field names in declaration order (the WGSL struct's order).
            #[cfg(test)]
            pub(crate) const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// The fields as the little-endian bytes of the storage buffer.
            pub(crate) fn bytes(&self) -> Vec<u8> {
                [$(self.$field),*].iter().flat_map(|v| v.to_le_bytes()).collect()
            }
        }
    };
}

shape_struct!(
    /// `qgemm.wgsl`: one layer's GEMM with requantization.
    QgemmShape {
        /// Rows of the activation matrix.
        m,
        /// Outputs.
        n,
        /// Words (4 values) per row.
        k4,
        /// Output zero point.
        zo,
        /// Lower clamp.
        lo,
        /// Upper clamp.
        hi,
    }
);

shape_struct!(
    /// `dense.wgsl`: a convolution over a packed channels-last map, or a linear layer as
    /// the 1x1 convolution of a 1x1 map with `k` channels ([`DenseShape::linear`]).
    DenseShape {
        /// Outputs per pixel as stored (a linear layer's padded to a multiple of 4).
        n,
        /// Weight words per output.
        k4,
        /// Input channels.
        c,
        /// Input height.
        h,
        /// Input width.
        w,
        /// Kernel height.
        kh,
        /// Kernel width.
        kw,
        /// Vertical stride.
        sy,
        /// Horizontal stride.
        sx,
        /// Vertical padding.
        py,
        /// Horizontal padding.
        px,
        /// Output height.
        oh,
        /// Output width.
        ow,
        /// A kernel row's values rounded up to whole words (`kw * c`, to a multiple of 4).
        seg4,
        /// Input zero point (what out-of-image taps read).
        zp,
        /// Output zero point.
        zo,
        /// Lower clamp.
        lo,
        /// Upper clamp.
        hi,
        /// Bytes per sample of the input buffer (padding included).
        in_stride,
        /// Samples (set per call).
        batch,
    }
);

shape_struct!(
    /// `pool.wgsl`: max pooling of a packed channels-last u8 map.
    PoolShape {
        /// Channels.
        c,
        /// Input height.
        h,
        /// Input width.
        w,
        /// Window height.
        kh,
        /// Window width.
        kw,
        /// Vertical stride.
        sy,
        /// Horizontal stride.
        sx,
        /// Output height.
        oh,
        /// Output width.
        ow,
        /// Samples (set per call).
        batch,
    }
);

impl DenseShape {
    /// A linear layer of `k` inputs: one pixel, `k` channels, a 1x1 kernel, stride 1, no
    /// padding, so the convolution kernel's indexing reads the input vector as is.
    pub(crate) fn linear(n: usize, k4: usize, k: usize) -> Self {
        Self {
            n: n as i32,
            k4: k4 as i32,
            c: k as i32,
            h: 1,
            w: 1,
            kh: 1,
            kw: 1,
            sy: 1,
            sx: 1,
            py: 0,
            px: 0,
            oh: 1,
            ow: 1,
            seg4: (k.div_ceil(4) * 4) as i32,
            ..Self::default()
        }
    }

    /// A convolution of geometry `g` with `n` outputs and `k4` weight words per output.
    pub(crate) fn conv(n: usize, k4: usize, g: &quantlab_linalg::ConvGeom) -> Self {
        let [h, w, kh, kw, sy, sx, oh, ow] = window(g.in_hw, g.kernel, g.stride, g.out_hw);
        Self {
            n: n as i32,
            k4: k4 as i32,
            c: g.in_channels as i32,
            h,
            w,
            kh,
            kw,
            sy,
            sx,
            py: g.padding[0] as i32,
            px: g.padding[1] as i32,
            oh,
            ow,
            seg4: ((g.kernel[1] * g.in_channels).div_ceil(4) * 4) as i32,
            ..Self::default()
        }
    }
}

impl PoolShape {
    /// The pooling of geometry `g`.
    pub(crate) fn of(g: &quantlab_linalg::PoolGeom) -> Self {
        let [h, w, kh, kw, sy, sx, oh, ow] = window(g.in_hw, g.kernel, g.stride, g.out_hw);
        Self {
            c: g.channels as i32,
            h,
            w,
            kh,
            kw,
            sy,
            sx,
            oh,
            ow,
            batch: 0,
        }
    }
}

/// A sliding window's `[h, w, kh, kw, sy, sx, oh, ow]` as the kernels' i32 fields.
fn window(
    in_hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    out_hw: [usize; 2],
) -> [i32; 8] {
    [
        in_hw[0], in_hw[1], kernel[0], kernel[1], stride[0], stride[1], out_hw[0], out_hw[1],
    ]
    .map(|v| v as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names of `struct NAME { a: i32, b: i32, ... }` in `wgsl`, in order.
    fn wgsl_fields(wgsl: &str, name: &str) -> Vec<String> {
        let start = wgsl
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("no struct {name} in the WGSL"));
        let body = &wgsl[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
        body.split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (field, ty) = f.split_once(':').expect("field: type");
                assert_eq!(ty.trim(), "i32", "{name}.{field} must be i32");
                field.trim().to_string()
            })
            .collect()
    }

    #[test]
    fn the_wgsl_structs_mirror_the_rust_ones_field_for_field() {
        for (wgsl, name, fields) in [
            (include_str!("qgemm.wgsl"), "QgemmShape", QgemmShape::FIELDS),
            (include_str!("dense.wgsl"), "DenseShape", DenseShape::FIELDS),
            (include_str!("pool.wgsl"), "PoolShape", PoolShape::FIELDS),
        ] {
            assert_eq!(wgsl_fields(wgsl, name), fields, "{name}");
        }
        assert_eq!(
            DenseShape::default().bytes().len(),
            4 * DenseShape::FIELDS.len()
        );
    }

    #[test]
    fn a_linear_layer_is_a_one_by_one_convolution_of_one_pixel() {
        let s = DenseShape::linear(12, 200, 785);
        assert_eq!(
            (s.c, s.h, s.w, s.kh, s.kw, s.oh, s.ow, s.seg4),
            (785, 1, 1, 1, 1, 1, 1, 788)
        );
    }
}
