//! `--resume` is bit-identical: 20 steps straight == 10 steps + save + resume + 10 steps, on a
//! small config and small generated data (never the real corpus).

use tinypoet_trainer::nn::adamw::Schedule;
use tinypoet_trainer::nn::params::ModelShape;
use tinypoet_trainer::run::checkpoint::{self, Checkpoint};
use tinypoet_trainer::run::metrics::MetricRow;
use tinypoet_trainer::run::options::TrainOptions;
use tinypoet_trainer::run::train_loop::{self, RunIo};
use tinypoet_trainer::stages::pretrain::{self, Start};

mod loop_common;
use loop_common::{corpus_ids, run_io, train_data};

fn options(steps: u64) -> TrainOptions {
    TrainOptions {
        model: ModelShape {
            dim: 16,
            n_heads: 2,
            n_layers: 2,
            context: 16,
            ffn_dim: 32,
        },
        lr: 3e-3,
        batch: 4,
        seq: 16,
        steps,
        eval_interval: 5,
        eval_batches: 3,
        checkpoint_every: 0,
        sample_prompt: "春夜".into(),
        sample_len: 12,
        grad_clip: Some(1.0),
        ..TrainOptions::default()
    }
}

fn io(dir: &std::path::Path) -> RunIo<'static> {
    run_io(dir, 2)
}

fn timeless(rows: &[MetricRow]) -> Vec<MetricRow> {
    rows.iter()
        .map(|r| MetricRow {
            train_time_s: 0.0,
            ..r.clone()
        })
        .collect()
}

fn assert_same_state(a: &Checkpoint, b: &Checkpoint) {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(a.meta.step, b.meta.step);
    assert_eq!(a.meta.adam_t, b.meta.adam_t);
    assert!(bits(&a.params) == bits(&b.params), "parameters differ");
    assert!(bits(&a.adam_m) == bits(&b.adam_m), "AdamW m differs");
    assert!(bits(&a.adam_v) == bits(&b.adam_v), "AdamW v differs");
    assert_eq!(a.meta.rng_state, b.meta.rng_state, "RNG state differs");
    assert_eq!(
        a.meta.train_loss_acc.to_bits(),
        b.meta.train_loss_acc.to_bits()
    );
    assert_eq!(a.meta.train_loss_count, b.meta.train_loss_count);
    assert_eq!(timeless(&a.meta.metrics), timeless(&b.meta.metrics));
    assert_eq!(a.meta.options, b.meta.options);
}

#[test]
fn twenty_steps_equal_ten_plus_resume_plus_ten_bit_for_bit() {
    let (vocab, ids) = corpus_ids();
    let data = train_data(&vocab, &ids, &"00".repeat(32));
    let straight = tempfile::tempdir().unwrap();
    let out =
        pretrain::train(&data, Start::Fresh(options(20)), &io(straight.path()), None).unwrap();
    assert_eq!(out.step, 20);
    let a = checkpoint::load(&out.checkpoint_path).unwrap();

    let split_dir = tempfile::tempdir().unwrap();
    let first = pretrain::train(
        &data,
        Start::Fresh(options(10)),
        &io(split_dir.path()),
        None,
    )
    .unwrap();
    assert_eq!(first.step, 10);
    let mid = checkpoint::load(&first.checkpoint_path).unwrap();
    assert_eq!(mid.meta.step, 10);
    let second = pretrain::train(
        &data,
        Start::Resume {
            checkpoint: Box::new(mid),
            steps: Some(20),
            checkpoint_every: None,
        },
        &io(split_dir.path()),
        None,
    )
    .unwrap();
    assert_eq!(second.step, 20);
    let b = checkpoint::load(&second.checkpoint_path).unwrap();

    // The 10-step run's final (peek) evaluation equals the straight run's in-loop one at 10.
    let peek = first.metrics.last().unwrap();
    let in_loop = a.meta.metrics.iter().find(|r| r.step == 10).unwrap();
    assert_eq!(peek.step, 10);
    assert_eq!(peek.eval_loss.to_bits(), in_loop.eval_loss.to_bits());
    assert_eq!(
        peek.eval_loss_reference.to_bits(),
        in_loop.eval_loss_reference.to_bits()
    );
    assert_eq!(peek.train_loss.to_bits(), in_loop.train_loss.to_bits());
    assert_eq!(peek.sample, in_loop.sample);

    // The straight run's options say 20 steps; the resumed one was started with 10 and extended.
    assert_same_state(&a, &b);
    // Training did something: the loss went down and every eval step was logged once.
    let steps: Vec<u64> = a.meta.metrics.iter().map(|r| r.step).collect();
    assert_eq!(steps, vec![0, 5, 10, 15, 20]);
    let first_eval = a.meta.metrics[0].eval_loss;
    let last_eval = a.meta.metrics.last().unwrap().eval_loss;
    assert!(last_eval < first_eval, "{first_eval} -> {last_eval}");
    // The metrics file of the resumed run holds the same rows as its checkpoint.
    let file_rows = tinypoet_trainer::run::metrics::read_jsonl(
        &split_dir.path().join(train_loop::METRICS_FILE),
    )
    .unwrap();
    // (JSON text: equal to the printed precision, not necessarily to the last bit.)
    assert_eq!(file_rows.len(), b.meta.metrics.len());
    for (f, c) in file_rows.iter().zip(&b.meta.metrics) {
        assert_eq!(f.step, c.step);
        assert!((f.eval_loss - c.eval_loss).abs() < 1e-12);
        assert!((f.train_loss - c.train_loss).abs() < 1e-12);
        assert_eq!(f.sample, c.sample);
    }
}

