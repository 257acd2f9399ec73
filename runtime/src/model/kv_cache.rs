//! Per-layer key/value cache. Each layer keeps its own length and the original (RoPE)
//! position of every cached token, because token pruning can leave later layers with fewer
//! tokens than earlier ones. Storage is `[kv_head][slot][head_dim]` so one head's keys are
//! contiguous for the attention loops; capacity is fixed up front (no allocation per step).
//!
//! A layer whose plan runs INT8 attention also keeps INT8 codes of its keys and values
//! ([`Kv8`]), quantized once per token on append, so Q·Kᵀ and P·V are integer dots over the
//! cache instead of re-quantizing it per query.

use crate::quant::attn::quantize_i8_row;

/// INT8 keys and values of one layer, same `[kv_head][slot][head_dim]` layout as the floats,
/// with one symmetric scale (`amax / 127`) per (KV head, token) row.
#[derive(Clone, Debug)]
pub struct Kv8 {
    k: Vec<i8>,
    v: Vec<i8>,
    /// `[kv_head][slot]`.
    k_scale: Vec<f32>,
    v_scale: Vec<f32>,
}

/// Keys, values and positions of one layer.
#[derive(Clone, Debug)]
pub struct KvLayer {
    n_head_kv: usize,
    head_dim: usize,
    cap: usize,
    k: Vec<f32>,
    v: Vec<f32>,
    pos: Vec<u32>,
    q8: Option<Kv8>,
}

/// The cache cannot take more tokens.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("KV cache full: {len} tokens cached, {adding} more do not fit the capacity of {cap}")]
pub struct CacheFull {
    pub len: usize,
    pub adding: usize,
    pub cap: usize,
}

impl KvLayer {
    pub fn new(n_head_kv: usize, head_dim: usize, cap: usize) -> KvLayer {
        let n = n_head_kv * cap * head_dim;
        KvLayer { n_head_kv, head_dim, cap, k: vec![0.0; n], v: vec![0.0; n], pos: Vec::with_capacity(cap), q8: None }
    }

