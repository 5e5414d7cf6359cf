//! Bounds checking for the strided GEMM wrapper in [`super::Float::gemm`].

/// Panic unless a `rows × cols` matrix with strides (`rs`, `cs`) fits in `len` elements.
///
/// A shape or stride bug in a kernel is a programming error, not a data error, so it panics with
/// the operand's name rather than returning a `Result`.
#[inline]
pub fn check_extent(rows: usize, cols: usize, len: usize, rs: isize, cs: isize, what: &str) {
    assert!(rs >= 0 && cs >= 0, "gemm {what}: negative stride");
    if rows == 0 || cols == 0 {
        return;
    }
    let last = (rows - 1) * rs as usize + (cols - 1) * cs as usize;
    assert!(
        last < len,
        "gemm {what}: {rows}x{cols} with strides ({rs},{cs}) needs {} elements, slice has {len}",
        last + 1
    );
}