#[test]
fn the_thread_count_does_not_change_the_run() {
    let (vocab, ids) = corpus_ids();
    let data = train_data(&vocab, &ids, &"00".repeat(32));
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let a = pretrain::train(
        &data,
        Start::Fresh(options(12)),
        &run_io(one.path(), 1),
        None,
    )
    .unwrap();
    let b = pretrain::train(
        &data,
        Start::Fresh(options(12)),
        &run_io(two.path(), 3),
        None,
    )
    .unwrap();
    assert_same_state(
        &checkpoint::load(&a.checkpoint_path).unwrap(),
        &checkpoint::load(&b.checkpoint_path).unwrap(),
    );
}

#[test]
fn interrupt_then_resume_is_bit_identical_with_warmup_cosine() {
    let (vocab, ids) = corpus_ids();
    let data = train_data(&vocab, &ids, &"00".repeat(32));
    let opts = TrainOptions {
        schedule: Schedule::WarmupCosine {
            warmup_steps: 4,
            min_lr_ratio: 0.1,
        },
        ..options(16)
    };
    let straight = tempfile::tempdir().unwrap();
    let a = pretrain::train(
        &data,
        Start::Fresh(opts.clone()),
        &io(straight.path()),
        None,
    )
    .unwrap();

    // A pre-set interrupt flag (what the Ctrl-C handler sets) stops after the first step, with a
    // checkpoint; resuming runs the rest of the same 16-step schedule.
    let dir = tempfile::tempdir().unwrap();
    let flag = std::sync::atomic::AtomicBool::new(true);
    let stopped = pretrain::train(
        &data,
        Start::Fresh(opts),
        &RunIo {
            interrupt: Some(&flag),
            ..io(dir.path())
        },
        None,
    )
    .unwrap();
    assert!(stopped.interrupted);
    assert_eq!(stopped.step, 1);
    let mid = checkpoint::load(&stopped.checkpoint_path).unwrap();
    let b = pretrain::train(
        &data,
        Start::Resume {
            checkpoint: Box::new(mid),
            steps: None,
            checkpoint_every: None,
        },
        &io(dir.path()),
        None,
    )
    .unwrap();
    assert_eq!(b.step, 16);
    assert_same_state(
        &checkpoint::load(&a.checkpoint_path).unwrap(),
        &checkpoint::load(&b.checkpoint_path).unwrap(),
    );
}

/// `--stop-after 7` (the shared loop's stop, as in the stages) saves at step 7 between two
/// evaluations, with the train sums mid-interval, and resuming ends with the straight run's state.
#[test]
fn stop_after_then_resume_is_bit_identical() {
    let (vocab, ids) = corpus_ids();
    let data = train_data(&vocab, &ids, &"00".repeat(32));
    let straight = tempfile::tempdir().unwrap();
    let a = pretrain::train(&data, Start::Fresh(options(12)), &io(straight.path()), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stopped =
        pretrain::train(&data, Start::Fresh(options(12)), &io(dir.path()), Some(7)).unwrap();
    assert!(stopped.interrupted);
    assert_eq!(stopped.step, 7);
    let mid = checkpoint::load(&stopped.checkpoint_path).unwrap();
    assert_eq!((mid.meta.step, mid.meta.train_loss_count), (7, 2));
    let start = Start::Resume {
        checkpoint: Box::new(mid),
        steps: None,
        checkpoint_every: None,
    };
    let b = pretrain::train(&data, start, &io(dir.path()), None).unwrap();
    assert_eq!((b.step, b.interrupted), (12, false));
    assert_same_state(
        &checkpoint::load(&a.checkpoint_path).unwrap(),
        &checkpoint::load(&b.checkpoint_path).unwrap(),
    );
}
