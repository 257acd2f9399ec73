//! Machine ceilings: what this CPU can do at best, measured with small synthetic loops, so
//! a kernel's speed can be read as a share of the possible rather than as a bare number.
//!
//! - f32 FMA peak (GFLOP/s): independent FMA chains, enough to cover latency x pipes.
//! - INT8 multiply-add peak (GOP/s, one MAC = 2 ops): the 8-bit multiply the integer
//!   kernels are built on, at full throughput (AVX2 `vpmaddubsw`; NEON `sdot`, or `smull` +
//!   `sadalp` without dotprod). Kernels also spend instructions widening and adding, so
//!   this bounds them from above.
//! - Memory read bandwidth (GB/s): wide loads streamed over a buffer larger than the caches.
//!
//! Each ceiling runs on `threads` OS threads at once (started together at a barrier) and
//! reports every repetition, so callers can take a median and a spread.

use crate::registry::Isa;
use std::hint::black_box;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Instant;

/// How long and how often to measure.
#[derive(Clone, Debug)]
pub struct CeilingOptions {
    /// Timed repetitions per ceiling.
    pub reps: usize,
    /// Target duration of one compute repetition, seconds.
    pub sample_secs: f64,
    /// Size of the bandwidth test's buffer; should be several times the last-level cache.
    pub mem_bytes: usize,
    /// Bytes read per bandwidth sample: successive samples read successive windows of the
    /// buffer, so a window is never still in cache, and a sample stays short enough (a few
    /// ms) to usually run without being preempted on a shared machine.
    pub mem_window_bytes: usize,
}

impl Default for CeilingOptions {
    fn default() -> Self {
        CeilingOptions { reps: 7, sample_secs: 0.005, mem_bytes: 256 << 20, mem_window_bytes: 32 << 20 }
    }
}

impl CeilingOptions {
    /// Fewer, shorter repetitions (for smoke runs).
    pub fn quick() -> Self {
        CeilingOptions { reps: 5, sample_secs: 0.002, ..Self::default() }
    }
}

/// One ceiling: every repetition's throughput (higher is better).
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub samples: Vec<f64>,
}

impl Measured {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        v
    }
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        let n = v.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

/// All ceilings at one thread count.
#[derive(Clone, Debug)]
pub struct Ceilings {
    pub threads: usize,
    /// ISA of the compute loops (the best this CPU runs among the kernels' ISAs).
    pub isa: Isa,
    pub f32_fma_gflops: Measured,
    pub int8_gops: Measured,
    pub mem_read_gbs: Measured,
}

/// Measure every ceiling at each thread count, with the best available ISA. The bandwidth
/// buffer is allocated once and shared.
pub fn measure(thread_counts: &[usize], opts: &CeilingOptions) -> Vec<Ceilings> {
    let isa = Isa::best();
    let buf = ReadBuffer::new(opts.mem_bytes);
    thread_counts
        .iter()
        .map(|&t| Ceilings {
            threads: t,
            isa,
            f32_fma_gflops: f32_fma_peak(t, isa, opts),
            int8_gops: int8_peak(t, isa, opts),
            mem_read_gbs: mem_read_bandwidth(t, &buf, opts.mem_window_bytes, opts.reps),
        })
        .collect()
}

/// f32 FMA throughput in GFLOP/s (an FMA counts as 2 flops).
pub fn f32_fma_peak(threads: usize, isa: Isa, opts: &CeilingOptions) -> Measured {
    Probe::f32_fma(threads, isa, opts.sample_secs).measure(opts.reps)
}

/// 8-bit multiply-accumulate throughput in GOP/s (a MAC counts as 2 ops).
pub fn int8_peak(threads: usize, isa: Isa, opts: &CeilingOptions) -> Measured {
    Probe::int8(threads, isa, opts.sample_secs).measure(opts.reps)
}

/// Read bandwidth in GB/s (1e9 bytes): each repetition, the threads stream their shares of
/// the next `window_bytes` of `buf`.
pub fn mem_read_bandwidth(threads: usize, buf: &ReadBuffer, window_bytes: usize, reps: usize) -> Measured {
    Probe::mem_read(threads, buf, window_bytes).measure(reps)
}

/// Which ceiling a probe measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ceiling {
    F32Fma,
    Int8,
    MemRead,
}

impl Ceiling {
    pub fn name(self) -> &'static str {
        match self {
            Ceiling::F32Fma => "f32-fma",
            Ceiling::Int8 => "int8",
            Ceiling::MemRead => "mem-read",
        }
    }
    pub fn unit(self) -> &'static str {
        match self {
            Ceiling::F32Fma => "GFLOP/s",
            Ceiling::Int8 => "GOP/s",
            Ceiling::MemRead => "GB/s",
        }
    }
}

