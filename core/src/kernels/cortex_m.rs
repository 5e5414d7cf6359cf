//! Cortex-M backend (thumbv7em-none-eabihf, thumbv8m.main-none-eabihf): f16 mat-vec with the
//! FPU's half-precision conversions, and the int8 mat-vec with the DSP extension's
//! `SXTB16`/`SMLAD`, on stable Rust (`global_asm!`, no `#![feature(f16)]`).
//!
//! OWNED BY THE FIRMWARE (issue 6). The signature below is the core's stable hook.
//!
//! This is the one module of the core with `unsafe` code on Arm (the crate root denies it
//! elsewhere): a `global_asm!` kernel and the calls into it.
//!
//! Contract (must hold bit for bit; the host tests check the scalar order):
//! - `w` is f16 little-endian, row-major `[n_in][stride]`, `n_in = x.len()`, `n_out = y.len()`,
//!   already bounds-checked by [`super::matvec_f16`]: `(n_in-1)*stride + n_out <= w.len()/2`.
//!   `w` is 2-byte aligned when the blob is (tensors sit at 64-byte offsets in the blob).
//! - For each `o`: `y[o] = y[o] + w[k*stride+o]*x[k]` for `k = 0, 1, ..., n_in-1` in this order,
//!   each product rounded to f32 before the add (no fused multiply-add: `vfma` is forbidden,
//!   `vmla.f32` is fine because it rounds the product).
//!
//! # How the kernel works
//!
//! The scalar path spends ~22 instructions per multiply-add on an M4, because `half`'s
//! `to_f32` is a software routine on 32-bit Arm (../shared/spec/embedded.md §2). Here a tile
//! of `W` consecutive outputs (`W` = 16, 8, 4, 2 or 1) lives in s-registers `s16..s16+W` for the
//! whole sweep over `k`; each step loads `x[k]` once (`vldmia r1!`), loads the `W` halves of row
//! `k` with one `vldmia` (two halves per 32-bit word), converts them with `vcvtb` (low half =
//! even column) / `vcvtt` (high half = odd column), and accumulates with `vmla.f32`, which on
//! FPv4-SP/FPv5 rounds the product before the add ("chained", not fused). Per output the
//! operations are exactly the scalar ones in the scalar order, so results are bit-identical;
//! the conversion is exact and the FPSCR is left at its reset value (IEEE half format,
//! round-to-nearest, no flush-to-zero), as on the host.
//!
//! Cost for a 16-wide tile, two rows per loop iteration: one `vldmia` for `x[k]` and `x[k+1]`,
//! two `vldmia` for the rows, two `add`, 32 `vcvt`, 32 `vmla` and 2 for the loop: 71
//! instructions per 32 multiply-adds (2.2 per MAC, against ~22 for the scalar path and 3.5
//! for plain f32 weights), as measured by the firmware under QEMU -icount
//! (firmware-example, `./run-qemu.sh --measure`).
//!
//! Tiles of 2..16 need 4-byte aligned rows (`vldmia` faults on unaligned addresses): `w` must
//! start on a 4-byte boundary and `stride` must be even, which holds for every tensor of a blob
//! embedded with its 64-byte alignment and for the KV cache (an `f32` buffer). Otherwise, and
//! for an odd last column, the 1-wide kernel (`ldrh` + `vmov` + `vcvtb`) does the work.
//!
//! [`f16_to_f32_slice`] converts 16 halves per `vldmia`/`vstmia` pair (exact, like
//! `kernels::scalar::f16_to_f32_slice`); `kernels::f16_to_f32_slice` routes the f16 bias loads
//! to it (the LM head's 8548-entry bias costs ~205 k instructions per character through the
//! software conversion, 10.8 k here).
//!
//! # The int8 kernel ([`matvec_q8`])
//!
//! For groups of 32 with f16 scales (what `tinypoet export --dtype int8` writes), on CPUs with
//! the DSP extension (every `thumbv7em` target; see `core/build.rs`): each output's row is
//! 32-byte groups of i8; the quantized input holds, per group, 16 words of i16 pairs in the
//! order `SXTB16` unpacks a weight word (bytes 0 and 2, then rotated by 8, bytes 1 and 3), so
//! per 8 multiply-adds the kernel does one `ldm` of 4 activation words, one `ldm` of 2 weight
//! words, 4 `sxtb16` and 4 `smlad` (two 16x16 products into the i32 sum), 40 instructions per
//! group. The integer sum is exact, then the float steps are the scalar ones in the scalar
//! order (`vcvt` of the sum, the weight scale's `vcvtb`/`vcvtt`, `vmul` by the activation
//! scale, `vmla` into the output). About 1.5 instructions per multiply-add under QEMU, against
//! 2.2 for the f16 kernel. Other group sizes, f32 scales, misaligned rows and CPUs without DSP
//! use the portable body (same bits).
#![allow(unsafe_code)]

/// `y[o] += sum_{k ascending} w[k*stride + o] * x[k]`; `w`: f16 LE bytes, `[n_in][stride]`.
pub fn matvec_f16(y: &mut [f32], x: &[f32], w: &[u8], stride: usize) {
    #[cfg(target_abi = "eabihf")]
    {
        vfp::matvec_f16(y, x, w, stride)
    }
    #[cfg(not(target_abi = "eabihf"))]
    {
        super::scalar::matvec_f16(y, x, w, stride)
    }
}

