//! No allocation inside the step loop (issue 5), checked with a counting global allocator: after
//! warm-up, training steps (batch fetch into preallocated buffers, forward, backward, gradient
//! clipping, AdamW) and evaluation forwards perform zero heap allocations of the trainer's own —
//! on the calling thread and on the rayon workers alike.
//!
//! Known exception, counted separately and bounded: the GEMM crate (`gemm`, like
//! `matrixmultiply`) allocates its packing scratch inside every call and offers no way to pass
//! it in. Those allocations are recognised with `ops::inside_gemm()`; the test requires them to be
//! small (no activation-sized buffer) and the same number every step.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tinypoet_trainer::adamw::{clip_grad_norm, AdamW, AdamWConfig};
use tinypoet_trainer::init::{init_params, InitScheme};
use tinypoet_trainer::model::TrainModel;
use tinypoet_trainer::mt19937::Mt19937;
use tinypoet_trainer::params::{Config, Params};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static GEMM_ALLOCS: AtomicUsize = AtomicUsize::new(0);
static GEMM_MAX_BYTES: AtomicUsize = AtomicUsize::new(0);

fn count(bytes: usize) {
    if tinypoet_trainer::ops::inside_gemm() {
        GEMM_ALLOCS.fetch_add(1, Ordering::SeqCst);
        GEMM_MAX_BYTES.fetch_max(bytes, Ordering::SeqCst);
    } else {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
    }
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

#[test]
fn training_and_eval_steps_do_not_allocate() {
    let cfg = Config::TANG;
    let (b, t) = (4, 256);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut p = init_params(&cfg, 1, InitScheme::Fast);
    let mut g = Params::zeros(&cfg);
    let mut opt = AdamW::new(p.data.len(), AdamWConfig::default());
    let mut model = TrainModel::new(&cfg, b, t);
    let data: Vec<u16> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) % 8548) as u16)
        .collect();
    let mut rng = Mt19937::init_genrand(3);
    let (mut x, mut y) = (vec![0u16; b * t], vec![0u16; b * t]);
    let counts = pool.install(|| {
        let mut step = || {
            let before = (
                ALLOCS.load(Ordering::SeqCst),
                GEMM_ALLOCS.load(Ordering::SeqCst),
            );
            for s in 0..b {
                let o = rng.torch_randint((data.len() - t) as u32) as usize;
                x[s * t..(s + 1) * t].copy_from_slice(&data[o..o + t]);
                y[s * t..(s + 1) * t].copy_from_slice(&data[o + 1..o + t + 1]);
            }
            let loss = model.forward_backward(&p, &mut g, &x, &y, b, t);
            assert!(loss.is_finite());
            clip_grad_norm(&mut g.data, 1.0);
            opt.step(&mut p.data, &g.data, 1e-3);
            let eval = model.forward_loss(&p, &x, &y, b, t);
            assert!(eval.is_finite());
            (
                ALLOCS.load(Ordering::SeqCst) - before.0,
                GEMM_ALLOCS.load(Ordering::SeqCst) - before.1,
            )
        };
        // Warm-up: rayon workers and the GEMM's per-thread packing buffers come up lazily.
        for _ in 0..3 {
            step();
        }
        GEMM_MAX_BYTES.store(0, Ordering::SeqCst);
        (0..5).map(|_| step()).collect::<Vec<_>>()
    });
    let ours: Vec<usize> = counts.iter().map(|c| c.0).collect();
    let gemm: Vec<usize> = counts.iter().map(|c| c.1).collect();
    let gemm_max = GEMM_MAX_BYTES.load(Ordering::SeqCst);
    eprintln!("per step after warm-up: trainer allocations {ours:?}; GEMM-crate scratch allocations {gemm:?}, largest {gemm_max} bytes");
    assert_eq!(
        ours,
        vec![0; 5],
        "the trainer's own heap allocations per step after warm-up"
    );
    assert!(
        gemm.iter().all(|&g| g == gemm[0]),
        "GEMM scratch allocations vary between steps: {gemm:?}"
    );
    assert!(
        gemm_max <= 1 << 20,
        "a GEMM scratch allocation of {gemm_max} bytes"
    );
}
