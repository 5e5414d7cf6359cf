#!/usr/bin/env python3
"""Prints the global_asm! text of core/src/kernels/cortex_m.rs (the f16 mat-vec tiles, the
f16 -> f32 conversion and the int8 SXTB16/SMLAD mat-vec). Braces are doubled for the Rust asm
template.

Usage: python3 core/tools/gen_cortex_m_asm.py --part f16|q8 > /tmp/asm.s, then paste between the
block's `.fpu` line and `"#`; `python3 core/tools/gen_cortex_m_asm.py --check` exits 1 unless
cortex_m.rs holds both parts.
"""
import sys

def function_start(name, L):
    """A global Thumb function `name` in its own section (so the linker can drop it unused)."""
    A = L.append
    A(f'    .section .text.{name},"ax",%progbits')
    A(f'    .global {name}')
    A(f'    .type {name},%function')
    A('    .thumb_func')
    A('    .p2align 2')
    A(f'{name}:')

def dot4(L, acc, tmp, w, xa, xb, first):
    """acc (+)= the dot product of the 4 i8 weights in `w` with the 4 i16 activations in the
    pairs xa = (x0, x2), xb = (x1, x3): SXTB16 splits w into (w0, w2) in `tmp` and (w1, w3) in
    `w` (clobbered), two SMLADs add both pairs (the first of a sum starts it with SMUAD)."""
    A = L.append
    A(f'    sxtb16 {tmp}, {w}')          # (w0, w2)
    A(f'    sxtb16 {w}, {w}, ror #8')    # (w1, w3)
    if first:
        A(f'    smuad {acc}, {tmp}, {xa}')
    else:
        A(f'    smlad {acc}, {tmp}, {xa}, {acc}')
    A(f'    smlad {acc}, {w}, {xb}, {acc}')

def body(W, xreg, L):
    A = L.append
    words = W // 2
    A(f'    vldmia r2, {{{{s0-s{words-1}}}}}' if words > 1 else '    vldmia r2, {{s0}}')
    A('    add r2, r2, r3')
    temps = [8, 9, 10, 11, 12, 13]
    pend = []
    for o in range(W):
        t = temps[o % len(temps)]
        A(f"    vcvt{'b' if o % 2 == 0 else 't'}.f32.f16 s{t}, s{o // 2}")
        pend.append((16 + o, t))
        if len(pend) >= 3:
            a, t2 = pend.pop(0)
            A(f'    vmla.f32 s{a}, s{t2}, {xreg}')
    for a, t2 in pend:
        A(f'    vmla.f32 s{a}, s{t2}, {xreg}')

def kernel(W):
    L = []
    A = L.append
    name = f"tinypoet_f16_axpy{W}"
    function_start(name, L)
    A('    push {{r4, lr}}')
    A('    ldr r4, [sp, #8]')              # n_in (5th argument, above the 2 pushed words)
    regs = 's16' if W == 1 else f's16-s{16 + W - 1}'
    A(f'    vpush {{{{{regs}}}}}')
    A(f'    vldmia r0, {{{{{regs}}}}}')      # accumulators = y[o..o+W]
    if W == 1:
        A('    cmp r4, #0')
        A('    beq 2f')
        A('1:')
        A('    vldmia r1!, {{s15}}')
        A('    ldrh r12, [r2]')
        A('    add r2, r2, r3')
        A('    vmov s0, r12')
        A('    vcvtb.f32.f16 s8, s0')
        A('    vmla.f32 s16, s8, s15')
        A('    subs r4, r4, #1')
        A('    bne 1b')
        A('2:')
    else:
        # two rows per iteration (x[k], x[k+1] in s14, s15), then an odd last row
        A('    lsrs r12, r4, #1')
        A('    beq 2f')
        A('1:')
        A('    vldmia r1!, {{s14-s15}}')
        body(W, 's14', L)
        body(W, 's15', L)
        A('    subs r12, r12, #1')
        A('    bne 1b')
        A('2:')
        A('    tst r4, #1')
        A('    beq 3f')
        A('    vldmia r1!, {{s15}}')
        body(W, 's15', L)
        A('3:')
    A(f'    vstmia r0, {{{{{regs}}}}}')
    A(f'    vpop {{{{{regs}}}}}')
    A('    pop {{r4, pc}}')
    A(f'    .size {name}, . - {name}')
    return '\n'.join(L)