/// The int8 mat-vec (`kernels::matvec_q8`'s contract, bit for bit): the `SXTB16`/`SMLAD`
/// kernel for groups of 32 with f16 scales on CPUs with the DSP extension (see `core/build.rs`),
/// else the portable body.
pub fn matvec_q8(y: &mut [f32], xq: &[f32], w: &super::Q8Matrix) {
    #[cfg(all(target_abi = "eabihf", tinypoet_arm_dsp))]
    {
        dsp::matvec_q8(y, xq, w)
    }
    #[cfg(not(all(target_abi = "eabihf", tinypoet_arm_dsp)))]
    {
        super::scalar::matvec_q8(y, xq, w)
    }
}

/// `dst[i] = f16 value i of src` (little-endian bytes; exact) for `i < min(dst.len(),
/// src.len() / 2)`: the contract of `kernels::f16_to_f32_slice`, bit for bit.
pub fn f16_to_f32_slice(dst: &mut [f32], src: &[u8]) {
    let n = dst.len().min(src.len() / 2);
    let dst = &mut dst[..n];
    #[cfg(target_abi = "eabihf")]
    {
        vfp::f16_to_f32_slice(dst, &src[..2 * n])
    }
    #[cfg(not(target_abi = "eabihf"))]
    {
        super::scalar::f16_to_f32_slice(dst, src)
    }
}

