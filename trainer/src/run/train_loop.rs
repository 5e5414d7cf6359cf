//! The one training loop every stage runs on (spec §4): iteration order, the finite checks,
//! checkpoint cadence, Ctrl-C and `--stop-after`, the progress bar, `metrics.jsonl` and resume.
//! A stage ([`TrainStage`]: pretraining, finetune, align, in `stages/`) brings its batches, its
//! loss, its evaluation and log lines, and its checkpoint record.
//!
//! Per iteration `i` (0-based; "step i" = after `i` updates), in the reference's order:
//! 1. the stage fetches its batch, drawing from the run's torch-compatible MT19937 stream if it
//!    samples ([`TrainStage::loss_and_grad`]);
//! 2. forward and backward, in the same call (the gradient does not depend on what the
//!    evaluation hook does, because evaluation only reads the parameters);
//! 3. stop with an error if the loss or the gradient is not finite (nothing is saved from that
//!    state, the last good checkpoint stays as it is); then, if a checkpoint of step i is due
//!    (every `checkpoint_every` steps from the start, or a stop was asked for during the
//!    previous step), write it (`save_checked`): its parameters' loss was just checked
//!    finite, and their weights and moments are checked finite and within what a blob holds.
//!    The state saved is the one before this iteration's batch (the stream as it was before the
//!    draws), so a resume repeats iteration i exactly;
//! 4. if the stage's cadence says so ([`TrainStage::eval_due`]): its evaluation
//!    ([`TrainStage::evaluate`], which may draw from the same stream after this iteration's
//!    batch, like the reference) and a sample generated through `tinypoet-core`, printed in the
//!    stage's format with the mean train loss of the iterations since the previous evaluation
//!    (0 at the first); the sums restart after it, and where the stage says (a new epoch);
//! 5. optional gradient clipping, then the AdamW update with the stage's learning rate.
//!
//! A checkpoint is therefore never written from parameters nobody has computed a loss of (an
//! update with an absurd learning rate can leave inf or 1e30 weights whose loss is NaN). After
//! Ctrl-C (or once `--stop-after` updates are done) the loop finishes the update, computes the
//! next loss, saves, and stops. At the end a final evaluation is logged for step `total`; it
//! draws from a *copy* of the stream (skipping the draws of the batch that iteration `total`
//! would fetch first, [`TrainStage::skip_batch`], so the row equals an in-loop evaluation at that
//! step) and does not reset the train sums; the final checkpoint is written only if that
//! evaluation's loss is finite (and the weights pass the same checks). A run resumed from a
//! checkpoint is bit-identical to one that never stopped (a resumed run drops logged rows at or
//! after its start step and recomputes them).
//!
//! The step itself allocates nothing: batch buffers, activations, gradients and moments are
//! allocated once before the loop; evaluation and checkpoint steps may allocate.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::io::fsx::WritePoint;
use crate::nn::adamw::{clip_grad_norm, global_norm, AdamW, AdamWConfig};
use crate::nn::model::{ModelError, TrainModel};
use crate::nn::mt19937::Mt19937;
use crate::nn::params::{ConfigRecord, Params};
use crate::run::checkpoint::{self, Checkpoint, CheckpointMeta};
use crate::run::metrics::{MetricRow, MetricsLog};
use crate::run::options::TrainOptions;
use crate::run::stage_record::{Stage, StageState};

/// One iteration's train numbers (`margin`: the alignment loss's mean margin, else 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct StepLoss {
    pub loss: f64,
    pub margin: f64,
}

/// Sums of the train numbers since the last evaluation (the reference's `loss_sum`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrainSums {
    pub loss: f64,
    pub margin: f64,
    pub count: u64,
}

impl TrainSums {
    fn add(&mut self, l: StepLoss) {
        self.loss += l.loss;
        self.margin += l.margin;
        self.count += 1;
    }

    /// Mean loss and margin (0 before any).
    pub fn means(&self) -> (f64, f64) {
        match self.count {
            0 => (0.0, 0.0),
            n => (self.loss / n as f64, self.margin / n as f64),
        }
    }
}

/// The state every stage's run has: the weights being trained, the optimizer, the position,
/// the stream, the train sums and the clock (a stage adds its own).
pub struct RunState {
    pub params: Params,
    pub grads: Params,
    pub adam: AdamW,
    /// Completed updates (the next iteration to run).
    pub step: u64,
    /// The torch-compatible stream the batches and estimators draw from (a stage that draws
    /// nothing leaves it alone and does not save it).
    pub rng: Mt19937,
    pub sums: TrainSums,
    /// Training wall time so far, seconds (excluding evaluation).
    pub wall_time_s: f64,
}

