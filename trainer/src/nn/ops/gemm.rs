//! The matrix product behind every training kernel: `C (=|+=) A·B`, single-threaded, written for
//! the shapes this model has (one side is C = 64, the head size 16 or a 64-row tile; see
//! `tinypoet bench gemm`). It allocates nothing: operands that are not already in a form the
//! kernel reads (the transposed weights `Wᵀ`, a tile's `xᵀ`, attention's `Qᵀ` and `dOᵀ`) are
//! packed by the caller into a [`PackedB`] it owns and reuses.
//!
//! Operands (element strides, all non-negative):
//! * `A` [m × k], [`MatA`]: any strides, element (i, p) at `data[i·rs + p·cs]`. The kernel reads
//!   it one scalar at a time and broadcasts it, so a transposed `A` costs nothing extra.
//! * `B` [k × n], [`MatB`]: unit column stride, either plain rows (`data[p·rs + j]`) or a
//!   [`PackedB`] (column panels of [`NR`], each `k × NR` row-major, zero-padded).
//! * `C` [m × n]: row-major, row stride `rsc`.
//!
//! Loops, outermost first: blocks of [`KC`] along k (so a `KC × NR` panel of B is reused from
//! cache by all row tiles), panels of [`NR`] columns, tiles of [`MR`] rows, then the register
//! tile `MR × NR` (four 16-lane vectors per row, 24 accumulators) runs over the block's k; it
//! prefetches the next row tile's C, which for the LM head's gradient partials streams from L3.
//! Products with at most 16 columns use a `16 × 16` tile instead ([`MR_NARROW`]).
//!
//! Summation order: every element of C is one fused-multiply-add chain over p = 0, 1, …, k−1,
//! `c ← fma(a_ip, b_pj, c)`, starting from 0 ([`Update::Overwrite`]) or from C's old value
//! ([`Update::Accumulate`]). A k-block ends by storing the f32 partial sum and the next one
//! reloads it exactly, so the result depends neither on the blocking, nor on how callers split C
//! over threads, nor on the kernel variant: the AVX-512 kernel and the portable one (used for f64,
//! on CPUs without AVX-512, and by the tests through `set_portable_only`) are bit-identical,
//! because a fused multiply-add is correctly rounded on every path.
//!
//! Which f32 kernel runs is decided by the CPU alone. Builds with the `portable-switch` feature
//! (the tests, and `bench gemm --portable`) add `set_portable_only`, a process-wide switch to the
//! portable kernel; default builds have no such switch.

#[cfg(feature = "portable-switch")]
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::Float;

/// Rows of C per register tile: 6 rows × 4 vectors = 24 accumulators (+ 4 for a row of B and
/// one broadcast, of the 32 AVX-512 registers).
pub const MR: usize = 6;
/// Rows of C per register tile when C has at most 16 columns (attention's head size): 16 rows of
/// one vector, enough independent accumulators to hide the FMA latency.
pub const MR_NARROW: usize = 16;
/// Columns of C per register tile and per [`PackedB`] panel: four 16-lane f32 vectors.
pub const NR: usize = 64;
/// Depth of one k-block: a `KC × NR` f32 panel of B is 32 KiB.
pub const KC: usize = 128;

/// Whether the product overwrites C or adds to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// `C = A·B` (C's old contents are ignored; they may be garbage).
    Overwrite,
    /// `C += A·B`.
    Accumulate,
}

/// Left operand `A` [m × k]: element (i, p) at `data[i·rs + p·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatA<'a, F> {
    pub data: &'a [F],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, F> MatA<'a, F> {
    /// Row-major `A` with row stride `rs`.
    pub fn rows(data: &'a [F], rs: usize) -> Self {
        MatA { data, rs, cs: 1 }
    }

    /// `A = Mᵀ` for a row-major `M` with row stride `rs_m`: element (i, p) at `data[p·rs_m + i]`.
    pub fn transposed(data: &'a [F], rs_m: usize) -> Self {
        MatA {
            data,
            rs: 1,
            cs: rs_m,
        }
    }
}