def convert():
    # tinypoet_f16_to_f32_16(dst, src, n_blocks): 16 values per block
    L = []
    A = L.append
    name = 'tinypoet_f16_to_f32_16'
    function_start(name, L)
    A('    cmp r2, #0')
    A('    beq 2f')
    A('    vpush {{s16-s23}}')
    A('1:')
    A('    vldmia r1!, {{s0-s7}}')
    for o in range(16):
        d = 8 + o  # s8..s23
        A(f"    vcvt{'b' if o % 2 == 0 else 't'}.f32.f16 s{d}, s{o // 2}")
    A('    vstmia r0!, {{s8-s23}}')
    A('    subs r2, r2, #1')
    A('    bne 1b')
    A('    vpop {{s16-s23}}')
    A('2:')
    A('    bx lr')
    A(f'    .size {name}, . - {name}')
    return '\n'.join(L)

def q8_group(L, first_smuad):
    """One group of 32: r1 -> 16 words of i16 pairs (0,2 | 1,3 order), r2 -> 32 i8 weights.
    The exact i32 dot product ends in r11. 4 x (2 loads, 4 SXTB16, 4 SMLAD) = 40 instructions."""
    A = L.append
    for block in range(4):
        A('    ldm r1!, {{r4-r7}}')          # x pairs: (x0,x2) (x1,x3) (x4,x6) (x5,x7)
        A('    ldm r2!, {{r8, r9}}')         # 8 weights
        for half, w in ((0, 'r8'), (1, 'r9')):
            xa, xb = ('r4', 'r5') if half == 0 else ('r6', 'r7')
            dot4(L, 'r11', 'r10', w, xa, xb, block == 0 and half == 0 and first_smuad)

def q8_kernel(pairs):
    """tinypoet_q8_matvec32[x2](y, xq, w, ws, n_out, n_groups): for o in 0..n_out, groups g
    ascending: y[o] = y[o] + (isum(o,g) as f32) * (ws[o][g] * xs[g]). Group 32, f16 weight scales.
    xq: per group 16 words of i16 pairs then the f32 scale. The x2 variant takes the groups two
    at a time (n_groups even, ws 4-byte aligned: one LDR for two scales); the float steps are
    the same operations in the same order (group g's multiply-add before group g+1's)."""
    L = []
    A = L.append
    name = 'tinypoet_q8_matvec32x2' if pairs else 'tinypoet_q8_matvec32'
    function_start(name, L)
    A('    push {{r4-r11, lr}}')
    A('    ldr lr, [sp, #36]')        # n_out (5th argument, above 9 pushed words)
    A('    ldr r12, [sp, #40]')       # n_groups
    if pairs:
        A('    lsrs r12, r12, #1')    # pairs of groups
    A('    vmov s8, r1')              # x base
    A('    vmov s9, r12')             # groups (or pairs) per output
    A('1:')
    A('    vldr s0, [r0]')            # acc = y[o]
    A('    vmov r1, s8')
    A('    vmov r12, s9')
    A('2:')
    if pairs:
        q8_group(L, True)
        A('    vmov s1, r11')         # isum of group g
        A('    vldmia r1!, {{s3}}')   # xs[g]
        q8_group(L, True)
        A('    vmov s4, r11')         # isum of group g+1
        A('    vldmia r1!, {{s7}}')   # xs[g+1]
        A('    ldr r10, [r3], #4')    # ws[o][g], ws[o][g+1] (f16)
        A('    vmov s2, r10')
        A('    vcvtb.f32.f16 s5, s2')
        A('    vcvtt.f32.f16 s6, s2')
        A('    vcvt.f32.s32 s1, s1')  # exact: |isum| < 2^24
        A('    vcvt.f32.s32 s4, s4')
        A('    vmul.f32 s5, s5, s3')  # ws * xs
        A('    vmul.f32 s6, s6, s7')
        A('    vmla.f32 s0, s1, s5')  # acc + isum * (ws * xs): product rounded, then added
        A('    vmla.f32 s0, s4, s6')
    else:
        q8_group(L, True)
        A('    vmov s1, r11')
        A('    vldmia r1!, {{s3}}')
        A('    ldrh r10, [r3], #2')
        A('    vmov s2, r10')
        A('    vcvtb.f32.f16 s2, s2')
        A('    vcvt.f32.s32 s1, s1')
        A('    vmul.f32 s2, s2, s3')
        A('    vmla.f32 s0, s1, s2')
    A('    subs r12, r12, #1')
    A('    bne 2b')
    A('    vstmia r0!, {{s0}}')
    A('    subs lr, lr, #1')
    A('    bne 1b')
    A('    pop {{r4-r11, pc}}')
    A(f'    .size {name}, . - {name}')
    return '\n'.join(L)