    pub fn len(&self) -> usize {
        self.pos.len()
    }
    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }
    pub fn capacity(&self) -> usize {
        self.cap
    }
    /// Original positions of the cached tokens, ascending.
    pub fn positions(&self) -> &[u32] {
        &self.pos
    }
    /// Keys of KV head `h`: `len x head_dim`.
    pub fn keys(&self, h: usize) -> &[f32] {
        let base = h * self.cap * self.head_dim;
        &self.k[base..base + self.len() * self.head_dim]
    }
    pub fn values(&self, h: usize) -> &[f32] {
        let base = h * self.cap * self.head_dim;
        &self.v[base..base + self.len() * self.head_dim]
    }

    /// Keeps INT8 codes of keys and values from now on (quantizing the tokens already cached).
    pub fn enable_int8(&mut self) {
        if self.q8.is_some() {
            return;
        }
        let n = self.n_head_kv * self.cap;
        let mut q8 = Kv8 { k: vec![0; n * self.head_dim], v: vec![0; n * self.head_dim], k_scale: vec![0.0; n], v_scale: vec![0.0; n] };
        for slot in 0..self.len() {
            for h in 0..self.n_head_kv {
                Self::quantize_slot(&mut q8, &self.k, &self.v, self.head_dim, h * self.cap + slot);
            }
        }
        self.q8 = Some(q8);
    }

    pub fn has_int8(&self) -> bool {
        self.q8.is_some()
    }

    /// INT8 keys of KV head `h` (`len x head_dim`) and their per-token scales.
    pub fn keys_i8(&self, h: usize) -> Option<(&[i8], &[f32])> {
        let q = self.q8.as_ref()?;
        let (b, n) = (h * self.cap, self.len());
        Some((&q.k[b * self.head_dim..(b + n) * self.head_dim], &q.k_scale[b..b + n]))
    }

    /// INT8 values of KV head `h` (`len x head_dim`) and their per-token scales.
    pub fn values_i8(&self, h: usize) -> Option<(&[i8], &[f32])> {
        let q = self.q8.as_ref()?;
        let (b, n) = (h * self.cap, self.len());
        Some((&q.v[b * self.head_dim..(b + n) * self.head_dim], &q.v_scale[b..b + n]))
    }

    /// Quantizes row `row` (= head * cap + slot) of the float cache into `q8`.
    fn quantize_slot(q8: &mut Kv8, k: &[f32], v: &[f32], hd: usize, row: usize) {
        let r = row * hd..(row + 1) * hd;
        q8.k_scale[row] = quantize_i8_row(&k[r.clone()], &mut q8.k[r.clone()]);
        q8.v_scale[row] = quantize_i8_row(&v[r.clone()], &mut q8.v[r]);
    }

    /// Appends `positions.len()` tokens; `k`, `v` are row-major `m x (n_head_kv * head_dim)`.
    pub fn append(&mut self, k: &[f32], v: &[f32], positions: &[u32]) -> Result<(), CacheFull> {
        let (m, hd, kvd) = (positions.len(), self.head_dim, self.n_head_kv * self.head_dim);
        assert_eq!(k.len(), m * kvd);
        assert_eq!(v.len(), m * kvd);
        if self.len() + m > self.cap {
            return Err(CacheFull { len: self.len(), adding: m, cap: self.cap });
        }
        if let (Some(&last), Some(&first)) = (self.pos.last(), positions.first()) {
            assert!(first > last, "positions must increase: cached up to {last}, appending {first}");
        }
        for h in 0..self.n_head_kv {
            for r in 0..m {
                let dst = (h * self.cap + self.len() + r) * hd;
                let src = r * kvd + h * hd;
                self.k[dst..dst + hd].copy_from_slice(&k[src..src + hd]);
                self.v[dst..dst + hd].copy_from_slice(&v[src..src + hd]);
                if let Some(q8) = self.q8.as_mut() {
                    Self::quantize_slot(q8, &self.k, &self.v, hd, h * self.cap + self.pos.len() + r);
                }
            }
        }
        self.pos.extend_from_slice(positions);
        Ok(())
    }

    /// Keeps only the cached tokens at the given (ascending) indices; for pruning policies.
    pub fn retain(&mut self, keep: &[usize]) {
        let hd = self.head_dim;
        assert!(keep.windows(2).all(|w| w[0] < w[1]) && keep.last().is_none_or(|&l| l < self.len()));
        for h in 0..self.n_head_kv {
            let base = h * self.cap * hd;
            for (dst, &src) in keep.iter().enumerate() {
                self.k.copy_within(base + src * hd..base + (src + 1) * hd, base + dst * hd);
                self.v.copy_within(base + src * hd..base + (src + 1) * hd, base + dst * hd);
                if let Some(q8) = self.q8.as_mut() {
                    q8.k.copy_within(base + src * hd..base + (src + 1) * hd, base + dst * hd);
                    q8.v.copy_within(base + src * hd..base + (src + 1) * hd, base + dst * hd);
                    q8.k_scale[h * self.cap + dst] = q8.k_scale[h * self.cap + src];
                    q8.v_scale[h * self.cap + dst] = q8.v_scale[h * self.cap + src];
                }
            }
        }
        let pos: Vec<u32> = keep.iter().map(|&i| self.pos[i]).collect();
        self.pos = pos;
    }

    /// Drops all tokens at index `len` and later.
    pub fn truncate(&mut self, len: usize) {
        self.pos.truncate(len);
    }
}

/// The whole model's cache plus the next position to hand out.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub layers: Vec<KvLayer>,
    next_pos: u32,
}

impl KvCache {
    pub fn new(n_layer: usize, n_head_kv: usize, head_dim: usize, cap: usize) -> KvCache {
        KvCache { layers: (0..n_layer).map(|_| KvLayer::new(n_head_kv, head_dim, cap)).collect(), next_pos: 0 }
    }

    /// Position the next appended token gets (one past the last token ever fed, pruned or not).
    pub fn next_pos(&self) -> u32 {
        self.next_pos
    }
    pub(crate) fn advance(&mut self, n: usize) {
        self.next_pos += n as u32;
    }
    pub fn capacity(&self) -> usize {
        self.layers.first().map_or(0, |l| l.capacity())
    }
    /// Forget everything (keeps the allocation).
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| l.truncate(0));
        self.next_pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_retain_and_full() {
        let mut l = KvLayer::new(2, 2, 3);
        // two tokens, kv_dim 4: head0 = [r, r], head1 = [10r, 10r]
        let k = [1., 1., 10., 10., 2., 2., 20., 20.];
        l.append(&k, &k, &[0, 1]).unwrap();
        assert_eq!(l.keys(1), &[10., 10., 20., 20.]);
        assert!(l.append(&k, &k, &[2, 3]).is_err());
        l.append(&k[..4], &k[..4], &[5]).unwrap();
        l.retain(&[0, 2]);
        assert_eq!(l.positions(), &[0, 5]);
        assert_eq!(l.keys(0), &[1., 1., 1., 1.]);
        assert_eq!(l.values(1), &[10., 10., 10., 10.]);
    }
}