impl RunState {
    /// A fresh run from `params`: step 0, a fresh AdamW (moments and t zero).
    pub fn fresh(params: Params, rng: Mt19937) -> RunState {
        let n = params.data.len();
        RunState {
            grads: Params::zeros(params.config()),
            adam: AdamW::new(n, AdamWConfig::default()),
            params,
            step: 0,
            rng,
            sums: TrainSums::default(),
            wall_time_s: 0.0,
        }
    }

    /// The state a checkpoint holds (its parameters already checked against `cfg` by the
    /// caller; the stage restores its own part).
    pub fn resumed(params: Params, ckpt_meta: &CheckpointMeta, m: Vec<f32>, v: Vec<f32>) -> Self {
        let mut st = RunState::fresh(params, Mt19937::init_genrand(0));
        st.adam.m = m;
        st.adam.v = v;
        st.adam.t = ckpt_meta.adam_t;
        st.step = ckpt_meta.step;
        st.sums = TrainSums {
            loss: ckpt_meta.train_loss_acc,
            margin: 0.0,
            count: ckpt_meta.train_loss_count,
        };
        st.wall_time_s = ckpt_meta.wall_time_s;
        st
    }

    /// This state as a checkpoint, with the stage's part.
    pub fn checkpoint(&self, part: CheckpointPart) -> Checkpoint {
        Checkpoint {
            meta: CheckpointMeta {
                step: self.step,
                adam_t: self.adam.t,
                n_params: self.params.data.len() as u64,
                config: ConfigRecord::from(self.params.config()),
                vocab: part.vocab.to_vec(),
                dataset_hash: part.dataset_hash.to_string(),
                rng_state: part.rng_state,
                train_loss_acc: self.sums.loss,
                train_loss_count: self.sums.count,
                wall_time_s: self.wall_time_s,
                options: part.options,
                metrics: part.metrics,
            },
            stage: part.stage,
            params: self.params.data.clone(),
            adam_m: self.adam.m.clone(),
            adam_v: self.adam.v.clone(),
        }
    }
}

/// What a stage adds to the loop's state in a checkpoint.
pub struct CheckpointPart<'a> {
    /// Characters in id order and the hex content hash of the dataset (checked on resume).
    pub vocab: &'a [char],
    pub dataset_hash: &'a str,
    /// The stream's state (empty for a stage that draws nothing).
    pub rng_state: Vec<u8>,
    /// The pretraining options (a finetune or align stage keeps its parent's).
    pub options: TrainOptions,
    /// Pretraining's rows (a stage keeps its rows in its record).
    pub metrics: Vec<MetricRow>,
    /// The finetune or align record (none: pretraining).
    pub stage: Option<StageState>,
}

/// The loop's fixed settings for a stage.
pub struct Plan {
    /// What the messages call the run ("training", "finetune", "align") and its updates
    /// ("step", "update").
    pub name: &'static str,
    pub unit: &'static str,
    /// The stage record its checkpoints carry (none: pretraining).
    pub kind: Option<Stage>,
    /// Updates of the whole run.
    pub total_updates: u64,
    /// Write a checkpoint every N steps (0: only on a stop and at the end).
    pub checkpoint_every: u64,
    pub grad_clip: Option<f32>,
    /// Rows and columns of the model's batch buffers.
    pub batch_rows: usize,
    pub batch_seq: usize,
    /// Write the periodic checkpoint of the starting step (unless the run directory holds it):
    /// pretraining's initialisation is a state of its own; a stage's start is its parent's
    /// weights with a fresh optimizer.
    pub saves_start: bool,
}

/// Where an evaluation is taken and what the loop knows there.
#[derive(Clone, Copy, Debug)]
pub struct EvalPoint {
    /// Updates done.
    pub step: u64,
    /// The final evaluation, after the last update (it leaves the train sums alone).
    pub after_last_update: bool,
    /// Mean train loss and margin since the previous evaluation.
    pub train_loss: f64,
    pub train_margin: f64,
    /// The learning rate of this step's update (of the last update, for the final one).
    pub lr: f32,
    /// Global gradient norm of this step's batch (none for the final evaluation).
    pub grad_norm: Option<f32>,
    pub train_time_s: f64,
}