def q8_kernel_2rows64():
    """tinypoet_q8_matvec64r2(y, xq, w, ws, n_pairs): rows of 64 inputs (2 groups of 32), two
    rows per pass so every activation load serves both: per 8 inputs one LDM of 4 activation
    words, LDM of row o's 2 weight words, LDRD of row o+1's (56 bytes further: r2 has already
    moved 8), 8 SXTB16, 8 SMLAD; 19 instructions per 16 multiply-adds. The float steps per
    output are the scalar ones in the scalar order (group 0, then group 1). ws: both rows'
    scale words with one LDRD (4-byte aligned). Registers: r4-r7 activations, r8-r9 row o,
    r10-r11 row o+1, r12 scratch, lr/r3 the two sums; s8 activation base, s9 pairs left,
    s10 the scale pointer."""
    L = []
    A = L.append
    name = 'tinypoet_q8_matvec64r2'
    function_start(name, L)
    A('    push {{r4-r11, lr}}')
    A('    ldr r12, [sp, #36]')       # n_pairs (5th argument)
    A('    vmov s8, r1')
    A('    vmov s9, r12')
    A('    vmov s10, r3')
    A('1:')
    A('    vldmia r0, {{s0-s1}}')     # acc = y[o], y[o+1]
    A('    vmov r1, s8')
    for g, (isum0, isum1, xs) in enumerate((('s2', 's3', 's4'), ('s5', 's6', 's7'))):
        for block in range(4):
            A('    ldm r1!, {{r4-r7}}')
            A('    ldm r2!, {{r8, r9}}')
            A('    ldrd r10, r11, [r2, #56]')
            for acc, (w0, w1) in (('lr', ('r8', 'r9')), ('r3', ('r10', 'r11'))):
                for half, w in enumerate((w0, w1)):
                    xa, xb = ('r4', 'r5') if half == 0 else ('r6', 'r7')
                    dot4(L, acc, 'r12', w, xa, xb, block == 0 and half == 0)
        A(f'    vmov {isum0}, lr')
        A(f'    vmov {isum1}, r3')
        A(f'    vldmia r1!, {{{{{xs}}}}}')
    A('    vmov r3, s10')
    A('    ldrd r8, r9, [r3], #8')    # ws row o (groups 0|1), row o+1
    A('    vmov s10, r3')
    A('    vmov s11, r8')
    A('    vmov s12, r9')
    A('    vcvtb.f32.f16 s13, s11')   # ws[o][0]
    A('    vcvtt.f32.f16 s14, s11')   # ws[o][1]
    A('    vcvtb.f32.f16 s15, s12')   # ws[o+1][0]
    A('    vcvtt.f32.f16 s12, s12')   # ws[o+1][1]
    A('    vmul.f32 s13, s13, s4')    # * xs[0]
    A('    vmul.f32 s14, s14, s7')    # * xs[1]
    A('    vmul.f32 s15, s15, s4')
    A('    vmul.f32 s12, s12, s7')
    A('    vcvt.f32.s32 s2, s2')
    A('    vcvt.f32.s32 s5, s5')
    A('    vcvt.f32.s32 s3, s3')
    A('    vcvt.f32.s32 s6, s6')
    A('    vmla.f32 s0, s2, s13')     # y[o]: group 0, then group 1
    A('    vmla.f32 s0, s5, s14')
    A('    vmla.f32 s1, s3, s15')     # y[o+1]
    A('    vmla.f32 s1, s6, s12')
    A('    vstmia r0!, {{s0-s1}}')
    A('    add r2, r2, #64')          # skip row o+1 (already read)
    A('    vmov r12, s9')
    A('    subs r12, r12, #1')
    A('    vmov s9, r12')
    A('    bne 1b')
    A('    pop {{r4-r11, pc}}')
    A(f'    .size {name}, . - {name}')
    return '\n'.join(L)

# Two global_asm! blocks: the f16 kernels (every eabihf Cortex-M) and the int8 kernels (only
# where the DSP extension exists: cfg(tinypoet_arm_dsp), set by core/build.rs).
parts = {
    'f16': '\n\n'.join([kernel(W) for W in (16, 8, 4, 2, 1)] + [convert()]),
    'q8': '\n\n'.join([q8_kernel(True), q8_kernel(False), q8_kernel_2rows64()]),
}
if len(sys.argv) > 1 and sys.argv[1] == '--check':
    import os
    rs = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '../src/kernels/cortex_m.rs')).read()
    bad = [k for k, t in parts.items() if t not in rs]
    if bad:
        print(f'core/src/kernels/cortex_m.rs does not hold the generated {bad} assembly: regenerate it')
        sys.exit(1)
    print('cortex_m.rs: generated assembly up to date')
elif len(sys.argv) > 2 and sys.argv[1] == '--part':
    print(parts[sys.argv[2]])
else:
    print(parts['f16'])
    print()
    print('// ---- second global_asm! block (int8, DSP) ----')
    print()
    print(parts['q8'])
