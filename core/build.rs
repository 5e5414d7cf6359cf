//! Sets `cfg(tinypoet_arm_dsp)` for Arm targets whose CPUs always have the DSP extension
//! (SXTB16/SMLAD; the int8 Cortex-M kernel in `kernels/cortex_m.rs` needs them): every
//! `thumbv7em` target (Armv7E-M: Cortex-M4/M7). On Armv8-M Mainline (`thumbv8m.main`:
//! Cortex-M33/M35P/M55) the DSP extension is optional, so the int8 kernel is off unless the
//! build sets `TINYPOET_ARM_DSP=1` (e.g. for the RP2350's Cortex-M33, which has it);
//! `TINYPOET_ARM_DSP=0` turns it off everywhere. Without it int8 runs the portable kernel.
//! (Arm target features are not visible to `cfg(target_feature)` on stable Rust.)

fn main() {
    println!("cargo:rustc-check-cfg=cfg(tinypoet_arm_dsp)");
    println!("cargo:rerun-if-env-changed=TINYPOET_ARM_DSP");
    let target = std::env::var("TARGET").unwrap_or_default();
    let arm_m = target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main");
    let dsp = match std::env::var("TINYPOET_ARM_DSP").as_deref() {
        Ok("1") => arm_m,
        Ok("0") => false,
        _ => target.starts_with("thumbv7em"),
    };
    if dsp {
        println!("cargo:rustc-cfg=tinypoet_arm_dsp");
    }
}
