#!/usr/bin/env python3
"""Prints the global_asm! text of core/src/kernels/cortex_m.rs (the f16 mat-vec tiles and the
f16 -> f32 conversion). Braces are doubled for the Rust asm template.

Usage: python3 tools/gen_cortex_m_asm.py > /tmp/asm.s, then paste between `.fpu` and `"#`.
"""
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
    A(f'    .section .text.{name},"ax",%progbits')
    A(f'    .global {name}')
    A(f'    .type {name},%function')
    A('    .thumb_func')
    A('    .p2align 2')
    A(f'{name}:')
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
    A(f'    .section .text.{name},"ax",%progbits')
    A(f'    .global {name}')
    A(f'    .type {name},%function')
    A('    .thumb_func')
    A('    .p2align 2')
    A(f'{name}:')
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

print('\n\n'.join([kernel(W) for W in (16, 8, 4, 2, 1)] + [convert()]))