/// Right operand `B` [k × n] with unit column stride.
#[derive(Clone, Copy, Debug)]
pub enum MatB<'a, F> {
    /// Row-major: element (p, j) at `data[p·rs + j]`.
    Rows { data: &'a [F], rs: usize },
    /// Rows `p0..p0+k` of an operand packed by [`PackedB::pack`] (see [`MatB::packed`]); the
    /// product may use its first `n ≤ packed.n()` columns.
    Packed { pb: &'a PackedB<F>, p0: usize },
}

impl<'a, F> MatB<'a, F> {
    /// All of a packed operand.
    pub fn packed(pb: &'a PackedB<F>) -> Self {
        MatB::Packed { pb, p0: 0 }
    }

    /// The packed operand's rows from `p0` on (e.g. one head's `D` rows of all heads' `Qᵀ`).
    pub fn packed_rows(pb: &'a PackedB<F>, p0: usize) -> Self {
        MatB::Packed { pb, p0 }
    }

    /// The packed operand's rows from `p0` on and columns from `j0` on, for a product whose
    /// columns all lie in the first panel (`j0 + n ≤ NR`): read as plain rows of stride `NR`.
    pub fn packed_from(pb: &'a PackedB<F>, p0: usize, j0: usize) -> Self {
        MatB::Rows {
            data: &pb.data[(p0 * NR + j0).min(pb.k * NR)..pb.k * NR],
            rs: NR,
        }
    }
}

/// A `k × n` right operand packed in column panels of [`NR`]: panel `q` holds columns
/// `q·NR..(q+1)·NR` as a `k × NR` row-major block (columns past `n` are zero). The buffer is
/// allocated once for the largest operand it will hold and refilled in place.
#[derive(Clone, Debug)]
pub struct PackedB<F> {
    data: Vec<F>,
    k: usize,
    n: usize,
}

impl<F: Float> PackedB<F> {
    /// Room for any `k × n` operand with `k ≤ k_max` and `n ≤ n_max`.
    pub fn new(k_max: usize, n_max: usize) -> Self {
        Self::for_shapes(&[(k_max, n_max)])
    }

    /// Room for each of the `(k, n)` operands listed.
    pub fn for_shapes(shapes: &[(usize, usize)]) -> Self {
        let len = shapes
            .iter()
            .map(|&(k, n)| k * n.div_ceil(NR) * NR)
            .max()
            .unwrap_or(0);
        PackedB {
            data: vec![F::ZERO; len],
            k: 0,
            n: 0,
        }
    }

    /// Depth k of the packed operand.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns n of the packed operand.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Pack `B[p, j] = src[p·rs + j·cs]` for p < k, j < n, e.g. `B = Wᵀ` for a row-major weight
    /// `W` [n × k] with `rs = 1`, `cs = k`. Single-threaded.
    pub fn pack(&mut self, src: &[F], k: usize, n: usize, rs: usize, cs: usize) {
        let panel = self.prepare(src, k, n, rs, cs);
        for (q, dst) in self.data[..n.div_ceil(NR) * panel]
            .chunks_exact_mut(panel)
            .enumerate()
        {
            pack_panel(dst, src, q * NR, k, n, rs, cs);
        }
    }

    /// [`Self::pack`] with the panels spread over the current rayon pool (a copy: the result is
    /// the same for any schedule).
    pub fn pack_par(&mut self, src: &[F], k: usize, n: usize, rs: usize, cs: usize) {
        let panel = self.prepare(src, k, n, rs, cs);
        self.data[..n.div_ceil(NR) * panel]
            .par_chunks_mut(panel)
            .enumerate()
            .for_each(|(q, dst)| pack_panel(dst, src, q * NR, k, n, rs, cs));
    }

    fn prepare(&mut self, src: &[F], k: usize, n: usize, rs: usize, cs: usize) -> usize {
        let panel = k * NR;
        assert!(
            n.div_ceil(NR) * panel <= self.data.len(),
            "PackedB holds {} floats, a {k}x{n} operand needs {}",
            self.data.len(),
            n.div_ceil(NR) * panel
        );
        check_extent(k, n, src.len(), rs, cs, "packed B source");
        self.k = k;
        self.n = n;
        panel
    }
}

simd_fn! {
    /// One panel: columns `j0..j0+NR` of B (zero past `n`) into `dst` [k × NR].
    fn pack_panel(dst: &mut [F], src: &[F], j0: usize, k: usize, n: usize, rs: usize, cs: usize)
        = pack_panel_any;
}

#[inline(always)]
fn pack_panel_any<F: Float>(
    dst: &mut [F],
    src: &[F],
    j0: usize,
    k: usize,
    n: usize,
    rs: usize,
    cs: usize,
) {
    let cols = NR.min(n - j0);
    if cs == 1 {
        // B's rows are contiguous (a weight read as is): row copies.
        for (p, d) in dst[..k * NR].chunks_exact_mut(NR).enumerate() {
            d[..cols].copy_from_slice(&src[p * rs + j0..][..cols]);
            d[cols..].fill(F::ZERO);
        }
    } else if rs == 1 {
        // B is a transposed row-major matrix (Wᵀ, xᵀ, Qᵀ): transpose in 16 × 16 blocks, so that
        // both the reads (16 floats of a source row) and the writes (16 of a panel row) are
        // contiguous.
        const TB: usize = 16;
        for jb in (0..cols).step_by(TB) {
            let jn = TB.min(cols - jb);
            for pb in (0..k).step_by(TB) {
                let pn = TB.min(k - pb);
                if jn == TB
                    && pn == TB
                    && F::transpose16(
                        &mut dst[pb * NR + jb..],
                        NR,
                        &src[(j0 + jb) * cs + pb..],
                        cs,
                    )
                {
                    continue;
                }
                // t[jj][pp] = B[pb + pp, j0 + jb + jj]; rows past jn stay zero (padding).
                let mut t = [[F::ZERO; TB]; TB];
                for (jj, t) in t.iter_mut().enumerate().take(jn) {
                    let row = &src[(j0 + jb + jj) * cs + pb..][..pn];
                    if pn == TB {
                        // A whole block row: a fixed-size copy (a vector move, not a call).
                        t.copy_from_slice(row);
                    } else {
                        t[..pn].copy_from_slice(row);
                    }
                }
                for pp in 0..pn {
                    let d = &mut dst[(pb + pp) * NR + jb..][..TB];
                    for (jj, d) in d.iter_mut().enumerate() {
                        *d = t[jj][pp];
                    }
                }
            }
        }
        let padded = cols.next_multiple_of(TB);
        for d in dst[..k * NR].chunks_exact_mut(NR) {
            d[padded..].fill(F::ZERO);
        }
    } else {
        for j in 0..NR {
            for p in 0..k {
                dst[p * NR + j] = if j < cols {
                    src[(j0 + j) * cs + p * rs]
                } else {
                    F::ZERO
                };
            }
        }
    }
}

/// Panic unless a `rows × cols` matrix with strides (`rs`, `cs`) fits in `len` elements.
///
/// A shape or stride bug in a kernel is a programming error, not a data error, so it panics with
/// the operand's name rather than returning a `Result`.
#[inline]
pub fn check_extent(rows: usize, cols: usize, len: usize, rs: usize, cs: usize, what: &str) {
    if rows == 0 || cols == 0 {
        return;
    }
    let last = (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last < len,
        "gemm {what}: {rows}x{cols} with strides ({rs},{cs}) needs {} elements, slice has {len}",
        last + 1
    );
}

#[cfg(feature = "portable-switch")]
static PORTABLE_ONLY: AtomicBool = AtomicBool::new(false);

/// Use only the portable kernel from now on (process-wide), even where AVX-512 is available. For
/// tests and `bench gemm --portable`: the results must not change, bit for bit.
#[cfg(feature = "portable-switch")]
pub fn set_portable_only(on: bool) {
    PORTABLE_ONLY.store(on, Ordering::SeqCst);
}

/// Whether [`set_portable_only`] turned the AVX-512 kernel off.
#[cfg(feature = "portable-switch")]
#[inline]
fn portable_only() -> bool {
    PORTABLE_ONLY.load(Ordering::Relaxed)
}

/// Without the `portable-switch` feature the CPU alone picks the kernel.
#[cfg(not(feature = "portable-switch"))]
#[inline(always)]
fn portable_only() -> bool {
    false
}

/// Which kernel the next f32 product runs: `"avx512"` or `"portable"`.
pub fn f32_kernel_name() -> &'static str {
    if use_avx512() {
        "avx512"
    } else {
        "portable"
    }
}