/// One ceiling at one thread count, calibrated once and then sampled whenever the caller
/// likes — e.g. interleaved with the kernels it is compared to, so both see the same load.
pub struct Probe<'a> {
    ceiling: Ceiling,
    threads: usize,
    isa: Isa,
    iters: u64,
    buf: Option<&'a ReadBuffer>,
    /// Words per bandwidth sample, and the index of the next window to read.
    window: usize,
    next_window: AtomicUsize,
}

impl Probe<'static> {
    /// Calibrated so one sample lasts about `sample_secs`. An ISA this CPU lacks falls back
    /// to scalar (and `isa()` says so).
    pub fn f32_fma(threads: usize, isa: Isa, sample_secs: f64) -> Self {
        let isa = if isa.is_available() { isa } else { Isa::Scalar };
        let iters = calibrate(sample_secs, |n| fma_loop(isa, n));
        Probe { ceiling: Ceiling::F32Fma, threads: threads.max(1), isa, iters, buf: None, window: 0, next_window: AtomicUsize::new(0) }
    }

    /// Calibrated so one sample lasts about `sample_secs`.
    pub fn int8(threads: usize, isa: Isa, sample_secs: f64) -> Self {
        let isa = if isa.is_available() { isa } else { Isa::Scalar };
        let iters = calibrate(sample_secs, |n| int8_loop(isa, n));
        Probe { ceiling: Ceiling::Int8, threads: threads.max(1), isa, iters, buf: None, window: 0, next_window: AtomicUsize::new(0) }
    }
}

impl<'a> Probe<'a> {
    /// One sample streams the next `window_bytes` of `buf` (all of it if smaller). An
    /// untimed pass over the whole buffer first brings the TLB and page tables to a steady
    /// state.
    pub fn mem_read(threads: usize, buf: &'a ReadBuffer, window_bytes: usize) -> Self {
        let window = (window_bytes / 8).clamp(1, buf.words.len());
        let p = Probe {
            ceiling: Ceiling::MemRead,
            threads: threads.max(1),
            isa: Isa::best(),
            iters: 1,
            buf: Some(buf),
            window,
            next_window: AtomicUsize::new(0),
        };
        parallel(p.threads, |i| p.read_share(0..buf.words.len(), i));
        p
    }

    /// Thread `i`'s share of `range` of the buffer, summed; returns the bytes read.
    fn read_share(&self, range: Range<usize>, i: usize) -> f64 {
        let words = &self.buf.expect("mem-read probes have a buffer").words[range];
        let chunk = words.len().div_ceil(self.threads);
        let part = &words[(i * chunk).min(words.len())..((i + 1) * chunk).min(words.len())];
        black_box(sum_words(part));
        (part.len() * 8) as f64
    }

    pub fn ceiling(&self) -> Ceiling {
        self.ceiling
    }
    pub fn threads(&self) -> usize {
        self.threads
    }
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// One timed run on `threads` threads: throughput in the ceiling's unit.
    pub fn sample(&self) -> f64 {
        let (secs, work) = match (self.ceiling, self.buf) {
            (Ceiling::F32Fma, _) => parallel(self.threads, |_| fma_loop(self.isa, self.iters)),
            (Ceiling::Int8, _) => parallel(self.threads, |_| int8_loop(self.isa, self.iters)),
            (Ceiling::MemRead, Some(buf)) => {
                let windows = (buf.words.len() / self.window).max(1);
                let w = self.next_window.fetch_add(1, Ordering::Relaxed) % windows;
                let range = w * self.window..((w + 1) * self.window).min(buf.words.len());
                parallel(self.threads, |i| self.read_share(range.clone(), i))
            }
            (Ceiling::MemRead, None) => unreachable!("mem-read probes are built with a buffer"),
        };
        work / secs / 1e9
    }

    pub fn measure(&self, reps: usize) -> Measured {
        Measured { samples: (0..reps.max(1)).map(|_| self.sample()).collect() }
    }
}

/// Iterations of `body` (which returns its operation count) that take about `secs` on one
/// thread: grow until a run is long enough to time, then scale.
fn calibrate(secs: f64, body: impl Fn(u64) -> f64) -> u64 {
    let mut iters = 1u64 << 12;
    loop {
        let t0 = Instant::now();
        body(iters);
        let dt = t0.elapsed().as_secs_f64();
        if dt > secs / 4.0 || iters > 1 << 40 {
            return ((iters as f64) * secs / dt.max(1e-9)).max(1.0) as u64;
        }
        iters *= 8;
    }
}

