//! The container both `.r1cs` and `.zkey` files use (iden3's "binfile"): a 4-byte magic, a `u32`
//! version, a `u32` section count, then sections, each a `u32` type, a `u64` byte length and
//! that many bytes. Everything is little-endian.
//!
//! [`Sections::parse`] indexes the sections of a whole file without copying; every read after
//! that is bounds-checked by [`Reader`], so a truncated or lying file is an error, never a panic
//! or an allocation sized by the file's own claims.

use std::collections::HashMap;

use ark_bn254::{Fq, Fr};
use ark_ff::{BigInt, PrimeField};

/// Why a binfile (or a section of it) cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinError {
    /// Fewer bytes than the structure needs.
    #[error("the file is truncated: {what} needs {needed} bytes at offset {offset}, but only {available} remain")]
    Truncated {
        /// What was being read.
        what: String,
        /// Byte offset within the file.
        offset: usize,
        /// Bytes needed.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// Not this kind of file, or a structure the format forbids.
    #[error("{0}")]
    Malformed(String),
}

/// A bounds-checked little-endian cursor over a slice of the file.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    /// Offset of `bytes[0]` within the whole file, for error messages.
    base: usize,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`, which start at `base` in the file.
    pub fn new(bytes: &'a [u8], base: usize) -> Self {
        Reader { bytes, base, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], BinError> {
        if self.remaining() < n {
            return Err(BinError::Truncated {
                what: what.to_owned(),
                offset: self.base + self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32, BinError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64, BinError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// A `u32` count of items of `item_bytes` each that must fit in what is left, so that no
    /// allocation is ever sized by a count the file merely claims.
    pub fn count(&mut self, item_bytes: usize, what: &str) -> Result<usize, BinError> {
        let n = self.u32(what)? as usize;
        let needed = n.saturating_mul(item_bytes);
        if needed > self.remaining() {
            return Err(BinError::Truncated {
                what: format!("{n} x {what}"),
                offset: self.base + self.pos,
                needed,
                available: self.remaining(),
            });
        }
        Ok(n)
    }

    /// A 32-byte little-endian integer.
    pub fn bigint(&mut self, what: &str) -> Result<BigInt<4>, BinError> {
        Ok(bigint_le(self.take(32, what)?))
    }

    /// A scalar field element in normal form (not Montgomery), below r.
    pub fn fr(&mut self, what: &str) -> Result<Fr, BinError> {
        let offset = self.base + self.pos;
        Fr::from_bigint(self.bigint(what)?)
            .ok_or_else(|| BinError::Malformed(format!("{what} at offset {offset} is not below the scalar field modulus")))
    }

    /// A base field element stored in Montgomery form (as snarkjs writes curve points).
    pub fn fq_montgomery(&mut self, what: &str) -> Result<Fq, BinError> {
        let offset = self.base + self.pos;
        let raw = self.bigint(what)?;
        // Montgomery form is a residue below q like any other; anything else is not a field element.
        if raw >= Fq::MODULUS {
            return Err(BinError::Malformed(format!("{what} at offset {offset} is not below the base field modulus")));
        }
        Ok(Fq::new_unchecked(raw))
    }
}

/// A 32-byte little-endian integer; `bytes.len()` must be 32.
pub fn bigint_le(bytes: &[u8]) -> BigInt<4> {
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *limb = u64::from_le_bytes(word);
    }
    BigInt(limbs)
}

/// The sections of one binfile, by type.
#[derive(Debug, Clone)]
pub struct Sections<'a> {
    file: &'a [u8],
    /// Section type -> (offset, length); the format allows each type once in the files we read.
    index: HashMap<u32, (usize, usize)>,
}

impl<'a> Sections<'a> {
    /// Indexes `file`, which must start with `magic` and have version 1.
    pub fn parse(file: &'a [u8], magic: &[u8; 4], kind: &str) -> Result<Self, BinError> {
        let mut r = Reader::new(file, 0);
        if r.take(4, "the magic number").ok() != Some(&magic[..]) {
            return Err(BinError::Malformed(format!(
                "not a {kind} file: it does not start with {:?}",
                String::from_utf8_lossy(magic)
            )));
        }
        let version = r.u32("the version")?;
        if version != 1 {
            return Err(BinError::Malformed(format!("{kind} version {version} is not supported (only 1)")));
        }
        let count = r.u32("the section count")?;
        let mut index = HashMap::new();
        for _ in 0..count {
            let kind_id = r.u32("a section type")?;
            let len = r.u64("a section length")?;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            let offset = r.pos;
            r.take(len, &format!("section {kind_id}"))?;
            if index.insert(kind_id, (offset, len)).is_some() {
                return Err(BinError::Malformed(format!("{kind} section {kind_id} appears twice")));
            }
        }
        if r.remaining() != 0 {
            return Err(BinError::Malformed(format!("{} bytes follow the last {kind} section", r.remaining())));
        }
        Ok(Sections { file, index })
    }

    /// A reader over section `id`, or an error naming it.
    pub fn section(&self, id: u32, name: &str) -> Result<Reader<'a>, BinError> {
        let &(offset, len) =
            self.index.get(&id).ok_or_else(|| BinError::Malformed(format!("the {name} section ({id}) is missing")))?;
        Ok(Reader::new(&self.file[offset..offset + len], offset))
    }

    /// Whether section `id` is present.
    pub fn has(&self, id: u32) -> bool {
        self.index.contains_key(&id)
    }
}

/// Reads a field definition (`u32` byte size, then the prime) and checks it is `expected`.
pub fn expect_prime(r: &mut Reader<'_>, expected: BigInt<4>, what: &str) -> Result<(), BinError> {
    let n8 = r.u32(&format!("the {what} byte size"))?;
    if n8 != 32 {
        return Err(BinError::Malformed(format!(
            "the {what} is {n8} bytes wide; only BN254 (32-byte fields) is supported"
        )));
    }
    let prime = r.bigint(&format!("the {what} prime"))?;
    if prime != expected {
        return Err(BinError::Malformed(format!(
            "the {what} prime is {prime}, not BN254's {expected}: compile with circom's default `--prime bn128` \
             and set up on bn128"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sections: &[(u32, &[u8])]) -> Vec<u8> {
        let mut out = b"r1cs".to_vec();
        out.extend(1u32.to_le_bytes());
        out.extend((sections.len() as u32).to_le_bytes());
        for (id, body) in sections {
            out.extend(id.to_le_bytes());
            out.extend((body.len() as u64).to_le_bytes());
            out.extend(*body);
        }
        out
    }

    #[test]
    fn sections_are_indexed_and_bounds_checked() {
        let bytes = file(&[(1, &[1, 0, 0, 0]), (2, &[])]);
        let sections = Sections::parse(&bytes, b"r1cs", "r1cs").unwrap();
        assert_eq!(sections.section(1, "header").unwrap().u32("x").unwrap(), 1);
        assert!(sections.section(2, "constraints").unwrap().u32("x").is_err());
        assert!(sections.section(3, "labels").is_err());
        assert!(!sections.has(3));
    }

    #[test]
    fn lies_and_truncations_are_errors() {
        assert!(Sections::parse(b"zkey\x01\0\0\0\0\0\0\0", b"r1cs", "r1cs").is_err());
        let mut bytes = file(&[(1, &[1, 2, 3, 4])]);
        bytes.truncate(bytes.len() - 1);
        assert!(matches!(Sections::parse(&bytes, b"r1cs", "r1cs"), Err(BinError::Truncated { .. })));
        let twice = file(&[(1, &[]), (1, &[])]);
        assert!(Sections::parse(&twice, b"r1cs", "r1cs").is_err());
        // A count claiming more items than there are bytes for is refused before allocating.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0, 0], 0);
        assert!(r.count(4, "items").is_err());
        let mut huge = file(&[]);
        huge[8..12].copy_from_slice(&1u32.to_le_bytes());
        huge.extend(7u32.to_le_bytes());
        huge.extend(u64::MAX.to_le_bytes());
        assert!(Sections::parse(&huge, b"r1cs", "r1cs").is_err());
    }
}
