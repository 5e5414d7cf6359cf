//! No allocation inside the step loop (issue 5), checked with a counting global allocator: after
//! warm-up, training steps (batch fetch into preallocated buffers, forward, backward, gradient
//! clipping, AdamW) and evaluation forwards perform zero heap allocations — counted on every
//! thread (the calling thread and the rayon workers), GEMM packing included: every buffer a step
//! touches is allocated once, up front.
//!
//! The real 64-dim config at 9×128 (1,152 rows: nine LM-head tiles over four vocabulary parts,
//! two weight-gradient partials), 2 threads, with the AVX-512 kernels (where the CPU has them)
//! and again with the portable ones.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tinypoet_trainer::nn::adamw::{clip_grad_norm, AdamW, AdamWConfig};
use tinypoet_trainer::nn::init::{init_params, InitScheme};
use tinypoet_trainer::nn::model::TrainModel;
use tinypoet_trainer::nn::mt19937::Mt19937;
use tinypoet_trainer::nn::ops::gemm::set_portable_only;
use tinypoet_trainer::nn::params::{Config, Params};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

fn count(bytes: usize) {
    ALLOCS.fetch_add(1, Ordering::SeqCst);
    BYTES.fetch_add(bytes, Ordering::SeqCst);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count(n);
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (count, bytes) of each of `steps` steps after `warmup` steps.
fn allocations_per_step(portable: bool, warmup: usize, steps: usize) -> Vec<(usize, usize)> {
    let cfg = Config::TANG;
    let (b, t) = (9, 128);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut p = init_params(&cfg, 1, InitScheme::Fast);
    let mut g = Params::zeros(&cfg);
    let mut opt = AdamW::new(p.data.len(), AdamWConfig::default());
    let mut model = TrainModel::new(&cfg, b, t).unwrap();
    let data: Vec<u16> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) % 8548) as u16)
        .collect();
    let mut rng = Mt19937::init_genrand(3);
    let (mut x, mut y) = (vec![0u16; b * t], vec![0u16; b * t]);
    set_portable_only(portable);
    let counts = pool.install(|| {
        let mut step = || {
            let before = (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst));
            for s in 0..b {
                let o = rng.torch_randint((data.len() - t) as u32) as usize;
                x[s * t..(s + 1) * t].copy_from_slice(&data[o..o + t]);
                y[s * t..(s + 1) * t].copy_from_slice(&data[o + 1..o + t + 1]);
            }
            let loss = model.forward_backward(&p, &mut g, &x, &y, b, t).unwrap();
            clip_grad_norm(&mut g.data, 1.0);
            opt.step(&mut p.data, &g.data, 1e-3);
            let eval = model.forward_loss(&p, &x, &y, b, t).unwrap();
            let after = (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst));
            assert!(loss.is_finite() && eval.is_finite());
            (after.0 - before.0, after.1 - before.1)
        };
        // Warm-up: the rayon workers start lazily.
        for _ in 0..warmup {
            step();
        }
        (0..steps).map(|_| step()).collect::<Vec<_>>()
    });
    set_portable_only(false);
    counts
}

#[test]
fn training_and_eval_steps_do_not_allocate() {
    for portable in [false, true] {
        let counts = allocations_per_step(portable, 2, 4);
        eprintln!(
            "{} kernels: allocations (count, bytes) per step after warm-up: {counts:?}",
            if portable { "portable" } else { "default" }
        );
        assert_eq!(
            counts,
            vec![(0, 0); 4],
            "heap allocations per training + evaluation step ({} kernels)",
            if portable { "portable" } else { "default" }
        );
    }
}