/// Run `f(thread_index)` on `threads` threads released together; wall seconds from the
/// first start to the last finish, and the sum of their results. Each thread reads its own
/// clock: the releasing thread may itself be descheduled while the workers run.
fn parallel(threads: usize, f: impl Fn(usize) -> f64 + Sync) -> (f64, f64) {
    let barrier = Barrier::new(threads);
    let runs: Vec<(Instant, Instant, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    barrier.wait();
                    let t0 = Instant::now();
                    let r = f(i);
                    (t0, Instant::now(), r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("ceiling thread panicked")).collect()
    });
    let start = runs.iter().map(|r| r.0).min().expect("at least one thread");
    let end = runs.iter().map(|r| r.1).max().expect("at least one thread");
    let total = runs.iter().map(|r| r.2).sum();
    (end.duration_since(start).as_secs_f64().max(1e-9), total)
}

/// A buffer of non-zero words, every page touched before timing.
pub struct ReadBuffer {
    words: Vec<u64>,
}

impl ReadBuffer {
    pub fn new(bytes: usize) -> Self {
        let n = (bytes / 8).max(1024);
        ReadBuffer { words: (0..n as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).collect() }
    }
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

fn sum_words(s: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx2.is_available() {
        // SAFETY: AVX2 was detected at run time.
        return unsafe { sum_words_avx2(s) };
    }
    sum_words_portable(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_words_avx2(s: &[u64]) -> u64 {
    // The portable loop compiled with 256-bit registers: four ymm loads per 16 words.
    sum_words_portable(s)
}

/// Sixteen independent lanes so the loop is load-bound, not add-latency-bound; the
/// compiler vectorizes it with whatever width the enclosing function allows.
#[inline(always)]
fn sum_words_portable(s: &[u64]) -> u64 {
    let mut acc = [0u64; 16];
    let mut chunks = s.chunks_exact(16);
    for c in &mut chunks {
        for (a, &w) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(w);
        }
    }
    let tail: u64 = chunks.remainder().iter().fold(0, |a, &w| a.wrapping_add(w));
    acc.iter().fold(tail, |a, &w| a.wrapping_add(w))
}

/// Runs `iters` iterations of the FMA loop for `isa`; returns the flops performed.
fn fma_loop(isa: Isa, iters: u64) -> f64 {
    let iters = black_box(iters);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller picked an ISA that `is_available`.
        Isa::Avx2 if isa.is_available() => {
            black_box(unsafe { x86::fma(iters) });
            iters as f64 * x86::FMA_FLOPS_PER_ITER
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller picked an ISA that `is_available`.
        Isa::Avx512 if isa.is_available() => {
            black_box(unsafe { x86::fma512(iters) });
            iters as f64 * x86::FMA512_FLOPS_PER_ITER
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is detected at run time.
        Isa::Neon if isa.is_available() => {
            black_box(unsafe { arm::fma(iters) });
            iters as f64 * arm::FMA_FLOPS_PER_ITER
        }
        _ => {
            black_box(scalar_fma(iters));
            iters as f64 * SCALAR_FMA_FLOPS_PER_ITER
        }
    }
}

/// Runs `iters` iterations of the INT8 loop for `isa`; returns the ops (2 per MAC).
fn int8_loop(isa: Isa, iters: u64) -> f64 {
    let iters = black_box(iters);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller picked an ISA that `is_available`.
        Isa::Avx2 if isa.is_available() => {
            black_box(unsafe { x86::int8(iters) });
            iters as f64 * x86::INT8_OPS_PER_ITER
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller picked an ISA that `is_available`.
        Isa::Avx512 if isa.is_available() => {
            black_box(unsafe { x86::int8_vnni(iters) });
            iters as f64 * x86::VNNI_OPS_PER_ITER
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if isa.is_available() => {
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                // SAFETY: NEON and dotprod are detected at run time.
                black_box(unsafe { arm::int8_sdot(iters) });
                iters as f64 * arm::SDOT_OPS_PER_ITER
            } else {
                // SAFETY: NEON is detected at run time.
                black_box(unsafe { arm::int8_smull(iters) });
                iters as f64 * arm::SMULL_OPS_PER_ITER
            }
        }
        _ => {
            black_box(scalar_int8(iters));
            iters as f64 * SCALAR_INT8_OPS_PER_ITER
        }
    }
}

const SCALAR_LANES: usize = 32;
const SCALAR_FMA_FLOPS_PER_ITER: f64 = 2.0 * SCALAR_LANES as f64;
const SCALAR_INT8_OPS_PER_ITER: f64 = 2.0 * SCALAR_LANES as f64;

/// Multiply-add (not fused: the baseline target has no FMA) over independent lanes.
fn scalar_fma(iters: u64) -> f32 {
    let mut acc = [0f32; SCALAR_LANES];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = 1.0 + i as f32 * 1e-3;
    }
    let (m, c) = (black_box(0.999_999f32), black_box(1e-7f32));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = *a * m + c;
        }
    }
    acc.iter().sum()
}