/// A training stage over the shared loop: its batches, loss, evaluation, log and checkpoint
/// record.
pub trait TrainStage {
    /// One logged evaluation (a line of `metrics.jsonl`).
    type Row: Serialize;
    fn plan(&self) -> Plan;
    /// The learning rate of update `step`.
    fn lr_at(&self, step: u64) -> f32;
    /// Where iteration `step` is, for messages ("step 12", "epoch 1 step 3").
    fn position(&self, step: u64) -> String;
    /// Whether iteration `step` evaluates (before its update).
    fn eval_due(&self, step: u64) -> bool;
    /// Fetch the next batch (drawing from `rng` if the stage samples) and run forward and
    /// backward: the batch's loss, with its gradient written to `grads`. Must not allocate.
    fn loss_and_grad(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        grads: &mut Params,
        rng: &mut Mt19937,
    ) -> Result<StepLoss, ModelError>;
    /// Advance `rng` past the draws the next [`Self::loss_and_grad`] would take.
    fn skip_batch(&self, rng: &mut Mt19937);
    /// After an update: move to the next batch; true if the train sums restart there.
    fn advance(&mut self) -> bool;
    /// The evaluation of `params` at `at` and its sample, as a row (may draw from `rng`).
    fn evaluate(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        rng: &mut Mt19937,
        at: &EvalPoint,
    ) -> anyhow::Result<Self::Row>;
    /// The row's eval loss (shown by the progress bar; the final one must be finite to save).
    fn eval_loss(row: &Self::Row) -> f64;
    /// Print the row's log lines (stdout).
    fn print(&self, row: &Self::Row);
    /// Every row so far (a resumed run's `metrics.jsonl` is rewritten from them).
    fn rows(&self) -> &[Self::Row];
    /// Keep `row` and redraw the loss plot at `plot_path`.
    fn keep(&mut self, row: Self::Row, plot_path: &Path) -> anyhow::Result<()>;
    /// The checkpoint of `st` with the stream `rng`.
    fn checkpoint(&self, st: &RunState, rng: &Mt19937) -> Checkpoint;
}

/// Where a run writes and how it reports.
pub struct RunIo<'a> {
    pub out_dir: PathBuf,
    /// Set by the Ctrl-C handler: finish the step, save, stop.
    pub interrupt: Option<&'a AtomicBool>,
    /// Rayon threads for the kernels.
    pub threads: usize,
    /// Show the progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Print the log lines (`Step N, ...` and samples) on stdout.
    pub print: bool,
    /// Watches each point of every checkpoint write (the kill test's crash hook; `None`
    /// otherwise).
    pub on_save: Option<&'a (dyn Fn(WritePoint<'_>) + Sync)>,
}

/// How the loop ended (the stage tells the user how to continue an interrupted run).
#[derive(Debug)]
pub struct Finished {
    /// Completed updates.
    pub step: u64,
    /// Stopped early (Ctrl-C or `--stop-after`), with a checkpoint to resume.
    pub interrupted: bool,
    pub checkpoint_path: PathBuf,
}

/// File names inside the output directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.ckpt";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const PLOT_FILE: &str = "loss.svg";

/// Run `f` (a stage's setup and loop) on a pool of `threads` kernel threads.
pub fn with_threads<T: Send>(
    threads: usize,
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .context("building the thread pool")?;
    pool.install(f)
}