#[inline]
fn use_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !portable_only() && std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `C[m × n] (=|+=) A[m × k] · B[k × n]`, single-threaded (callers parallelise over fixed blocks
/// of C). See the module docs for the operand forms and the summation order.
#[allow(clippy::too_many_arguments)]
pub fn gemm<F: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: MatA<F>,
    b: MatB<F>,
    c: &mut [F],
    rsc: usize,
    update: Update,
) {
    check_extent(m, k, a.data.len(), a.rs, a.cs, "A");
    match b {
        MatB::Rows { data, rs } => check_extent(k, n, data.len(), rs, 1, "B"),
        MatB::Packed { pb, p0 } => assert!(
            p0 + k <= pb.k && n <= pb.n,
            "gemm B: packed {}x{}, product needs rows {p0}..{} and {n} columns",
            pb.k,
            pb.n,
            p0 + k
        ),
    }
    check_extent(m, n, c.len(), rsc, 1, "C");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if update == Update::Overwrite {
            for row in c.chunks_mut(rsc.max(n)).take(m) {
                row[..n].fill(F::ZERO);
            }
        }
        return;
    }
    let (bp, b_rs, b_panel) = match b {
        MatB::Rows { data, rs } => (data.as_ptr(), rs, None),
        // SAFETY: p0·NR lies inside the packed data (checked above: p0 + k ≤ pb.k, k ≥ 1).
        MatB::Packed { pb, p0 } => (
            unsafe { pb.data.as_ptr().add(p0 * NR) },
            NR,
            Some(pb.k * NR),
        ),
    };
    let p = Product {
        m,
        n,
        k,
        a: a.data.as_ptr(),
        rsa: a.rs,
        csa: a.cs,
        b: bp,
        rsb: b_rs,
        b_panel,
        c: c.as_mut_ptr(),
        rsc,
        accumulate: update == Update::Accumulate,
    };
    // SAFETY: the extent checks above prove that every element the loops address — A(i, p),
    // B(p, j) (rows: p·rs + j; packed: inside the checked panels) and C(i, j) for i < m, j < n,
    // p < k — lies inside its slice; the AVX-512 variant runs only where the CPU has AVX-512F.
    unsafe { F::gemm_product(&p) }
}

