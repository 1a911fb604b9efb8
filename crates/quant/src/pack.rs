//! Low-bit weights in the model file: 4-bit weights two to a byte, 2-bit weights four to a
//! byte, each row of `[n, k]` starting on a byte, values in two's complement, the first
//! element in the lowest bits (the order ONNX's INT4 uses). Widths 5..=8 stay one byte per
//! weight and 3 bits use the 4-bit packing: a byte boundary is worth more than the saved
//! quarter. The engine never sees this form: the file reader unpacks once to `i8`.

/// Bits each weight occupies in the file for a width of `bits`.
pub fn storage_bits(bits: u8) -> u8 {
    match bits {
        0..=2 => 2,
        3..=4 => 4,
        _ => 8,
    }
}

/// Bytes one packed row of `k` weights takes at `storage` bits.
pub fn row_bytes(k: usize, storage: u8) -> usize {
    (k * storage as usize).div_ceil(8)
}

/// `w` (`[n, k]`, each value representable in `storage` bits) packed row by row.
pub fn pack(w: &[i8], k: usize, storage: u8) -> Vec<u8> {
    if storage == 8 {
        return w.iter().map(|&v| v as u8).collect();
    }
    let per = (8 / storage) as usize;
    let mask = (1u8 << storage) - 1;
    let mut out = Vec::with_capacity(w.len().div_ceil(k.max(1)) * row_bytes(k, storage));
    for row in w.chunks(k.max(1)) {
        for group in row.chunks(per) {
            let byte = group.iter().enumerate().fold(0u8, |b, (j, &v)| {
                b | (((v as u8) & mask) << (j as u32 * storage as u32))
            });
            out.push(byte);
        }
    }
    out
}

/// The `n * k` weights of `bytes` packed at `storage` bits, each checked to lie in
/// `-qmax..=qmax`; the unused high bits of a row's last byte must be zero. The error says
/// which row and value disagree with the width.
pub fn unpack(bytes: &[u8], n: usize, k: usize, storage: u8, qmax: i32) -> Result<Vec<i8>, String> {
    let rb = row_bytes(k, storage);
    if bytes.len() != n * rb {
        return Err(format!(
            "{} bytes, {n} rows of {k} weights at {storage} bits need {}",
            bytes.len(),
            n * rb
        ));
    }
    let mut out = Vec::with_capacity(n * k);
    for (r, row) in bytes.chunks(rb.max(1)).enumerate().take(n) {
        if storage == 8 {
            out.extend(row.iter().map(|&b| b as i8));
        } else {
            let per = (8 / storage) as usize;
            let shift = 8 - storage as u32;
            for j in 0..k {
                let b = row[j / per] >> ((j % per) as u32 * storage as u32);
                // Sign-extend the low `storage` bits.
                out.push(((b << shift) as i8) >> shift);
            }
            let used = k % per;
            if used != 0 && row[rb - 1] >> (used as u32 * storage as u32) != 0 {
                return Err(format!(
                    "row {r}: padding bits of the last byte are not zero"
                ));
            }
        }
        if let Some((j, v)) = out[r * k..]
            .iter()
            .enumerate()
            .find(|(_, v)| (**v as i32).abs() > qmax)
        {
            return Err(format!(
                "row {r}, weight {j}: {v} is outside -{qmax}..={qmax}, the range of its width"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qparams::symmetric_qmax;

    #[test]
    fn pack_round_trips_every_width_and_odd_rows() {
        for bits in 2..=8u8 {
            let q = symmetric_qmax(bits);
            let sb = storage_bits(bits);
            for k in [1, 2, 3, 5, 8, 13] {
                let n = 3;
                let w: Vec<i8> = (0..n * k)
                    .map(|i| ((i as i32 * 7 + 3) % (2 * q + 1) - q) as i8)
                    .collect();
                let packed = pack(&w, k, sb);
                assert_eq!(packed.len(), n * row_bytes(k, sb), "bits {bits} k {k}");
                assert_eq!(
                    unpack(&packed, n, k, sb, q).unwrap(),
                    w,
                    "bits {bits} k {k}"
                );
            }
        }
        assert_eq!(row_bytes(784, 4), 392);
        assert_eq!(row_bytes(784, 2), 196);
    }

    #[test]
    fn unpack_refuses_values_outside_the_width_and_dirty_padding() {
        // -8 is a 4-bit value but not on the symmetric 4-bit grid (-7..=7).
        let e = unpack(&pack(&[-8, 1], 2, 4), 1, 2, 4, 7).unwrap_err();
        assert!(e.contains("-8") && e.contains("row 0"), "{e}");
        // 3-bit width stored in nibbles: 5 is out of -3..=3.
        assert!(unpack(&pack(&[5, 1], 2, 4), 1, 2, 4, 3).is_err());
        // k = 1 in a nibble leaves the high nibble as padding.
        let e = unpack(&[0x31], 1, 1, 4, 7).unwrap_err();
        assert!(e.contains("padding"), "{e}");
        assert!(unpack(&[1, 2], 1, 5, 4, 7).unwrap_err().contains("need 3"));
        assert_eq!(unpack(&[1, 2, 3], 1, 5, 4, 7).unwrap(), vec![1, 0, 2, 0, 3]);
    }
}