#[cfg(target_abi = "eabihf")]
mod vfp {
    // Each `tinypoet_f16_axpyW(y, x, w, stride_bytes, n_in)` (AAPCS: r0..r3, then the stack)
    // does, for o in 0..W and k in 0..n_in ascending: y[o] = y[o] + f32(w[k*stride + o]) * x[k].
    // Rows are taken two at a time (x[k], x[k+1] in s14, s15), then an odd last row; the order
    // of the operations on each y[o] is unchanged. Registers: raw halves s0-s7, converted
    // values s8-s13 (rotating), accumulators s16.. (callee-saved: pushed and popped).
    // `tinypoet_f16_to_f32_16(dst, src, n_blocks)` converts 16 halves per block.
    // `.fpu`: the crate's own module-level assembly is assembled without the target's FPU
    // features; FPv4-SP (M4) is also the subset of FPv5 (M7, M33) these kernels use.
    // The text is generated (one routine per tile width) by
    // firmware-example/tools/gen_cortex_m_asm.py.
    core::arch::global_asm!(
        r#"
    .fpu fpv4-sp-d16
    .section .text.tinypoet_f16_axpy16,"ax",%progbits
    .global tinypoet_f16_axpy16
    .type tinypoet_f16_axpy16,%function
    .thumb_func
    .p2align 2
tinypoet_f16_axpy16:
    push {{r4, lr}}
    ldr r4, [sp, #8]
    vpush {{s16-s31}}
    vldmia r0, {{s16-s31}}
    lsrs r12, r4, #1
    beq 2f
1:
    vldmia r1!, {{s14-s15}}
    vldmia r2, {{s0-s7}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vcvtb.f32.f16 s10, s1
    vmla.f32 s16, s8, s14
    vcvtt.f32.f16 s11, s1
    vmla.f32 s17, s9, s14
    vcvtb.f32.f16 s12, s2
    vmla.f32 s18, s10, s14
    vcvtt.f32.f16 s13, s2
    vmla.f32 s19, s11, s14
    vcvtb.f32.f16 s8, s3
    vmla.f32 s20, s12, s14
    vcvtt.f32.f16 s9, s3
    vmla.f32 s21, s13, s14
    vcvtb.f32.f16 s10, s4
    vmla.f32 s22, s8, s14
    vcvtt.f32.f16 s11, s4
    vmla.f32 s23, s9, s14
    vcvtb.f32.f16 s12, s5
    vmla.f32 s24, s10, s14
    vcvtt.f32.f16 s13, s5
    vmla.f32 s25, s11, s14
    vcvtb.f32.f16 s8, s6
    vmla.f32 s26, s12, s14
    vcvtt.f32.f16 s9, s6
    vmla.f32 s27, s13, s14
    vcvtb.f32.f16 s10, s7
    vmla.f32 s28, s8, s14
    vcvtt.f32.f16 s11, s7
    vmla.f32 s29, s9, s14
    vmla.f32 s30, s10, s14
    vmla.f32 s31, s11, s14
    vldmia r2, {{s0-s7}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vcvtb.f32.f16 s10, s1
    vmla.f32 s16, s8, s15
    vcvtt.f32.f16 s11, s1
    vmla.f32 s17, s9, s15
    vcvtb.f32.f16 s12, s2
    vmla.f32 s18, s10, s15
    vcvtt.f32.f16 s13, s2
    vmla.f32 s19, s11, s15
    vcvtb.f32.f16 s8, s3
    vmla.f32 s20, s12, s15
    vcvtt.f32.f16 s9, s3
    vmla.f32 s21, s13, s15
    vcvtb.f32.f16 s10, s4
    vmla.f32 s22, s8, s15
    vcvtt.f32.f16 s11, s4
    vmla.f32 s23, s9, s15
    vcvtb.f32.f16 s12, s5
    vmla.f32 s24, s10, s15
    vcvtt.f32.f16 s13, s5
    vmla.f32 s25, s11, s15
    vcvtb.f32.f16 s8, s6
    vmla.f32 s26, s12, s15
    vcvtt.f32.f16 s9, s6
    vmla.f32 s27, s13, s15
    vcvtb.f32.f16 s10, s7
    vmla.f32 s28, s8, s15
    vcvtt.f32.f16 s11, s7
    vmla.f32 s29, s9, s15
    vmla.f32 s30, s10, s15
    vmla.f32 s31, s11, s15
    subs r12, r12, #1
    bne 1b
2:
    tst r4, #1
    beq 3f
    vldmia r1!, {{s15}}
    vldmia r2, {{s0-s7}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vcvtb.f32.f16 s10, s1
    vmla.f32 s16, s8, s15
    vcvtt.f32.f16 s11, s1
    vmla.f32 s17, s9, s15
    vcvtb.f32.f16 s12, s2
    vmla.f32 s18, s10, s15
    vcvtt.f32.f16 s13, s2
    vmla.f32 s19, s11, s15
    vcvtb.f32.f16 s8, s3
    vmla.f32 s20, s12, s15
    vcvtt.f32.f16 s9, s3
    vmla.f32 s21, s13, s15
    vcvtb.f32.f16 s10, s4
    vmla.f32 s22, s8, s15
    vcvtt.f32.f16 s11, s4
    vmla.f32 s23, s9, s15
    vcvtb.f32.f16 s12, s5
    vmla.f32 s24, s10, s15
    vcvtt.f32.f16 s13, s5
    vmla.f32 s25, s11, s15
    vcvtb.f32.f16 s8, s6
    vmla.f32 s26, s12, s15
    vcvtt.f32.f16 s9, s6
    vmla.f32 s27, s13, s15
    vcvtb.f32.f16 s10, s7
    vmla.f32 s28, s8, s15
    vcvtt.f32.f16 s11, s7
    vmla.f32 s29, s9, s15
    vmla.f32 s30, s10, s15
    vmla.f32 s31, s11, s15
3:
    vstmia r0, {{s16-s31}}
    vpop {{s16-s31}}
    pop {{r4, pc}}
    .size tinypoet_f16_axpy16, . - tinypoet_f16_axpy16

    .section .text.tinypoet_f16_axpy8,"ax",%progbits
    .global tinypoet_f16_axpy8
    .type tinypoet_f16_axpy8,%function
    .thumb_func
    .p2align 2
tinypoet_f16_axpy8:
    push {{r4, lr}}
    ldr r4, [sp, #8]
    vpush {{s16-s23}}
    vldmia r0, {{s16-s23}}
    lsrs r12, r4, #1
    beq 2f
1:
    vldmia r1!, {{s14-s15}}
    vldmia r2, {{s0-s3}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vcvtb.f32.f16 s10, s1
    vmla.f32 s16, s8, s14
    vcvtt.f32.f16 s11, s1
    vmla.f32 s17, s9, s14
    vcvtb.f32.f16 s12, s2
    vmla.f32 s18, s10, s14
    vcvtt.f32.f16 s13, s2
    vmla.f32 s19, s11, s14
    vcvtb.f32.f16 s8, s3
    vmla.f32 s20, s12, s14
    vcvtt.f32.f16 s9, s3
    vmla.f32 s21, s13, s14
    vmla.f32 s22, s8, s14
    vmla.f32 s23, s9, s14
    vldmia r2, {{s0-s3}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vcvtb.f32.f16 s10, s1
    vmla.f32 s16, s8, s15
    vcvtt.f32.f16 s11, s1
    vmla.f32 s17, s9, s15
    vcvtb.f32.f16 s12, s2
    vmla.f32 s18, s10, s15
    vcvtt.f32.f16 s13, s2
    vmla.f32 s19, s11, s15
    vcvtb.f32.f16 s8, s3
    vmla.f32 s20, s12, s15
    vcvtt.f32.f16 s9, s3
    vmla.f32 s21, s13, s15
    vmla.f32 s22, s8, s15
    vmla.f32 s23, s9, s15
    subs r12, r12, #1
    bne 1b
2:
    tst r4, #1
    beq 3f
    vldmia r1!, {{s15}}
    vldmia r2, {{s0-s3}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vcvtb.f32.f16 s10, s1
    vmla.f32 s16, s8, s15
    vcvtt.f32.f16 s11, s1
    vmla.f32 s17, s9, s15
    vcvtb.f32.f16 s12, s2
    vmla.f32 s18, s10, s15
    vcvtt.f32.f16 s13, s2
    vmla.f32 s19, s11, s15
    vcvtb.f32.f16 s8, s3
    vmla.f32 s20, s12, s15
    vcvtt.f32.f16 s9, s3
    vmla.f32 s21, s13, s15
    vmla.f32 s22, s8, s15
    vmla.f32 s23, s9, s15
3:
    vstmia r0, {{s16-s23}}
    vpop {{s16-s23}}
    pop {{r4, pc}}
    .size tinypoet_f16_axpy8, . - tinypoet_f16_axpy8

    .section .text.tinypoet_f16_axpy4,"ax",%progbits
    .global tinypoet_f16_axpy4
    .type tinypoet_f16_axpy4,%function
    .thumb_func
    .p2align 2
tinypoet_f16_axpy4:
    push {{r4, lr}}
    ldr r4, [sp, #8]
    vpush {{s16-s19}}
    vldmia r0, {{s16-s19}}
    lsrs r12, r4, #1
    beq 2f
1:
    vldmia r1!, {{s14-s15}}
    vldmia r2, {{s0-s1}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vcvtb.f32.f16 s10, s1
    vmla.f32 s16, s8, s14
    vcvtt.f32.f16 s11, s1
    vmla.f32 s17, s9, s14
    vmla.f32 s18, s10, s14
    vmla.f32 s19, s11, s14
    vldmia r2, {{s0-s1}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vcvtb.f32.f16 s10, s1
    vmla.f32 s16, s8, s15
    vcvtt.f32.f16 s11, s1
    vmla.f32 s17, s9, s15
    vmla.f32 s18, s10, s15
    vmla.f32 s19, s11, s15
    subs r12, r12, #1
    bne 1b
2:
    tst r4, #1
    beq 3f
    vldmia r1!, {{s15}}
    vldmia r2, {{s0-s1}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vcvtb.f32.f16 s10, s1
    vmla.f32 s16, s8, s15
    vcvtt.f32.f16 s11, s1
    vmla.f32 s17, s9, s15
    vmla.f32 s18, s10, s15
    vmla.f32 s19, s11, s15
3:
    vstmia r0, {{s16-s19}}
    vpop {{s16-s19}}
    pop {{r4, pc}}
    .size tinypoet_f16_axpy4, . - tinypoet_f16_axpy4

    .section .text.tinypoet_f16_axpy2,"ax",%progbits
    .global tinypoet_f16_axpy2
    .type tinypoet_f16_axpy2,%function
    .thumb_func
    .p2align 2
tinypoet_f16_axpy2:
    push {{r4, lr}}
    ldr r4, [sp, #8]
    vpush {{s16-s17}}
    vldmia r0, {{s16-s17}}
    lsrs r12, r4, #1
    beq 2f
1:
    vldmia r1!, {{s14-s15}}
    vldmia r2, {{s0}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vmla.f32 s16, s8, s14
    vmla.f32 s17, s9, s14
    vldmia r2, {{s0}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vmla.f32 s16, s8, s15
    vmla.f32 s17, s9, s15
    subs r12, r12, #1
    bne 1b
2:
    tst r4, #1
    beq 3f
    vldmia r1!, {{s15}}
    vldmia r2, {{s0}}
    add r2, r2, r3
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vmla.f32 s16, s8, s15
    vmla.f32 s17, s9, s15
3:
    vstmia r0, {{s16-s17}}
    vpop {{s16-s17}}
    pop {{r4, pc}}
    .size tinypoet_f16_axpy2, . - tinypoet_f16_axpy2

    .section .text.tinypoet_f16_axpy1,"ax",%progbits
    .global tinypoet_f16_axpy1
    .type tinypoet_f16_axpy1,%function
    .thumb_func
    .p2align 2
tinypoet_f16_axpy1:
    push {{r4, lr}}
    ldr r4, [sp, #8]
    vpush {{s16}}
    vldmia r0, {{s16}}
    cmp r4, #0
    beq 2f
1:
    vldmia r1!, {{s15}}
    ldrh r12, [r2]
    add r2, r2, r3
    vmov s0, r12
    vcvtb.f32.f16 s8, s0
    vmla.f32 s16, s8, s15
    subs r4, r4, #1
    bne 1b
2:
    vstmia r0, {{s16}}
    vpop {{s16}}
    pop {{r4, pc}}
    .size tinypoet_f16_axpy1, . - tinypoet_f16_axpy1

    .section .text.tinypoet_f16_to_f32_16,"ax",%progbits
    .global tinypoet_f16_to_f32_16
    .type tinypoet_f16_to_f32_16,%function
    .thumb_func
    .p2align 2
tinypoet_f16_to_f32_16:
    cmp r2, #0
    beq 2f
    vpush {{s16-s23}}
1:
    vldmia r1!, {{s0-s7}}
    vcvtb.f32.f16 s8, s0
    vcvtt.f32.f16 s9, s0
    vcvtb.f32.f16 s10, s1
    vcvtt.f32.f16 s11, s1
    vcvtb.f32.f16 s12, s2
    vcvtt.f32.f16 s13, s2
    vcvtb.f32.f16 s14, s3
    vcvtt.f32.f16 s15, s3
    vcvtb.f32.f16 s16, s4
    vcvtt.f32.f16 s17, s4
    vcvtb.f32.f16 s18, s5
    vcvtt.f32.f16 s19, s5
    vcvtb.f32.f16 s20, s6
    vcvtt.f32.f16 s21, s6
    vcvtb.f32.f16 s22, s7
    vcvtt.f32.f16 s23, s7
    vstmia r0!, {{s8-s23}}
    subs r2, r2, #1
    bne 1b
    vpop {{s16-s23}}
2:
    bx lr
    .size tinypoet_f16_to_f32_16, . - tinypoet_f16_to_f32_16

"#
    );

    extern "C" {
        fn tinypoet_f16_axpy16(y: *mut f32, x: *const f32, w: *const u8, sb: usize, n: usize);
        fn tinypoet_f16_axpy8(y: *mut f32, x: *const f32, w: *const u8, sb: usize, n: usize);
        fn tinypoet_f16_axpy4(y: *mut f32, x: *const f32, w: *const u8, sb: usize, n: usize);
        fn tinypoet_f16_axpy2(y: *mut f32, x: *const f32, w: *const u8, sb: usize, n: usize);
        fn tinypoet_f16_axpy1(y: *mut f32, x: *const f32, w: *const u8, sb: usize, n: usize);
        fn tinypoet_f16_to_f32_16(dst: *mut f32, src: *const u8, n_blocks: usize);
    }

    type Kernel = unsafe extern "C" fn(*mut f32, *const f32, *const u8, usize, usize);

    pub(super) fn matvec_f16(y: &mut [f32], x: &[f32], w: &[u8], stride: usize) {
        let (n_out, n_in) = (y.len(), x.len());
        if n_out == 0 || n_in == 0 {
            return;
        }
        // Re-check the caller's bounds guarantee (cheap, once per call) so this safe function
        // can never read outside `w`; on violation defer to the scalar path's behaviour.
        let fits = n_out <= stride
            && (n_in - 1)
                .checked_mul(stride)
                .and_then(|v| v.checked_add(n_out))
                .is_some_and(|need| need <= w.len() / 2);
        if !fits {
            return super::super::scalar::matvec_f16(y, x, w, stride);
        }
        let Some(stride_bytes) = stride.checked_mul(2) else {
            return super::super::scalar::matvec_f16(y, x, w, stride);
        };
        let aligned = (w.as_ptr() as usize) & 3 == 0 && stride & 1 == 0;
        let tiles: [(usize, Kernel); 4] = [
            (16, tinypoet_f16_axpy16),
            (8, tinypoet_f16_axpy8),
            (4, tinypoet_f16_axpy4),
            (2, tinypoet_f16_axpy2),
        ];
        let mut o = 0;
        if aligned {
            for (width, kernel) in tiles {
                while n_out - o >= width {
                    // SAFETY: columns o..o+width < n_out of rows 0..n_in are inside `w` (checked
                    // above); o is even and rows are 4-byte aligned, as vldmia requires; x has
                    // n_in elements; y[o..o+width] is in bounds.
                    unsafe {
                        kernel(
                            y.as_mut_ptr().add(o),
                            x.as_ptr(),
                            w.as_ptr().add(2 * o),
                            stride_bytes,
                            n_in,
                        )
                    };
                    o += width;
                }
            }
        }
        while o < n_out {
            // SAFETY: as above, one column; `ldrh` accepts any 2-byte aligned (indeed, on v7-M
            // and v8-M Mainline, any) address.
            unsafe {
                tinypoet_f16_axpy1(
                    y.as_mut_ptr().add(o),
                    x.as_ptr(),
                    w.as_ptr().add(2 * o),
                    stride_bytes,
                    n_in,
                )
            };
            o += 1;
        }
    }

    /// `src` holds exactly `2 * dst.len()` bytes.
    pub(super) fn f16_to_f32_slice(dst: &mut [f32], src: &[u8]) {
        let n = dst.len();
        let mut done = 0;
        if (src.as_ptr() as usize) & 3 == 0 {
            let blocks = n / 16;
            // SAFETY: `blocks * 16` halves are read from the 4-byte aligned `src` (2n bytes)
            // and as many f32 written to `dst` (n elements).
            unsafe { tinypoet_f16_to_f32_16(dst.as_mut_ptr(), src.as_ptr(), blocks) };
            done = blocks * 16;
        }
        super::super::scalar::f16_to_f32_slice(&mut dst[done..], &src[2 * done..]);
    }
}

#[cfg(all(target_abi = "eabihf", tinypoet_arm_dsp))]
mod dsp {
    use crate::blob::ScaleDtype;
    use crate::kernels::Q8Matrix;

    // `tinypoet_q8_matvec32[x2](y, xq, w, ws, n_out, n_groups)` (AAPCS: r0..r3, then the
    // stack): for o in 0..n_out, for g in 0..n_groups ascending:
    //     y[o] = y[o] + (isum(o, g) as f32) * (ws[o][g] * xs[g])
    // with isum the exact i32 dot product of 32 weights (i8, w row-major) and 32 activations
    // (xq: per group 16 words of i16 pairs in the order SXTB16 unpacks a weight word, then the
    // group's f32 scale), ws f16. Per 8 products: one LDM of 4 activation words, one LDM of 2
    // weight words, 4 SXTB16 (bytes 0,2 and, rotated by 8, bytes 1,3 of a word, sign-extended
    // to two i16) and 4 SMLAD (two 16x16 products added to the i32 sum); 40 instructions per
    // group of 32. Then VCVT of the sum (exact: |isum| < 2^24), VCVTB/VCVTT of the f16 weight
    // scale, VMUL by the activation scale and VMLA into the output (rounded product, then
    // add: the scalar `s = ws * xs; p = isum * s; acc += p`). The x2 variant handles the groups
    // two at a time with one LDR for both weight scales (n_groups even, scales 4-byte aligned).
    // `tinypoet_q8_matvec64r2(y, xq, w, ws, n_pairs)`, for rows of exactly 64 inputs (the LM
    // head and every Linear layer fed by the residual stream), runs two rows per pass so each
    // activation load serves both (19 instructions per 16 multiply-adds instead of 20, and the
    // per-row overhead shared); same operations per output in the same order.
    // Registers: r4-r7 activations, r8-r9 weights, r10 scratch, r11 sum, r12 groups left, lr
    // outputs left, s8/s9 the activation base and group count per output.
    // `.arch`/`.fpu`: the crate's module-level assembly is assembled without the target's
    // features; these are Armv7E-M + FPv4-SP instructions (also in Armv8-M with DSP + FPv5).
    // The text is generated by firmware-example/tools/gen_cortex_m_asm.py (`--part q8`).
    core::arch::global_asm!(
        r#"
    .arch armv7e-m
    .fpu fpv4-sp-d16
    .section .text.tinypoet_q8_matvec32x2,"ax",%progbits
    .global tinypoet_q8_matvec32x2
    .type tinypoet_q8_matvec32x2,%function
    .thumb_func
    .p2align 2
tinypoet_q8_matvec32x2:
    push {{r4-r11, lr}}
    ldr lr, [sp, #36]
    ldr r12, [sp, #40]
    lsrs r12, r12, #1
    vmov s8, r1
    vmov s9, r12
1:
    vldr s0, [r0]
    vmov r1, s8
    vmov r12, s9
2:
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smuad r11, r10, r4
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smlad r11, r10, r4, r11
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smlad r11, r10, r4, r11
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smlad r11, r10, r4, r11
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    vmov s1, r11
    vldmia r1!, {{s3}}
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smuad r11, r10, r4
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smlad r11, r10, r4, r11
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smlad r11, r10, r4, r11
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smlad r11, r10, r4, r11
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    vmov s4, r11
    vldmia r1!, {{s7}}
    ldr r10, [r3], #4
    vmov s2, r10
    vcvtb.f32.f16 s5, s2
    vcvtt.f32.f16 s6, s2
    vcvt.f32.s32 s1, s1
    vcvt.f32.s32 s4, s4
    vmul.f32 s5, s5, s3
    vmul.f32 s6, s6, s7
    vmla.f32 s0, s1, s5
    vmla.f32 s0, s4, s6
    subs r12, r12, #1
    bne 2b
    vstmia r0!, {{s0}}
    subs lr, lr, #1
    bne 1b
    pop {{r4-r11, pc}}
    .size tinypoet_q8_matvec32x2, . - tinypoet_q8_matvec32x2

    .section .text.tinypoet_q8_matvec32,"ax",%progbits
    .global tinypoet_q8_matvec32
    .type tinypoet_q8_matvec32,%function
    .thumb_func
    .p2align 2
tinypoet_q8_matvec32:
    push {{r4-r11, lr}}
    ldr lr, [sp, #36]
    ldr r12, [sp, #40]
    vmov s8, r1
    vmov s9, r12
1:
    vldr s0, [r0]
    vmov r1, s8
    vmov r12, s9
2:
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smuad r11, r10, r4
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smlad r11, r10, r4, r11
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smlad r11, r10, r4, r11
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    sxtb16 r10, r8
    sxtb16 r8, r8, ror #8
    smlad r11, r10, r4, r11
    smlad r11, r8, r5, r11
    sxtb16 r10, r9
    sxtb16 r9, r9, ror #8
    smlad r11, r10, r6, r11
    smlad r11, r9, r7, r11
    vmov s1, r11
    vldmia r1!, {{s3}}
    ldrh r10, [r3], #2
    vmov s2, r10
    vcvtb.f32.f16 s2, s2
    vcvt.f32.s32 s1, s1
    vmul.f32 s2, s2, s3
    vmla.f32 s0, s1, s2
    subs r12, r12, #1
    bne 2b
    vstmia r0!, {{s0}}
    subs lr, lr, #1
    bne 1b
    pop {{r4-r11, pc}}
    .size tinypoet_q8_matvec32, . - tinypoet_q8_matvec32

    .section .text.tinypoet_q8_matvec64r2,"ax",%progbits
    .global tinypoet_q8_matvec64r2
    .type tinypoet_q8_matvec64r2,%function
    .thumb_func
    .p2align 2
tinypoet_q8_matvec64r2:
    push {{r4-r11, lr}}
    ldr r12, [sp, #36]
    vmov s8, r1
    vmov s9, r12
    vmov s10, r3
1:
    vldmia r0, {{s0-s1}}
    vmov r1, s8
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    ldrd r10, r11, [r2, #56]
    sxtb16 r12, r8
    sxtb16 r8, r8, ror #8
    smuad lr, r12, r4
    smlad lr, r8, r5, lr
    sxtb16 r12, r9
    sxtb16 r9, r9, ror #8
    smlad lr, r12, r6, lr
    smlad lr, r9, r7, lr
    sxtb16 r12, r10
    sxtb16 r10, r10, ror #8
    smuad r3, r12, r4
    smlad r3, r10, r5, r3
    sxtb16 r12, r11
    sxtb16 r11, r11, ror #8
    smlad r3, r12, r6, r3
    smlad r3, r11, r7, r3
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    ldrd r10, r11, [r2, #56]
    sxtb16 r12, r8
    sxtb16 r8, r8, ror #8
    smlad lr, r12, r4, lr
    smlad lr, r8, r5, lr
    sxtb16 r12, r9
    sxtb16 r9, r9, ror #8
    smlad lr, r12, r6, lr
    smlad lr, r9, r7, lr
    sxtb16 r12, r10
    sxtb16 r10, r10, ror #8
    smlad r3, r12, r4, r3
    smlad r3, r10, r5, r3
    sxtb16 r12, r11
    sxtb16 r11, r11, ror #8
    smlad r3, r12, r6, r3
    smlad r3, r11, r7, r3
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    ldrd r10, r11, [r2, #56]
    sxtb16 r12, r8
    sxtb16 r8, r8, ror #8
    smlad lr, r12, r4, lr
    smlad lr, r8, r5, lr
    sxtb16 r12, r9
    sxtb16 r9, r9, ror #8
    smlad lr, r12, r6, lr
    smlad lr, r9, r7, lr
    sxtb16 r12, r10
    sxtb16 r10, r10, ror #8
    smlad r3, r12, r4, r3
    smlad r3, r10, r5, r3
    sxtb16 r12, r11
    sxtb16 r11, r11, ror #8
    smlad r3, r12, r6, r3
    smlad r3, r11, r7, r3
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    ldrd r10, r11, [r2, #56]
    sxtb16 r12, r8
    sxtb16 r8, r8, ror #8
    smlad lr, r12, r4, lr
    smlad lr, r8, r5, lr
    sxtb16 r12, r9
    sxtb16 r9, r9, ror #8
    smlad lr, r12, r6, lr
    smlad lr, r9, r7, lr
    sxtb16 r12, r10
    sxtb16 r10, r10, ror #8
    smlad r3, r12, r4, r3
    smlad r3, r10, r5, r3
    sxtb16 r12, r11
    sxtb16 r11, r11, ror #8
    smlad r3, r12, r6, r3
    smlad r3, r11, r7, r3
    vmov s2, lr
    vmov s3, r3
    vldmia r1!, {{s4}}
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    ldrd r10, r11, [r2, #56]
    sxtb16 r12, r8
    sxtb16 r8, r8, ror #8
    smuad lr, r12, r4
    smlad lr, r8, r5, lr
    sxtb16 r12, r9
    sxtb16 r9, r9, ror #8
    smlad lr, r12, r6, lr
    smlad lr, r9, r7, lr
    sxtb16 r12, r10
    sxtb16 r10, r10, ror #8
    smuad r3, r12, r4
    smlad r3, r10, r5, r3
    sxtb16 r12, r11
    sxtb16 r11, r11, ror #8
    smlad r3, r12, r6, r3
    smlad r3, r11, r7, r3
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    ldrd r10, r11, [r2, #56]
    sxtb16 r12, r8
    sxtb16 r8, r8, ror #8
    smlad lr, r12, r4, lr
    smlad lr, r8, r5, lr
    sxtb16 r12, r9
    sxtb16 r9, r9, ror #8
    smlad lr, r12, r6, lr
    smlad lr, r9, r7, lr
    sxtb16 r12, r10
    sxtb16 r10, r10, ror #8
    smlad r3, r12, r4, r3
    smlad r3, r10, r5, r3
    sxtb16 r12, r11
    sxtb16 r11, r11, ror #8
    smlad r3, r12, r6, r3
    smlad r3, r11, r7, r3
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    ldrd r10, r11, [r2, #56]
    sxtb16 r12, r8
    sxtb16 r8, r8, ror #8
    smlad lr, r12, r4, lr
    smlad lr, r8, r5, lr
    sxtb16 r12, r9
    sxtb16 r9, r9, ror #8
    smlad lr, r12, r6, lr
    smlad lr, r9, r7, lr
    sxtb16 r12, r10
    sxtb16 r10, r10, ror #8
    smlad r3, r12, r4, r3
    smlad r3, r10, r5, r3
    sxtb16 r12, r11
    sxtb16 r11, r11, ror #8
    smlad r3, r12, r6, r3
    smlad r3, r11, r7, r3
    ldm r1!, {{r4-r7}}
    ldm r2!, {{r8, r9}}
    ldrd r10, r11, [r2, #56]
    sxtb16 r12, r8
    sxtb16 r8, r8, ror #8
    smlad lr, r12, r4, lr
    smlad lr, r8, r5, lr
    sxtb16 r12, r9
    sxtb16 r9, r9, ror #8
    smlad lr, r12, r6, lr
    smlad lr, r9, r7, lr
    sxtb16 r12, r10
    sxtb16 r10, r10, ror #8
    smlad r3, r12, r4, r3
    smlad r3, r10, r5, r3
    sxtb16 r12, r11
    sxtb16 r11, r11, ror #8
    smlad r3, r12, r6, r3
    smlad r3, r11, r7, r3
    vmov s5, lr
    vmov s6, r3
    vldmia r1!, {{s7}}
    vmov r3, s10
    ldrd r8, r9, [r3], #8
    vmov s10, r3
    vmov s11, r8
    vmov s12, r9
    vcvtb.f32.f16 s13, s11
    vcvtt.f32.f16 s14, s11
    vcvtb.f32.f16 s15, s12
    vcvtt.f32.f16 s12, s12
    vmul.f32 s13, s13, s4
    vmul.f32 s14, s14, s7
    vmul.f32 s15, s15, s4
    vmul.f32 s12, s12, s7
    vcvt.f32.s32 s2, s2
    vcvt.f32.s32 s5, s5
    vcvt.f32.s32 s3, s3
    vcvt.f32.s32 s6, s6
    vmla.f32 s0, s2, s13
    vmla.f32 s0, s5, s14
    vmla.f32 s1, s3, s15
    vmla.f32 s1, s6, s12
    vstmia r0!, {{s0-s1}}
    add r2, r2, #64
    vmov r12, s9
    subs r12, r12, #1
    vmov s9, r12
    bne 1b
    pop {{r4-r11, pc}}
    .size tinypoet_q8_matvec64r2, . - tinypoet_q8_matvec64r2

"#
    );

    extern "C" {
        fn tinypoet_q8_matvec32x2(
            y: *mut f32,
            xq: *const f32,
            w: *const u8,
            ws: *const u8,
            n_out: usize,
            n_groups: usize,
        );
        fn tinypoet_q8_matvec32(
            y: *mut f32,
            xq: *const f32,
            w: *const u8,
            ws: *const u8,
            n_out: usize,
            n_groups: usize,
        );
        fn tinypoet_q8_matvec64r2(
            y: *mut f32,
            xq: *const f32,
            w: *const u8,
            ws: *const u8,
            n_pairs: usize,
        );
    }

    pub(super) fn matvec_q8(y: &mut [f32], xq: &[f32], w: &Q8Matrix) {
        let (n_out, n_in) = (y.len(), w.n_in());
        let groups = n_in / 32;
        let (values, scales) = (w.values(), w.scales());
        // Re-check everything the assembly relies on (cheap, once per call); otherwise the
        // portable body, which gives the same bits.
        let ok = w.group() == 32
            && w.scale_dtype() == ScaleDtype::F16
            && n_out > 0
            && groups > 0
            && n_out <= w.rows()
            && values.len() >= n_out * n_in
            && scales.len() >= 2 * n_out * groups
            && xq.len() >= super::super::q8_act_words(n_in, 32)
            && (values.as_ptr() as usize) & 3 == 0
            && (xq.as_ptr() as usize) & 3 == 0;
        if !ok {
            return super::super::scalar::matvec_q8(y, xq, w);
        }
        let scales_aligned = (scales.as_ptr() as usize) & 3 == 0;
        let mut done = 0;
        if n_in == 64 && scales_aligned && n_out >= 2 {
            // SAFETY: rows 0..2*(n_out/2) of 64 bytes and their 2 scales each are in bounds
            // (checked above), rows and scales word aligned (LDM/LDRD); `xq` holds 2 groups of
            // 17 words; `y` has at least 2*(n_out/2) elements; n_out/2 >= 1.
            unsafe {
                tinypoet_q8_matvec64r2(
                    y.as_mut_ptr(),
                    xq.as_ptr(),
                    values.as_ptr(),
                    scales.as_ptr(),
                    n_out / 2,
                )
            };
            done = n_out - n_out % 2;
            if done == n_out {
                return;
            }
        }
        let pairs = groups % 2 == 0 && scales_aligned;
        let kernel = if pairs {
            tinypoet_q8_matvec32x2
        } else {
            tinypoet_q8_matvec32
        };
        // SAFETY: rows done..n_out of `values` (n_in bytes each, 4-byte aligned rows since n_in
        // is a multiple of 32 and the base is aligned: LDM needs word alignment) and their
        // `groups` scales each are in bounds (checked above); `xq` holds `groups` groups of
        // 17 words, word aligned; `y` has n_out elements; groups >= 1 and n_out - done >= 1
        // (the loops count down to zero); the x2 variant gets an even group count and an
        // aligned scale pointer (row offsets of 2 * groups bytes keep it aligned).
        unsafe {
            kernel(
                y.as_mut_ptr().add(done),
                xq.as_ptr(),
                values.as_ptr().add(done * n_in),
                scales.as_ptr().add(done * 2 * groups),
                n_out - done,
                groups,
            )
        };
    }
}