/// One product with its operands as raw pointers, checked by [`gemm`].
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Product<F> {
    m: usize,
    n: usize,
    k: usize,
    a: *const F,
    rsa: usize,
    csa: usize,
    b: *const F,
    rsb: usize,
    /// Packed B: floats per column panel (`k·NR`); `None` for plain rows.
    b_panel: Option<usize>,
    c: *mut F,
    rsc: usize,
    accumulate: bool,
}

/// One register tile: `C[rows × cols] (=|+=) A[rows × kc]·B[kc × cols]`, rows ≤ MR, cols ≤ NR.
#[derive(Clone, Copy, Debug)]
struct Tile<F> {
    rows: usize,
    cols: usize,
    kc: usize,
    a: *const F,
    rsa: usize,
    csa: usize,
    b: *const F,
    rsb: usize,
    c: *mut F,
    rsc: usize,
    load_c: bool,
}

/// The blocked loops of the module docs around a tile kernel.
///
/// # Safety
/// The operands of `p` must cover the product's extents (checked by [`gemm`]).
#[inline(always)]
unsafe fn run_blocked<F: Copy, const R: usize>(p: &Product<F>, mut tile: impl FnMut(&Tile<F>)) {
    for k0 in (0..p.k).step_by(KC) {
        let kc = KC.min(p.k - k0);
        let load_c = p.accumulate || k0 > 0;
        for j0 in (0..p.n).step_by(NR) {
            let cols = NR.min(p.n - j0);
            // SAFETY (all offsets): inside the operands by the caller's contract.
            let b = unsafe {
                match p.b_panel {
                    None => p.b.add(k0 * p.rsb + j0),
                    Some(panel) => p.b.add((j0 / NR) * panel + k0 * NR),
                }
            };
            for i0 in (0..p.m).step_by(R) {
                tile(&Tile {
                    rows: R.min(p.m - i0),
                    cols,
                    kc,
                    a: unsafe { p.a.add(i0 * p.rsa + k0 * p.csa) },
                    rsa: p.rsa,
                    csa: p.csa,
                    b,
                    rsb: p.rsb,
                    c: unsafe { p.c.add(i0 * p.rsc + j0) },
                    rsc: p.rsc,
                    load_c,
                });
            }
        }
    }
}

