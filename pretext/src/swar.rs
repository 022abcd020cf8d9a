//! Eight bytes at a time in a `u64` (SWAR): the byte tests that JSON
//! escaping (`formats/json.rs`) and ASCII word splitting
//! (`segment/word.rs`) share. Each sets the high bit of the bytes it
//! finds; [`gather`] turns those into one bit a byte.

/// Eight copies of a byte.
pub(crate) const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// The high bit of each byte of `x` (ASCII) set where the byte is at
/// least `c` (`1..=0x80`): adding `0x80 − c` carries into the high bit
/// exactly then, and never out of the byte.
#[inline]
pub(crate) fn at_least(x: u64, c: u8) -> u64 {
    x.wrapping_add(splat(0x80 - c)) & splat(0x80)
}

/// The high bit of each byte of `x` set where the byte is `c`.
#[inline]
pub(crate) fn equal(x: u64, c: u8) -> u64 {
    let y = x ^ splat(c);
    !((y & splat(0x7f)).wrapping_add(splat(0x7f)) | y) & splat(0x80)
}

/// The bytes' high bits as the low eight bits (bit i: byte i).
#[inline]
pub(crate) fn gather(high: u64) -> u64 {
    high.wrapping_mul(0x0002_0408_1020_4081) >> 56
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ASCII byte, in every position, against the plain tests.
    #[test]
    fn byte_tests_are_exact() {
        for b in 0u8..0x80 {
            for at in 0..8 {
                let x = u64::from(b) << (8 * at) | (splat(b'm') & !(0xff << (8 * at)));
                let bit = |hit: bool| u64::from(hit) << at;
                let others = |hit: bool| if hit { 0xff & !(1 << at) } else { 0 };
                assert_eq!(
                    gather(equal(x, b'_')),
                    bit(b == b'_') | others(b'm' == b'_')
                );
                for c in [1, b'0', b'a', b'z' + 1, 0x80] {
                    assert_eq!(
                        gather(at_least(x, c)),
                        bit(b >= c) | others(b'm' >= c),
                        "{b} >= {c}"
                    );
                }
            }
        }
    }
}
