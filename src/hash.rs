//! The hash nib uses for ETags and change detection: 64-bit FNV-1a, small and stable
//! across builds and machines (never for secrets; those use SHA-256 in `auth`).

/// 64-bit FNV-1a: a small, stable hash for ETags and change detection (not for secrets).
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
    pub fn hash_str(s: &str) -> u64 {
        let mut h = Fnv::new();
        h.write(s.as_bytes());
        h.finish()
    }
}

/// A strong validator from a 64-bit hash: `"0123456789abcdef"`.
pub(crate) fn strong_etag(hash: u64) -> String {
    format!("\"{hash:016x}\"")
}