/// The portable tile kernel: the same fma chains as the AVX-512 one, in plain Rust over an
/// `MR × NR` accumulator array (auto-vectorised where the compiled variant allows).
///
/// # Safety
/// The tile's operands must cover its extents.
#[inline(always)]
unsafe fn tile_portable<F: Float>(t: &Tile<F>) {
    let mut acc = [[F::ZERO; NR]; MR];
    let (rows, cols) = (t.rows, t.cols);
    // SAFETY (all reads and writes): inside the operands by the caller's contract.
    unsafe {
        if t.load_c {
            for (i, acc) in acc.iter_mut().enumerate().take(rows) {
                let c = std::slice::from_raw_parts(t.c.add(i * t.rsc), cols);
                acc[..cols].copy_from_slice(c);
            }
        }
        for p in 0..t.kc {
            let b = std::slice::from_raw_parts(t.b.add(p * t.rsb), cols);
            let ap = t.a.add(p * t.csa);
            for (i, acc) in acc.iter_mut().enumerate().take(rows) {
                let ai = *ap.add(i * t.rsa);
                for (x, &bj) in acc[..cols].iter_mut().zip(b) {
                    *x = ai.mul_add(bj, *x);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate().take(rows) {
            let c = std::slice::from_raw_parts_mut(t.c.add(i * t.rsc), cols);
            c.copy_from_slice(&acc[..cols]);
        }
    }
}

/// The whole product with the portable kernel, compiled for the best instruction set the CPU
/// has (so that `mul_add` is one instruction where FMA exists).
///
/// # Safety
/// As [`run_blocked`].
pub(crate) unsafe fn product_portable<F: Float>(p: &Product<F>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        unsafe fn avx512<F: Float>(p: &Product<F>) {
            unsafe { run_blocked::<F, MR>(p, |t| tile_portable(t)) }
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<F: Float>(p: &Product<F>) {
            unsafe { run_blocked::<F, MR>(p, |t| tile_portable(t)) }
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features; operands as the caller guarantees.
            return unsafe { avx512(p) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(p) };
        }
    }
    // SAFETY: as the caller guarantees.
    unsafe { run_blocked::<F, MR>(p, |t| tile_portable(t)) }
}

/// The f32 product: the AVX-512 kernel where available (and not disabled), else portable.
///
/// # Safety
/// As [`run_blocked`].
/// [`Float::transpose16`] for f32: `dst[p·ds + j] = src[j·ss + p]`, p, j < 16, with the
/// AVX-512 kernel where the CPU has it (`false` otherwise, or if a slice is too short).
pub(crate) fn transpose16_f32(dst: &mut [f32], ds: usize, src: &[f32], ss: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if use_avx512() && dst.len() >= 15 * ds + 16 && src.len() >= 15 * ss + 16 {
        // SAFETY: AVX-512F is present; the 16 rows of 16 floats read and written lie inside the
        // slices (checked just above).
        unsafe { avx512::transpose16(dst.as_mut_ptr(), ds, src.as_ptr(), ss) };
        return true;
    }
    let _ = (dst, ds, src, ss);
    false
}

pub(crate) unsafe fn product_f32(p: &Product<f32>) {
    #[cfg(target_arch = "x86_64")]
    if use_avx512() {
        // SAFETY: AVX-512F is present (checked by `use_avx512`); operands as guaranteed.
        return unsafe { avx512::product(p) };
    }
    // SAFETY: as the caller guarantees.
    unsafe { product_portable(p) }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{run_blocked, Product, Tile, MR, MR_NARROW};

    /// The product with the AVX-512 register tiles.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; operands as [`run_blocked`].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn product(p: &Product<f32>) {
        unsafe {
            if p.n <= 16 {
                run_blocked::<f32, MR_NARROW>(p, |t| tile_narrow(t))
            } else {
                run_blocked::<f32, MR>(p, |t| tile(t))
            }
        }
    }

    /// A 16 × 16 transpose in registers: rows `src + j·ss` (16 floats each) become the columns
    /// of rows `dst + p·ds`. Four rounds of two-input shuffles (32-bit, 64-bit, then 128-bit
    /// lanes twice).
    ///
    /// # Safety
    /// AVX-512F; `src + j·ss + 0..16` readable and `dst + p·ds + 0..16` writable for j, p < 16.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn transpose16(dst: *mut f32, ds: usize, src: *const f32, ss: usize) {
        // SAFETY (loads/stores): inside the rows the caller guarantees.
        unsafe {
            let r: [__m512; 16] = std::array::from_fn(|j| _mm512_loadu_ps(src.add(j * ss)));
            // Pairs of rows interleaved by 32-bit element: t[2i], t[2i+1] from r[2i], r[2i+1].
            let mut t = [_mm512_setzero_ps(); 16];
            for i in 0..8 {
                t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            // Then by 64-bit element across pairs of pairs.
            let mut u = [_mm512_setzero_ps(); 16];
            for i in 0..4 {
                let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
                let pd = |x: __m512| _mm512_castps_pd(x);
                u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(a), pd(c)));
                u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(a), pd(c)));
                u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(b), pd(d)));
                u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(b), pd(d)));
            }
            // Now u[4i + k] holds, in each 128-bit lane l, column 4l + k of rows 4i..4i+4.
            // 128-bit lanes: gather lanes 0/2 and 1/3 of row groups (0,1), (2,3).
            let mut w = [_mm512_setzero_ps(); 16];
            for k in 0..4 {
                w[k] = _mm512_shuffle_f32x4::<0x88>(u[k], u[4 + k]);
                w[4 + k] = _mm512_shuffle_f32x4::<0xDD>(u[k], u[4 + k]);
                w[8 + k] = _mm512_shuffle_f32x4::<0x88>(u[8 + k], u[12 + k]);
                w[12 + k] = _mm512_shuffle_f32x4::<0xDD>(u[8 + k], u[12 + k]);
            }
            for k in 0..4 {
                // Columns k, 4+k, 8+k, 12+k.
                let c0 = _mm512_shuffle_f32x4::<0x88>(w[k], w[8 + k]);
                let c2 = _mm512_shuffle_f32x4::<0xDD>(w[k], w[8 + k]);
                let c1 = _mm512_shuffle_f32x4::<0x88>(w[4 + k], w[12 + k]);
                let c3 = _mm512_shuffle_f32x4::<0xDD>(w[4 + k], w[12 + k]);
                _mm512_storeu_ps(dst.add(k * ds), c0);
                _mm512_storeu_ps(dst.add((4 + k) * ds), c1);
                _mm512_storeu_ps(dst.add((8 + k) * ds), c2);
                _mm512_storeu_ps(dst.add((12 + k) * ds), c3);
            }
        }
    }

    /// Pick the `MR × NR` register-tile instance for the tile's rows and 16-lane vectors.
    #[inline(always)]
    unsafe fn tile(t: &Tile<f32>) {
        macro_rules! by_vectors {
            ($r:literal) => {
                match t.cols.div_ceil(16) {
                    1 => tile_rv::<$r, 1>(t),
                    2 => tile_rv::<$r, 2>(t),
                    3 => tile_rv::<$r, 3>(t),
                    _ => tile_rv::<$r, 4>(t),
                }
            };
        }
        // SAFETY: forwarded contract.
        unsafe {
            match t.rows {
                1 => by_vectors!(1),
                2 => by_vectors!(2),
                3 => by_vectors!(3),
                4 => by_vectors!(4),
                5 => by_vectors!(5),
                _ => by_vectors!(6),
            }
        }
    }

    /// Pick the `MR_NARROW × 16` register-tile instance for the tile's rows.
    #[inline(always)]
    unsafe fn tile_narrow(t: &Tile<f32>) {
        macro_rules! by_rows {
            ($($r:literal)*) => {
                match t.rows {
                    $($r => tile_rv::<$r, 1>(t),)*
                    _ => tile_rv::<16, 1>(t),
                }
            };
        }
        // SAFETY: forwarded contract.
        unsafe { by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15) }
    }

    /// `R × 16V` register tile: `R·V` accumulators, per k one row of B in `V` vectors (the last
    /// one masked to the tile's columns) and one broadcast of A per row.
    #[inline(always)]
    unsafe fn tile_rv<const R: usize, const V: usize>(t: &Tile<f32>) {
        let tail = t.cols - 16 * (V - 1);
        let last: __mmask16 = if tail >= 16 {
            0xFFFF
        } else {
            (1u16 << tail) - 1
        };
        let mask = |v: usize| if v + 1 == V { last } else { 0xFFFF };
        // SAFETY (all loads and stores): the tile's rows < R and columns < cols lie inside the
        // operands; masked-off lanes are not accessed.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            if t.load_c {
                for (i, acc) in acc.iter_mut().enumerate() {
                    for (v, x) in acc.iter_mut().enumerate() {
                        *x = _mm512_maskz_loadu_ps(mask(v), t.c.add(i * t.rsc + 16 * v));
                    }
                }
            }
            // Ask for the next row tile's C while this one computes: its loads (or the
            // read-for-ownership of its stores) would otherwise stall the next tile's start when
            // C streams from L3 (the LM head's dW partials, the logits tile). A prefetch never
            // faults, so the address may run past C (wrapping arithmetic: no out-of-bounds
            // pointer is formed).
            let next = t.c.wrapping_add(R * t.rsc);
            for i in 0..R {
                for v in 0..V {
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(i * t.rsc + 16 * v) as *const i8);
                }
            }
            for p in 0..t.kc {
                let bp = t.b.add(p * t.rsb);
                let mut b = [_mm512_setzero_ps(); V];
                for (v, x) in b.iter_mut().enumerate() {
                    *x = _mm512_maskz_loadu_ps(mask(v), bp.add(16 * v));
                }
                let ap = t.a.add(p * t.csa);
                for (i, acc) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*ap.add(i * t.rsa));
                    for (x, &bv) in acc.iter_mut().zip(&b) {
                        *x = _mm512_fmadd_ps(ai, bv, *x);
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                for (v, &x) in acc.iter().enumerate() {
                    _mm512_mask_storeu_ps(t.c.add(i * t.rsc + 16 * v), mask(v), x);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector 16 × 16 transpose (where the CPU has it) against its definition, with row
    /// strides longer than 16 on both sides.
    #[test]
    fn transpose16_is_a_transpose() {
        let (ss, ds) = (21, 64);
        let src: Vec<f32> = (0..16 * ss).map(|i| i as f32).collect();
        let mut dst = vec![-1.0f32; 16 * ds];
        if !transpose16_f32(&mut dst, ds, &src, ss) {
            return; // no vector kernel on this CPU: the plain loop is used (and tested below)
        }
        for p in 0..16 {
            for j in 0..16 {
                assert_eq!(dst[p * ds + j], src[j * ss + p], "p {p} j {j}");
            }
            assert!(dst[p * ds + 16..(p + 1) * ds].iter().all(|&x| x == -1.0));
        }
    }

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every operand form on awkward shapes (tails in m, n and k, several k-blocks), against an
    /// f64 reference, and the AVX-512 kernel bit-identical to the portable one.
    #[test]
    fn products_match_reference_and_kernels_agree() {
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (4, 64, 64),
            (7, 17, 130),
            (13, 100, 300),
            (64, 8548 % 200 + 64, 64),
            (33, 16, 257),
            (20, 7, 40),
            (64, 64, 16),
            (5, 129, 1),
        ];
        for &(m, n, k) in &shapes {
            for a_t in [false, true] {
                for packed in [false, true] {
                    for acc in [false, true] {
                        check_case(m, n, k, a_t, packed, acc);
                    }
                }
            }
        }
    }

    fn check_case(m: usize, n: usize, k: usize, a_t: bool, packed: bool, acc: bool) {
        // A stored with padding (row stride > used width) to test strides.
        let (ars, acs, alen) = if a_t {
            (1, m + 3, k * (m + 3))
        } else {
            (k + 2, 1, m * (k + 2))
        };
        let a = values(alen, 1 + m as u64);
        let bsrc = values(k * (n + 5), 2 + n as u64);
        let c0 = values(m * (n + 1), 3 + k as u64);
        let a_at = |i: usize, p: usize| a[i * ars + p * acs] as f64;
        let b_at = |p: usize, j: usize| bsrc[p * (n + 5) + j] as f64;
        let mut pb = PackedB::new(k, n);
        let run = |portable: bool, pb: &mut PackedB<f32>| {
            set_portable_only(portable);
            let mut c = c0.clone();
            let am = MatA {
                data: &a[..],
                rs: ars,
                cs: acs,
            };
            let upd = if acc {
                Update::Accumulate
            } else {
                Update::Overwrite
            };
            if packed {
                pb.pack(&bsrc, k, n, n + 5, 1);
                gemm(m, n, k, am, MatB::packed(pb), &mut c, n + 1, upd);
            } else {
                let b = MatB::Rows {
                    data: &bsrc[..],
                    rs: n + 5,
                };
                gemm(m, n, k, am, b, &mut c, n + 1, upd);
            }
            set_portable_only(false);
            c
        };
        let fast = run(false, &mut pb);
        let port = run(true, &mut pb);
        for i in 0..m {
            for j in 0..=n {
                let idx = i * (n + 1) + j;
                if j == n {
                    // The padding column is never touched.
                    assert_eq!(fast[idx].to_bits(), c0[idx].to_bits());
                    continue;
                }
                let mut want = if acc { c0[idx] as f64 } else { 0.0 };
                for p in 0..k {
                    want += a_at(i, p) * b_at(p, j);
                }
                let got = fast[idx] as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * (k as f64 + 1.0),
                    "{m}x{n}x{k} a_t={a_t} packed={packed} acc={acc}: C[{i},{j}] = {got}, want {want}"
                );
                assert_eq!(
                    fast[idx].to_bits(),
                    port[idx].to_bits(),
                    "{m}x{n}x{k}: AVX-512 and portable kernels differ at [{i},{j}]"
                );
            }
        }
    }

    /// The three packing paths (row copies, 16 × 16 transposes, general strides) give the same
    /// panels, tails and zero padding included.
    #[test]
    fn packing_paths_agree() {
        for &(k, n) in &[(1, 1), (16, 64), (17, 70), (64, 64), (5, 129), (33, 16)] {
            let b = values(k * n, 6);
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            // The same B[p, j] three ways: rows (cs = 1), transposed (rs = 1), padded strides.
            let bpad: Vec<f32> = (0..k * n * 2)
                .map(|i| if i % 2 == 0 { b[i / 2] } else { f32::NAN })
                .collect();
            let (mut p1, mut p2, mut p3) = (
                PackedB::<f32>::new(k, n),
                PackedB::<f32>::new(k, n),
                PackedB::<f32>::new(k, n),
            );
            p1.pack(&b, k, n, n, 1);
            p2.pack(&bt, k, n, 1, k);
            p3.pack(&bpad, k, n, 2 * n, 2);
            let len = n.div_ceil(NR) * k * NR;
            assert_eq!(p1.data[..len], p2.data[..len], "{k}x{n}: transpose path");
            assert_eq!(p1.data[..len], p3.data[..len], "{k}x{n}: general path");
        }
    }

    /// A product over rows `p0..p0+k` of a packed operand equals the one over those rows given
    /// as plain rows.
    #[test]
    fn packed_row_ranges() {
        let (m, n, k_all, p0, k) = (9, 70, 64, 16, 16);
        let a = values(m * k, 4);
        let b = values(k_all * n, 5);
        let mut pb = PackedB::new(k_all, n);
        pb.pack(&b, k_all, n, n, 1);
        let (mut c1, mut c2) = (vec![0.0f32; m * n], vec![0.0f32; m * n]);
        let am = MatA::rows(&a, k);
        gemm(
            m,
            n,
            k,
            am,
            MatB::packed_rows(&pb, p0),
            &mut c1,
            n,
            Update::Overwrite,
        );
        let rows = MatB::Rows {
            data: &b[p0 * n..],
            rs: n,
        };
        gemm(m, n, k, am, rows, &mut c2, n, Update::Overwrite);
        assert_eq!(c1, c2);
    }

    #[test]
    fn f64_products_are_exact_fma_chains() {
        let (m, n, k) = (5, 70, 300);
        let a: Vec<f64> = values(m * k, 9).iter().map(|&x| x as f64).collect();
        let b: Vec<f64> = values(k * n, 10).iter().map(|&x| x as f64).collect();
        let mut c = vec![0.0f64; m * n];
        gemm(
            m,
            n,
            k,
            MatA::rows(&a, k),
            MatB::Rows { data: &b, rs: n },
            &mut c,
            n,
            Update::Overwrite,
        );
        for i in 0..m {
            for j in 0..n {
                let mut want = 0.0f64;
                for p in 0..k {
                    want = a[i * k + p].mul_add(b[p * n + j], want);
                }
                assert_eq!(c[i * n + j].to_bits(), want.to_bits());
            }
        }
    }
}