fn scalar_int8(iters: u64) -> i32 {
    let mut x = [0i8; SCALAR_LANES];
    for (i, v) in x.iter_mut().enumerate() {
        *v = i as i8;
    }
    let w = black_box(3i8);
    let mut acc = [0i32; SCALAR_LANES];
    for _ in 0..iters {
        for (a, v) in acc.iter_mut().zip(x.iter_mut()) {
            *v = v.wrapping_add(1);
            *a = a.wrapping_add(*v as i32 * w as i32);
        }
    }
    acc.iter().fold(0, |s, &a| s.wrapping_add(a))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 12 chains x 8 lanes x 2 flops: 12 chains cover FMA latency (4) x 2 ports with room.
    const CHAINS: usize = 12;
    pub const FMA_FLOPS_PER_ITER: f64 = (CHAINS * 8 * 2) as f64;

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma(iters: u64) -> f32 {
        let m = _mm256_set1_ps(0.999_999);
        let c = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        let mut s = _mm256_setzero_ps();
        for a in acc {
            s = _mm256_add_ps(s, a);
        }
        _mm_cvtss_f32(_mm256_castps256_ps128(s))
    }

    /// The multiply alone: each `vpmaddubsw` (32 u8 x i8 products, summed in pairs) feeds
    /// the next one in its chain, so nothing but the multiply occupies the vector ports.
    /// Real kernels also widen (`vpmaddwd`) and add, so they stay below this. 12 chains
    /// cover its latency (5) x 2 ports.
    const INT8_CHAINS: usize = 12;
    pub const INT8_OPS_PER_ITER: f64 = (INT8_CHAINS * 32 * 2) as f64;

    #[target_feature(enable = "avx2")]
    pub unsafe fn int8(iters: u64) -> i32 {
        let w = _mm256_set1_epi8(3);
        let mut x = [_mm256_setzero_si256(); INT8_CHAINS];
        for (i, v) in x.iter_mut().enumerate() {
            *v = _mm256_set1_epi8(i as i8 + 1);
        }
        for _ in 0..iters {
            for v in x.iter_mut() {
                *v = _mm256_maddubs_epi16(*v, w);
            }
        }
        let mut s = _mm256_setzero_si256();
        for v in x {
            s = _mm256_add_epi32(s, v);
        }
        _mm256_extract_epi32::<0>(s)
    }

    /// The FMA loop on 512-bit registers (16 lanes).
    pub const FMA512_FLOPS_PER_ITER: f64 = (CHAINS * 16 * 2) as f64;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma512(iters: u64) -> f32 {
        let m = _mm512_set1_ps(0.999_999);
        let c = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        let mut s = _mm512_setzero_ps();
        for a in acc {
            s = _mm512_add_ps(s, a);
        }
        _mm512_reduce_add_ps(s)
    }

    /// AVX-512 VNNI: one `vpdpbusd` is 64 u8 x i8 multiply-adds summed in fours into 16 i32
    /// lanes, accumulating in place (no widening step), so it is what the VNNI kernels use.
    /// 12 chains cover its latency (5) x 2 ports.
    pub const VNNI_OPS_PER_ITER: f64 = (INT8_CHAINS * 64 * 2) as f64;

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn int8_vnni(iters: u64) -> i32 {
        let w = _mm512_set1_epi8(3);
        let x = _mm512_set1_epi8(1);
        let mut acc = [_mm512_setzero_si512(); INT8_CHAINS];
        for (i, v) in acc.iter_mut().enumerate() {
            *v = _mm512_set1_epi32(i as i32);
        }
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_dpbusd_epi32(*v, w, x);
            }
        }
        let mut s = _mm512_setzero_si512();
        for v in acc {
            s = _mm512_add_epi32(s, v);
        }
        _mm512_reduce_add_epi32(s)
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    const CHAINS: usize = 16;
    pub const FMA_FLOPS_PER_ITER: f64 = (CHAINS * 4 * 2) as f64;

    #[target_feature(enable = "neon")]
    pub unsafe fn fma(iters: u64) -> f32 {
        let m = vdupq_n_f32(0.999_999);
        let c = vdupq_n_f32(1e-7);
        let mut acc = [vdupq_n_f32(1.0); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = vfmaq_f32(c, *a, m);
            }
        }
        let mut s = vdupq_n_f32(0.0);
        for a in acc {
            s = vaddq_f32(s, a);
        }
        vaddvq_f32(s)
    }

    const INT8_CHAINS: usize = 8;
    /// `sdot`: 16 MACs per instruction.
    pub const SDOT_OPS_PER_ITER: f64 = (INT8_CHAINS * 16 * 2) as f64;
    /// `smull` + `smull2` + 2 `sadalp`: 16 MACs per chain.
    pub const SMULL_OPS_PER_ITER: f64 = (INT8_CHAINS * 16 * 2) as f64;

    #[target_feature(enable = "neon,dotprod")]
    pub unsafe fn int8_sdot(iters: u64) -> i32 {
        let step = vdupq_n_s8(1);
        let w = vdupq_n_s8(3);
        let mut x = [vdupq_n_s8(0); INT8_CHAINS];
        for (i, v) in x.iter_mut().enumerate() {
            *v = vdupq_n_s8(i as i8 + 1);
        }
        let mut acc = [vdupq_n_s32(0); INT8_CHAINS];
        for _ in 0..iters {
            for (a, v) in acc.iter_mut().zip(x.iter_mut()) {
                *v = vaddq_s8(*v, step);
                // `vdotq_s32` is unstable on stable Rust; the instruction itself is not.
                core::arch::asm!(
                    "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                    acc = inout(vreg) *a,
                    a = in(vreg) *v,
                    b = in(vreg) w,
                    options(pure, nomem, nostack)
                );
            }
        }
        let mut s = vdupq_n_s32(0);
        for a in acc {
            s = vaddq_s32(s, a);
        }
        vaddvq_s32(s)
    }

    #[target_feature(enable = "neon")]
    pub unsafe fn int8_smull(iters: u64) -> i32 {
        let step = vdupq_n_s8(1);
        let w = vdupq_n_s8(3);
        let mut x = [vdupq_n_s8(0); INT8_CHAINS];
        for (i, v) in x.iter_mut().enumerate() {
            *v = vdupq_n_s8(i as i8 + 1);
        }
        let mut acc = [vdupq_n_s32(0); INT8_CHAINS];
        for _ in 0..iters {
            for (a, v) in acc.iter_mut().zip(x.iter_mut()) {
                *v = vaddq_s8(*v, step);
                let lo = vmull_s8(vget_low_s8(*v), vget_low_s8(w));
                let hi = vmull_high_s8(*v, w);
                *a = vpadalq_s16(vpadalq_s16(*a, lo), hi);
            }
        }
        let mut s = vdupq_n_s32(0);
        for a in acc {
            s = vaddq_s32(s, a);
        }
        vaddvq_s32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sane(m: &Measured, reps: usize) {
        assert_eq!(m.samples.len(), reps);
        assert!(m.samples.iter().all(|v| v.is_finite() && *v > 0.0), "{m:?}");
        assert!(m.min() <= m.median() && m.median() <= m.max());
    }

    #[test]
    fn ceilings_are_positive_and_finite() {
        let opts = CeilingOptions { reps: 3, sample_secs: 0.002, mem_bytes: 16 << 20, mem_window_bytes: 4 << 20 };
        for c in measure(&[1, 2], &opts) {
            sane(&c.f32_fma_gflops, 3);
            sane(&c.int8_gops, 3);
            sane(&c.mem_read_gbs, 3);
        }
    }

    #[test]
    fn scalar_loops_run_everywhere() {
        let opts = CeilingOptions { reps: 2, sample_secs: 0.002, mem_bytes: 1 << 20, mem_window_bytes: 1 << 20 };
        sane(&f32_fma_peak(1, Isa::Scalar, &opts), 2);
        sane(&int8_peak(1, Isa::Scalar, &opts), 2);
    }

    #[test]
    fn word_sums_agree() {
        let buf = ReadBuffer::new(1 << 16);
        let want = buf.words.iter().fold(0u64, |a, &w| a.wrapping_add(w));
        assert_eq!(sum_words(&buf.words), want);
        assert_eq!(sum_words_portable(&buf.words[3..1000]), buf.words[3..1000].iter().fold(0u64, |a, &w| a.wrapping_add(w)));
        assert_eq!(Measured { samples: vec![3.0, 1.0, 2.0, 10.0] }.median(), 2.5);
    }
}