/// Run `stage` from `st` to its last update (or a stop). See the module docs for the loop.
/// `stop_after`: stop as on Ctrl-C once the run has done this many updates in total.
pub fn run<S: TrainStage>(
    stage: &mut S,
    mut st: RunState,
    io: &RunIo,
    stop_after: Option<u64>,
) -> anyhow::Result<Finished> {
    let plan = stage.plan();
    let mut model = TrainModel::new(st.params.config(), plan.batch_rows, plan.batch_seq)?;
    let log = Log::open(io, stage.rows(), plan.total_updates, st.step)?;
    let ckpt_path = io.out_dir.join(CHECKPOINT_FILE);
    let mut last_good: Option<u64> = checkpoint::load(&ckpt_path)
        .ok()
        .filter(|c| c.stage.as_ref().map(|s| s.options.stage) == plan.kind)
        .map(|c| c.meta.step);
    let mut last_msg = Instant::now() - Duration::from_secs(10);
    let mut last_eval = f64::NAN;
    let mut interrupted = false;
    // The stream before iteration i's draws: what a checkpoint of step i holds.
    let mut rng_at_step = st.rng.clone();
    // The step the run starts at is already on disk (resume), or is not saved (a stage's start).
    let start_step = st.step;
    let start_saved = last_good == Some(start_step) || !plan.saves_start;
    let kept = |last_good: Option<u64>| match last_good {
        Some(s) => format!(
            "the last good checkpoint {} ({} {s}) is kept",
            ckpt_path.display(),
            plan.unit
        ),
        None => "no checkpoint had been written yet".to_string(),
    };
    let stopped = |at: String, why: String, last_good: Option<u64>| {
        log.pb.finish_and_clear();
        anyhow!("{} stopped at {at}: {why}; {}", plan.name, kept(last_good))
    };
    let mut stop_requested = false;

    while st.step < plan.total_updates {
        let i = st.step;
        let t0 = Instant::now();
        rng_at_step.clone_from(&st.rng);
        // 1. batch, 2. forward + backward. A rejected batch changed nothing (the model checks
        // before any work).
        let loss = stage
            .loss_and_grad(&mut model, &st.params, &mut st.grads, &mut st.rng)
            .map_err(|e| stopped(stage.position(i), e.to_string(), last_good))?;
        let grad_norm = global_norm(&st.grads.data);
        let train_time = t0.elapsed().as_secs_f64();
        // 3 (checked before the evaluation so a broken state is never evaluated or saved).
        let broken = if !loss.loss.is_finite() {
            Some(format!("the loss is {}", loss.loss))
        } else if !grad_norm.is_finite() {
            Some(format!("the gradient norm is {grad_norm}"))
        } else {
            None
        };
        if let Some(why) = broken {
            return Err(stopped(stage.position(i), why, last_good));
        }
        // 3b. the checkpoint of step i, now that its loss is known to be finite
        let periodic = plan.checkpoint_every > 0
            && i.is_multiple_of(plan.checkpoint_every)
            && !(i == start_step && start_saved);
        if periodic || stop_requested {
            if let Err(why) = save_checked(io, stage, &st, &rng_at_step, &ckpt_path)? {
                return Err(stopped(stage.position(i), why, last_good));
            }
            last_good = Some(i);
        }
        if stop_requested {
            interrupted = true;
            break;
        }
        // 4. evaluation hook (the train sums restart after it)
        if stage.eval_due(i) {
            let (train_loss, train_margin) = st.sums.means();
            st.sums = TrainSums::default();
            let at = EvalPoint {
                step: i,
                after_last_update: false,
                train_loss,
                train_margin,
                lr: stage.lr_at(i),
                grad_norm: Some(grad_norm),
                train_time_s: st.wall_time_s,
            };
            let row = stage.evaluate(&mut model, &st.params, &mut st.rng, &at)?;
            last_eval = S::eval_loss(&row);
            log.record(stage, row)?;
        }
        st.sums.add(loss);
        // 5. update
        let t1 = Instant::now();
        if let Some(max) = plan.grad_clip {
            clip_grad_norm(&mut st.grads.data, max);
        }
        st.adam
            .step(&mut st.params.data, &st.grads.data, stage.lr_at(i));
        st.step = i + 1;
        st.wall_time_s += train_time + t1.elapsed().as_secs_f64();
        if stage.advance() {
            st.sums = TrainSums::default();
        }

        log.pb.inc(1);
        // (Formatting allocates: only for a visible bar, at most twice a second.)
        if !log.pb.is_hidden() && last_msg.elapsed() >= Duration::from_millis(500) {
            log.pb
                .set_message(format!("loss {:.4}  eval {last_eval:.4}", loss.loss));
            last_msg = Instant::now();
        }

        // Ctrl-C or --stop-after: the next iteration checks this update's loss, saves and stops.
        stop_requested = io.interrupt.is_some_and(|f| f.load(Ordering::SeqCst))
            || stop_after.is_some_and(|n| st.step >= n && st.step < plan.total_updates);
    }

    if !interrupted {
        // Final evaluation (a peek: copy of the stream, sums untouched).
        let step = st.step;
        let (train_loss, train_margin) = st.sums.means();
        let at = EvalPoint {
            step,
            after_last_update: true,
            train_loss,
            train_margin,
            lr: stage.lr_at(step.saturating_sub(1)),
            grad_norm: None,
            train_time_s: st.wall_time_s,
        };
        // Skip the draws of the batch iteration `step` would fetch first, so the final row is
        // exactly the one an in-loop evaluation at `step` gives (comparable with the reference).
        let mut peek_rng = st.rng.clone();
        stage.skip_batch(&mut peek_rng);
        let row = stage.evaluate(&mut model, &st.params, &mut peek_rng, &at)?;
        let final_loss = S::eval_loss(&row);
        log.record(stage, row)?;
        let why = if final_loss.is_finite() {
            save_checked(io, stage, &st, &st.rng, &ckpt_path)?.err()
        } else {
            Some(format!(
                "the final evaluation loss is {final_loss}; nothing is saved from these parameters"
            ))
        };
        if let Some(why) = why {
            return Err(stopped(stage.position(step), why, last_good));
        }
    }
    log.pb.finish_and_clear();
    Ok(Finished {
        step: st.step,
        interrupted,
        checkpoint_path: ckpt_path,
    })
}

