//! Structure-aware mutations of real files, for the readers' "never panics, never allocates
//! far beyond the input" property tests: truncation at every length class, integer fields
//! (lengths, counts, dimensions) set to 0, 1, huge and negative values, and seeded random
//! bit flips, byte overwrites, deletions and duplications. Deterministic for a seed, so a
//! failing case is reproduced by its index.

/// An integer field of a format (a length, a count, a dimension) at a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Byte offset of the field.
    pub offset: usize,
    /// Width in bytes (1, 2, 4 or 8).
    pub width: usize,
    /// Big-endian (IDX) or little-endian (safetensors, npy, protobuf fixed ints).
    pub big_endian: bool,
}

impl Field {
    /// A big-endian field.
    pub fn be(offset: usize, width: usize) -> Self {
        Field {
            offset,
            width,
            big_endian: true,
        }
    }

    /// A little-endian field.
    pub fn le(offset: usize, width: usize) -> Self {
        Field {
            offset,
            width,
            big_endian: false,
        }
    }

    /// Writes `v` (truncated to the width) into `bytes`, if the field fits.
    fn set(&self, bytes: &mut [u8], v: u64) {
        let Some(slot) = bytes.get_mut(self.offset..self.offset + self.width) else {
            return;
        };
        let le = v.to_le_bytes();
        for (i, b) in slot.iter_mut().enumerate() {
            let j = if self.big_endian {
                self.width - 1 - i
            } else {
                i
            };
            *b = le[j];
        }
    }
}

/// Values every integer field is set to: zero, one, small, byte and word boundaries, the
/// largest positive and the "negative" ones of each width, and all ones.
pub const SPECIAL_VALUES: [u64; 14] = [
    0,
    1,
    2,
    7,
    255,
    256,
    65_535,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Lengths every input is cut to: 0..=32, powers of two and their neighbours below `len`,
/// and the last few bytes.
pub fn truncation_lengths(len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..=32.min(len)).collect();
    let mut p = 64;
    while p < len {
        v.extend([p - 1, p, p + 1]);
        p *= 2;
    }
    v.extend([
        len / 2,
        len.saturating_sub(3),
        len.saturating_sub(2),
        len.saturating_sub(1),
    ]);
    v.retain(|&n| n < len);
    v.sort_unstable();
    v.dedup();
    v
}

/// A small seeded generator (SplitMix64), so the crate needs nothing beyond std.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// One random mutation of `seed` (a copy): 1-8 bit flips, a random byte run, a deleted
/// or duplicated range, or a field set to a special value.
pub fn random_mutation(seed: &[u8], fields: &[Field], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    if b.is_empty() {
        b.push(rng.next_u64() as u8);
        return b;
    }
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let len = b.len().max(1);
        match rng.below(6) {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(len);
                    if let Some(x) = b.get_mut(i) {
                        *x ^= 1 << rng.below(8);
                    }
                }
            }
            1 => {
                let i = rng.below(len);
                let n = (1 + rng.below(16)).min(b.len() - i.min(b.len()));
                for x in b.iter_mut().skip(i).take(n) {
                    *x = rng.next_u64() as u8;
                }
            }
            2 if b.len() > 1 => {
                let i = rng.below(b.len());
                let n = 1 + rng.below((b.len() - i).min(64));
                b.drain(i..i + n);
            }
            3 if b.len() < 1 << 20 => {
                let i = rng.below(b.len());
                let n = 1 + rng.below((b.len() - i).min(64));
                let chunk = b[i..i + n].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
            4 if !fields.is_empty() => {
                let f = fields[rng.below(fields.len())];
                f.set(&mut b, SPECIAL_VALUES[rng.below(SPECIAL_VALUES.len())]);
            }
            _ => {
                let i = rng.below(len);
                if let Some(x) = b.get_mut(i) {
                    *x = [0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'\n', b'-'][rng.below(8)];
                }
            }
        }
    }
    b
}

/// Numbers a JSON field is set to: zero, one, huge, negative, fractional, out of every
/// integer range, and not a number at all.
pub const JSON_NUMBERS: [&str; 10] = [
    "0",
    "1",
    "-1",
    "2147483648",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "1e308",
    "0.5",
];

/// Every run of ASCII digits inside `range` of `seed` (a JSON text, or a file holding one)
/// replaced, one at a time, by each of [`JSON_NUMBERS`]: the lengths, counts, shapes and
/// offsets a JSON header declares.
pub fn json_number_cases(seed: &[u8], range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    let end = range.end.min(seed.len());
    let mut runs = Vec::new();
    let mut i = range.start;
    while i < end {
        if seed[i].is_ascii_digit() {
            let start = i;
            while i < end && seed[i].is_ascii_digit() {
                i += 1;
            }
            runs.push(start..i);
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for r in runs {
        for n in JSON_NUMBERS {
            let mut b = seed[..r.start].to_vec();
            b.extend_from_slice(n.as_bytes());
            b.extend_from_slice(&seed[r.end..]);
            out.push(b);
        }
    }
    out
}

/// The deterministic cases (every truncation, every field at every special value) followed
/// by `random` seeded random mutations.
pub fn cases(seed: &[u8], fields: &[Field], random: usize, rng_seed: u64) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = truncation_lengths(seed.len())
        .into_iter()
        .map(|n| seed[..n].to_vec())
        .collect();
    for f in fields {
        for &v in &SPECIAL_VALUES {
            let mut b = seed.to_vec();
            f.set(&mut b, v);
            out.push(b);
        }
    }
    let mut rng = Rng::new(rng_seed);
    out.extend((0..random).map(|_| random_mutation(seed, fields, &mut rng)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_written_in_their_byte_order() {
        let mut b = vec![0u8; 6];
        Field::be(1, 4).set(&mut b, 0x0102_0304);
        assert_eq!(b, [0, 1, 2, 3, 4, 0]);
        Field::le(1, 2).set(&mut b, 0xaabb);
        assert_eq!(b, [0, 0xbb, 0xaa, 3, 4, 0]);
        // A field past the end is left alone.
        Field::le(5, 4).set(&mut b, u64::MAX);
        assert_eq!(b[5], 0);
    }

    #[test]
    fn truncations_cover_small_lengths_and_powers_of_two() {
        let t = truncation_lengths(1000);
        assert!(t.starts_with(&[0, 1, 2, 3]));
        for n in [63, 64, 65, 511, 512, 513, 500, 999] {
            assert!(t.contains(&n), "{n}");
        }
        assert!(t.iter().all(|&n| n < 1000));
    }

    #[test]
    fn json_numbers_are_replaced_one_at_a_time() {
        let seed = br#"xx{"a":12,"b":[3,4]}"#;
        let c = json_number_cases(seed, 2..seed.len());
        assert_eq!(c.len(), 3 * JSON_NUMBERS.len());
        assert!(c.contains(&br#"xx{"a":-1,"b":[3,4]}"#.to_vec()));
        assert!(c.contains(&br#"xx{"a":12,"b":[3,1e308]}"#.to_vec()));
    }

    #[test]
    fn cases_are_deterministic_and_differ_from_the_seed() {
        let seed: Vec<u8> = (0..200).map(|i| i as u8).collect();
        let a = cases(&seed, &[Field::be(0, 4)], 50, 7);
        assert_eq!(a, cases(&seed, &[Field::be(0, 4)], 50, 7));
        assert!(a.iter().filter(|c| **c != seed).count() >= a.len() - 3);
    }
}