/// Where a run's evaluation rows go: stdout (the stage's log lines), `metrics.jsonl`, the
/// stage's rows and its loss plot; and the progress bar.
struct Log<'a> {
    io: &'a RunIo<'a>,
    pb: ProgressBar,
    metrics: MetricsLog,
    plot_path: PathBuf,
}

impl<'a> Log<'a> {
    /// Create the output directory and open the metrics log (keeping the run's earlier rows).
    fn open<R: Serialize>(
        io: &'a RunIo<'a>,
        rows: &[R],
        total: u64,
        pos: u64,
    ) -> anyhow::Result<Log<'a>> {
        std::fs::create_dir_all(&io.out_dir)
            .with_context(|| format!("creating {}", io.out_dir.display()))?;
        Ok(Log {
            io,
            metrics: MetricsLog::create(&io.out_dir.join(METRICS_FILE), rows)?,
            plot_path: io.out_dir.join(PLOT_FILE),
            pb: progress_bar(io, total, pos),
        })
    }

    /// Print `row`, append it to the metrics file, and hand it to the stage (which keeps it and
    /// redraws the plot).
    fn record<S: TrainStage>(&self, stage: &mut S, row: S::Row) -> anyhow::Result<()> {
        if self.io.print {
            self.pb.suspend(|| stage.print(&row));
        }
        self.metrics.append(&row)?;
        stage.keep(row, &self.plot_path)
    }
}

/// Largest weight a blob can hold (f16 max): a parameter beyond it has diverged (the model is
/// LayerNorm-ed; trained weights are of order 1) and could never be exported.
const MAX_SOUND_WEIGHT: f32 = 65504.0;

/// Write the checkpoint of the state `st` with the stream `rng`, if it is sound: the caller has
/// checked that these parameters' loss is finite; here every weight must be finite and at most
/// [`MAX_SOUND_WEIGHT`] in magnitude, and every AdamW moment finite (an inf moment resumes into
/// NaN updates). `Ok(Err(why))`: nothing was written, the previous checkpoint is untouched.
fn save_checked<S: TrainStage>(
    io: &RunIo,
    stage: &S,
    st: &RunState,
    rng: &Mt19937,
    path: &Path,
) -> anyhow::Result<Result<(), String>> {
    let w = &st.params.data;
    if let Some(j) = w
        .iter()
        .position(|x| !x.is_finite() || x.abs() > MAX_SOUND_WEIGHT)
    {
        return Ok(Err(format!(
            "the weights diverged (parameter {j} is {:e}, beyond the {MAX_SOUND_WEIGHT} a blob \
             holds); nothing is saved from them",
            w[j]
        )));
    }
    for (name, m) in [("first", &st.adam.m), ("second", &st.adam.v)] {
        if let Some(j) = m.iter().position(|x| !x.is_finite()) {
            return Ok(Err(format!(
                "the AdamW {name} moment of parameter {j} is {}; nothing is saved from it",
                m[j]
            )));
        }
    }
    save(io, path, &stage.checkpoint(st, rng))?;
    Ok(Ok(()))
}

/// Seed of the sampler for the sample printed at `step` (its own stream: sampling never
/// disturbs the batch stream, as in the reference's CUDA runs).
pub fn sample_seed(seed: u32, step: u64) -> u64 {
    ((seed as u64) << 32) ^ step
}

fn progress_bar(io: &RunIo, steps: u64, pos: u64) -> ProgressBar {
    if !io.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {rate}  ETA {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "rate",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.2} steps/s", s.per_sec());
                },
            ),
    );
    pb.set_position(pos);
    pb.reset_eta();
    pb
}

/// Save a checkpoint atomically, through the run's save observer if it has one.
fn save(io: &RunIo, path: &Path, ckpt: &Checkpoint) -> Result<(), checkpoint::CheckpointError> {
    match io.on_save {
        Some(observe) => checkpoint::save_atomic_observed(path, ckpt, observe),
        None => checkpoint::save_atomic(path, ckpt),
    }
}

/// The run directory a `--resume` path belongs to (the directory itself, or the checkpoint
/// file's directory): where a resumed run keeps writing when no `--out` is given, so that its
/// checkpoint, metrics and plot continue the ones it resumed.
pub fn run_dir_of(resume: &Path) -> PathBuf {
    if resume.is_dir() {
        return resume.to_path_buf();
    }
    match resume.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Resolve the checkpoint path for `--resume` (a file, or a run directory holding one).
pub fn resolve_checkpoint(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(CHECKPOINT_FILE)
    } else {
        path.to_path_buf()
    }
}
