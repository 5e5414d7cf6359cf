//! The one training loop every stage runs on (spec §4): schedule, clipping, checkpoint cadence,
//! evaluation cadence, resume and the stop conditions. A stage ([`Objective`]) brings its batches,
//! its loss and its evaluation; `stages/` holds them.
//!
//! Per iteration `i` (0-based; "step i" = after `i` updates), in the reference's order:
//! 1. the stage fetches its batch, drawing from the run's torch-compatible MT19937 stream if it
//!    samples ([`Objective::loss_and_grad`]);
//! 2. forward and backward, in the same call (the gradient does not depend on what the
//!    evaluation hook does, because evaluation only reads the parameters);
//! 3. if `i % K == 0`: the stage's evaluation ([`Objective::evaluate`], which may draw from the
//!    same stream after this iteration's batch, like the reference) and a sample from the prompt
//!    generated through `tinypoet-core`, printed as `Step i, train loss X, evaluate loss Y` where X
//!    is the mean train loss of the previous K iterations (0 at step 0) and Y the stage's eval
//!    loss;
//! 4. stop with an error if the loss or the gradient is not finite (nothing is saved from that
//!    state, the last good checkpoint stays as it is); then, if a checkpoint of step i is due
//!    (every `checkpoint_every` steps from the start, or Ctrl-C was pressed during the previous
//!    step), write it (`save_checked`): its parameters' loss was just checked finite, and
//!    their weights and moments are checked finite and within what a blob holds. The state saved
//!    is the one before this iteration's batch (the stream as it was before the draws), so a
//!    resume repeats iteration i exactly;
//! 5. optional gradient clipping, then the AdamW update with the scheduled learning rate.
//!
//! A checkpoint is therefore never written from parameters nobody has computed a loss of (an
//! update with an absurd learning rate can leave inf or 1e30 weights whose loss is NaN). After
//! Ctrl-C the loop finishes the update, computes the next loss, saves, and stops. At the end a
//! final evaluation
//! is logged for step `steps`; it draws from a *copy* of the stream (skipping the draws of the
//! batch that iteration `steps` would fetch first, [`Objective::skip_batch`], so the row equals an
//! in-loop evaluation at that step) and does not reset the train-loss accumulator; the final
//! checkpoint is written only if that evaluation's loss is finite (and the weights pass the same
//! checks). A run resumed from a checkpoint is bit-identical to one that never stopped (a resumed
//! run drops logged rows at or after its start step and recomputes them).
//!
//! The step itself allocates nothing: batch buffers, activations, gradients and moments are
//! allocated once before the loop ([`Objective::begin`] sizes the stage's); evaluation and
//! checkpoint steps may allocate.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::io::fsx::WritePoint;
use crate::nn::adamw::{clip_grad_norm, global_norm, AdamW, AdamWConfig};
use crate::nn::init::{init_params, reference_init, InitScheme};
use crate::nn::model::{ModelError, TrainModel};
use crate::nn::mt19937::Mt19937;
use crate::nn::params::{Config, ConfigRecord, Params};
use crate::run::checkpoint::{self, Checkpoint, CheckpointMeta};
use crate::run::metrics::{MetricRow, MetricsLog};
use crate::run::options::{Init, TrainOptions};
use crate::run::plot;
use crate::run::sample::sample_through_core;

/// What every stage's run is tied to: the vocabulary and the dataset it trains on (both are
/// stored in the checkpoint and checked on resume).
pub struct RunData<'a> {
    /// Characters in id order.
    pub vocab: &'a [char],
    /// Hex content hash of the dataset.
    pub dataset_hash: &'a str,
}

impl RunData<'_> {
    fn encode(&self, text: &str) -> anyhow::Result<Vec<u16>> {
        text.chars()
            .map(|c| {
                self.vocab
                    .binary_search(&c)
                    .map(|i| i as u16)
                    .map_err(|_| anyhow::anyhow!("character {c:?} is not in the vocabulary"))
            })
            .collect()
    }
}

/// The eval losses a stage reports at an evaluation step.
#[derive(Clone, Copy, Debug)]
pub struct EvalLosses {
    /// The loss the bars use (logged as `eval_loss`).
    pub eval_loss: f64,
    /// The reference's own estimator (logged as `eval_loss_reference`).
    pub eval_loss_reference: f64,
}

/// A training stage: its batches, its loss and its evaluation, over the shared loop.
pub trait Objective: Send {
    /// What the stage is called in the plot title ("pretraining").
    fn name(&self) -> &'static str;
    /// Check `opts` against the stage's data and size the stage's buffers; called once, before
    /// the first iteration.
    fn begin(&mut self, opts: &TrainOptions) -> anyhow::Result<()>;
    /// Fetch the next batch (drawing from `rng` if the stage samples), run forward and backward:
    /// the batch's mean loss, with its gradient written to `grads`. Must not allocate.
    fn loss_and_grad(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        grads: &mut Params,
        rng: &mut Mt19937,
    ) -> Result<f32, ModelError>;
    /// Advance `rng` past the draws the next [`Self::loss_and_grad`] would take.
    fn skip_batch(&self, rng: &mut Mt19937);
    /// The eval losses of `params` (may draw from `rng`, as the reference's estimator does).
    fn evaluate(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        rng: &mut Mt19937,
    ) -> Result<EvalLosses, ModelError>;
}

/// How a run starts.
pub enum Start {
    Fresh(TrainOptions),
    /// Continue a checkpoint; `steps`/`checkpoint_every` override the stored options when given
    /// (nothing else may change, or the run would not be the same run).
    Resume {
        checkpoint: Box<Checkpoint>,
        steps: Option<u64>,
        checkpoint_every: Option<u64>,
    },
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

/// What a run ended with.
#[derive(Debug)]
pub struct RunOutcome {
    /// Completed updates.
    pub step: u64,
    pub interrupted: bool,
    pub checkpoint_path: PathBuf,
    pub metrics: Vec<MetricRow>,
}

/// File names inside the output directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.ckpt";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const PLOT_FILE: &str = "loss.svg";

/// The mutable state of a run, everything a checkpoint holds.
struct State {
    cfg: Config,
    opts: TrainOptions,
    params: Params,
    grads: Params,
    adam: AdamW,
    rng: Mt19937,
    step: u64,
    loss_acc: f64,
    loss_count: u64,
    wall_time_s: f64,
    metrics: Vec<MetricRow>,
}

impl State {
    fn fresh(data: &RunData, opts: TrainOptions) -> anyhow::Result<State> {
        let cfg = opts.model.config(data.vocab.len());
        // The batches continue the torch-compatible stream: after the reference's init draws
        // (Torch), or from the seed (Fast, whose init draws from its own SplitMix64).
        let (params, rng) = match opts.init {
            Init::Torch => reference_init(&cfg, opts.seed),
            Init::Fast => (
                init_params(&cfg, opts.seed as u64, InitScheme::Fast),
                Mt19937::init_genrand(opts.seed),
            ),
        };
        let n = params.data.len();
        Ok(State {
            cfg,
            grads: Params::zeros(&cfg),
            adam: AdamW::new(n, AdamWConfig::default()),
            params,
            rng,
            step: 0,
            loss_acc: 0.0,
            loss_count: 0,
            wall_time_s: 0.0,
            metrics: Vec::new(),
            opts,
        })
    }

    fn resume(
        data: &RunData,
        ckpt: Checkpoint,
        steps: Option<u64>,
        every: Option<u64>,
    ) -> anyhow::Result<State> {
        if let Some(st) = &ckpt.stage {
            bail!(
                "this is a {} checkpoint: continue it with `tinypoet {} --resume`",
                st.options.stage.name(),
                st.options.stage.name()
            );
        }
        let meta = ckpt.meta;
        if meta.dataset_hash != data.dataset_hash {
            bail!(
                "the checkpoint was trained on dataset {} but this dataset is {}",
                short(&meta.dataset_hash),
                short(data.dataset_hash)
            );
        }
        if meta.vocab.as_slice() != data.vocab {
            bail!("the checkpoint's vocabulary differs from the dataset's");
        }
        let mut opts = meta.options;
        if let Some(s) = steps {
            opts.steps = s;
        }
        if let Some(e) = every {
            opts.checkpoint_every = e;
        }
        let cfg = opts.model.config(data.vocab.len());
        if ConfigRecord::from(&cfg) != meta.config {
            bail!("the checkpoint's model config does not match its options");
        }
        let params = Params::from_vec(&cfg, ckpt.params)
            .context("checkpoint parameter count does not match its config")?;
        let n = params.data.len();
        let mut adam = AdamW::new(n, AdamWConfig::default());
        adam.m = ckpt.adam_m;
        adam.v = ckpt.adam_v;
        adam.t = meta.adam_t;
        let rng = Mt19937::from_bytes(&meta.rng_state).context("checkpoint RNG state")?;
        // Rows at or after the start step are recomputed by this run (see the module docs).
        let mut metrics = meta.metrics;
        metrics.retain(|r| r.step < meta.step);
        Ok(State {
            cfg,
            grads: Params::zeros(&cfg),
            adam,
            params,
            rng,
            step: meta.step,
            loss_acc: meta.train_loss_acc,
            loss_count: meta.train_loss_count,
            wall_time_s: meta.wall_time_s,
            metrics,
            opts,
        })
    }

    /// Mean of the train losses since the last evaluation (0 before any).
    fn train_mean(&self) -> f64 {
        if self.loss_count == 0 {
            0.0
        } else {
            self.loss_acc / self.loss_count as f64
        }
    }

    fn checkpoint(&self, data: &RunData) -> Checkpoint {
        Checkpoint {
            meta: CheckpointMeta {
                step: self.step,
                adam_t: self.adam.t,
                n_params: self.params.data.len() as u64,
                config: ConfigRecord::from(&self.cfg),
                vocab: data.vocab.to_vec(),
                dataset_hash: data.dataset_hash.to_string(),
                rng_state: self.rng.to_bytes().to_vec(),
                train_loss_acc: self.loss_acc,
                train_loss_count: self.loss_count,
                wall_time_s: self.wall_time_s,
                options: self.opts.clone(),
                metrics: self.metrics.clone(),
            },
            stage: None,
            params: self.params.data.clone(),
            adam_m: self.adam.m.clone(),
            adam_v: self.adam.v.clone(),
        }
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Run (or continue) a training run of `objective` on `data`. See the module docs for the loop.
pub fn run<O: Objective>(
    data: &RunData,
    objective: &mut O,
    start: Start,
    io: &RunIo,
) -> anyhow::Result<RunOutcome> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(io.threads.max(1))
        .build()
        .context("building the thread pool")?;
    pool.install(|| run_in_pool(data, objective, start, io))
}

fn run_in_pool<O: Objective>(
    data: &RunData,
    objective: &mut O,
    start: Start,
    io: &RunIo,
) -> anyhow::Result<RunOutcome> {
    let mut st = match start {
        Start::Fresh(opts) => {
            objective.begin(&opts)?;
            State::fresh(data, opts)?
        }
        Start::Resume {
            checkpoint,
            steps,
            checkpoint_every,
        } => {
            let st = State::resume(data, *checkpoint, steps, checkpoint_every)?;
            objective.begin(&st.opts)?;
            st
        }
    };
    // Checked up front so a bad prompt fails before any training.
    data.encode(&st.opts.sample_prompt)
        .context("sample prompt")?;
    let mut model = TrainModel::new(&st.cfg, st.opts.batch, st.opts.seq)?;
    let log = Log::open(io, &st, objective.name())?;
    let ckpt_path = io.out_dir.join(CHECKPOINT_FILE);
    let prompt = st.opts.sample_prompt.clone();
    let k = st.opts.eval_interval;
    let schedule = st.opts.lr_schedule();
    let mut last_good: Option<u64> = checkpoint::load(&ckpt_path).ok().map(|c| c.meta.step);
    let mut last_msg = Instant::now() - Duration::from_secs(10);
    let mut last_eval = f64::NAN;
    let mut interrupted = false;
    // The stream before iteration i's draws: what a checkpoint of step i holds.
    let mut rng_at_step = st.rng.clone();
    // The step the run starts at is already on disk (resume) or is the fresh initialisation.
    let start_step = st.step;
    let resumed = last_good == Some(start_step);
    let kept = |last_good: Option<u64>| match last_good {
        Some(s) => format!(
            "the last good checkpoint {} (step {s}) is kept",
            ckpt_path.display()
        ),
        None => "no checkpoint had been written yet".to_string(),
    };
    let mut stop_requested = false;

    while st.step < st.opts.steps {
        let i = st.step;
        let t0 = Instant::now();
        rng_at_step.clone_from(&st.rng);
        // 1. batch, 2. forward + backward. A rejected batch changed nothing (the model checks
        // before any work).
        let stopped = |why: String| {
            log.pb.finish_and_clear();
            anyhow::anyhow!("training stopped at step {i}: {why}; {}", kept(last_good))
        };
        let loss = objective
            .loss_and_grad(&mut model, &st.params, &mut st.grads, &mut st.rng)
            .map_err(|e| stopped(e.to_string()))?;
        let grad_norm = global_norm(&st.grads.data);
        let train_time = t0.elapsed().as_secs_f64();
        // 4 (checked before the evaluation so a broken state is never evaluated or saved).
        if !loss.is_finite() {
            return Err(stopped(format!("the loss is {loss}")));
        }
        if !grad_norm.is_finite() {
            return Err(stopped(format!("the gradient norm is {grad_norm}")));
        }
        // 4b. the checkpoint of step i, now that its loss is known to be finite
        let periodic = st.opts.checkpoint_every > 0
            && i % st.opts.checkpoint_every == 0
            && !(resumed && i == start_step);
        if periodic || stop_requested {
            if let Err(why) = save_checked(io, &st, &rng_at_step, data, &ckpt_path)? {
                return Err(stopped(why));
            }
            last_good = Some(i);
        }
        if stop_requested {
            interrupted = true;
            break;
        }
        // 3. evaluation hook (the train mean restarts after it)
        if i % k == 0 {
            let train_mean = st.train_mean();
            st.loss_acc = 0.0;
            st.loss_count = 0;
            let (lr, norm) = (schedule.lr_at(i), Some(grad_norm as f64));
            let row = evaluation(
                &mut st, data, objective, &mut model, &prompt, i, train_mean, lr, norm, false,
            )?;
            last_eval = row.eval_loss;
            log.record(&mut st, row)?;
        }
        st.loss_acc += loss as f64;
        st.loss_count += 1;
        // 5. update
        let t1 = Instant::now();
        if let Some(max) = st.opts.grad_clip {
            clip_grad_norm(&mut st.grads.data, max);
        }
        st.adam
            .step(&mut st.params.data, &st.grads.data, schedule.lr_at(i));
        st.step = i + 1;
        st.wall_time_s += train_time + t1.elapsed().as_secs_f64();

        log.pb.inc(1);
        // (Formatting allocates: only for a visible bar, at most twice a second.)
        if !log.pb.is_hidden() && last_msg.elapsed() >= Duration::from_millis(500) {
            log.pb
                .set_message(format!("loss {loss:.4}  eval {last_eval:.4}"));
            last_msg = Instant::now();
        }

        // Ctrl-C: the next iteration checks this update's loss, saves and stops.
        stop_requested = io.interrupt.is_some_and(|f| f.load(Ordering::SeqCst));
    }

    if !interrupted {
        // Final evaluation (a peek: copy of the stream, accumulator untouched).
        let (step, train_mean) = (st.step, st.train_mean());
        let lr = schedule.lr_at(step.saturating_sub(1));
        let row = evaluation(
            &mut st, data, objective, &mut model, &prompt, step, train_mean, lr, None, true,
        )?;
        let final_loss = row.eval_loss;
        log.record(&mut st, row)?;
        let why = if final_loss.is_finite() {
            save_checked(io, &st, &st.rng, data, &ckpt_path)?.err()
        } else {
            Some(format!(
                "the final evaluation loss is {final_loss}; nothing is saved from these parameters"
            ))
        };
        if let Some(why) = why {
            log.pb.finish_and_clear();
            bail!(
                "training stopped at step {step}: {why}; {}",
                kept(last_good)
            );
        }
    }
    log.pb.finish_and_clear();
    if interrupted && io.print {
        crate::errln!(
            "interrupted: saved {} at step {}; continue with --resume {}",
            ckpt_path.display(),
            st.step,
            ckpt_path.display()
        );
    }
    Ok(RunOutcome {
        step: st.step,
        interrupted,
        checkpoint_path: ckpt_path,
        metrics: st.metrics,
    })
}

/// Where a run's evaluation rows go: stdout (the reference's log lines), `metrics.jsonl`, the
/// state's metrics, and the loss plot; and the progress bar.
struct Log<'a> {
    io: &'a RunIo<'a>,
    pb: ProgressBar,
    metrics: MetricsLog,
    plot_path: PathBuf,
    plot_title: String,
}

impl<'a> Log<'a> {
    /// Create the output directory and open the metrics log (keeping the state's earlier rows).
    fn open(io: &'a RunIo<'a>, st: &State, stage: &str) -> anyhow::Result<Log<'a>> {
        std::fs::create_dir_all(&io.out_dir)
            .with_context(|| format!("creating {}", io.out_dir.display()))?;
        let o = &st.opts;
        Ok(Log {
            io,
            metrics: MetricsLog::create(&io.out_dir.join(METRICS_FILE), &st.metrics)?,
            plot_path: io.out_dir.join(PLOT_FILE),
            plot_title: format!(
                "tinypoet {stage}: B={} T={} lr={} seed={}",
                o.batch, o.seq, o.lr, o.seed
            ),
            pb: progress_bar(io, o.steps, st.step),
        })
    }

    /// Print `row`, append it to the metrics file, keep it in the state (in place of any row at
    /// its step or later) and redraw the plot.
    fn record(&self, st: &mut State, row: MetricRow) -> anyhow::Result<()> {
        report(self.io, &self.pb, &row, &st.opts);
        self.metrics.append(&row)?;
        st.metrics.retain(|r| r.step < row.step);
        st.metrics.push(row);
        plot::write_svg(&self.plot_path, &st.metrics, &self.plot_title)
    }
}

/// Largest weight a blob can hold (f16 max): a parameter beyond it has diverged (the model is
/// LayerNorm-ed; trained weights are of order 1) and could never be exported.
const MAX_SOUND_WEIGHT: f32 = 65504.0;

/// Write the checkpoint of the state `st` with the stream `rng`, if it is sound: the caller has
/// checked that these parameters' loss is finite; here every weight must be finite and at most
/// [`MAX_SOUND_WEIGHT`] in magnitude, and every AdamW moment finite (an inf moment resumes into
/// NaN updates). `Ok(Err(why))`: nothing was written, the previous checkpoint is untouched.
fn save_checked(
    io: &RunIo,
    st: &State,
    rng: &Mt19937,
    data: &RunData,
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
    let mut ckpt = st.checkpoint(data);
    ckpt.meta.rng_state = rng.to_bytes().to_vec();
    save(io, path, &ckpt)?;
    Ok(Ok(()))
}

/// Both estimators and the sample. `peek`: use a copy of the stream (final evaluation).
#[allow(clippy::too_many_arguments)]
fn evaluation<O: Objective>(
    st: &mut State,
    data: &RunData,
    objective: &mut O,
    model: &mut TrainModel,
    prompt: &str,
    step: u64,
    train_loss: f64,
    lr: f32,
    grad_norm: Option<f64>,
    peek: bool,
) -> anyhow::Result<MetricRow> {
    let (b, t) = (st.opts.batch, st.opts.seq);
    let mut peek_rng;
    let rng = if peek {
        // Skip the draws of the batch iteration `step` would fetch first, so the final row is
        // exactly the one an in-loop evaluation at `step` gives (comparable with the reference).
        peek_rng = st.rng.clone();
        objective.skip_batch(&mut peek_rng);
        &mut peek_rng
    } else {
        &mut st.rng
    };
    let losses = objective.evaluate(model, &st.params, rng)?;
    let sample = sample_through_core(
        &st.params,
        data.vocab,
        prompt,
        st.opts.sample_len,
        sample_seed(st.opts.seed, step),
    )?;
    Ok(MetricRow {
        step,
        train_loss,
        eval_loss: losses.eval_loss,
        eval_loss_reference: losses.eval_loss_reference,
        lr: lr as f64,
        grad_norm,
        train_time_s: st.wall_time_s,
        tokens: step * (b * t) as u64,
        sample,
    })
}

/// Seed of the sampler for the sample printed at `step` (its own stream: sampling never
/// disturbs the batch stream, as in the reference's CUDA runs).
pub fn sample_seed(seed: u32, step: u64) -> u64 {
    ((seed as u64) << 32) ^ step
}

fn report(io: &RunIo, pb: &ProgressBar, row: &MetricRow, opts: &TrainOptions) {
    if !io.print {
        return;
    }
    pb.suspend(|| {
        crate::outln!(
            "Step {}, train loss {:.4}, evaluate loss {:.4} (reference estimator {:.4})",
            row.step,
            row.train_loss,
            row.eval_loss,
            row.eval_loss_reference
        );
        crate::outln!(
            "Generate first {} characters of poems starting with {}:",
            opts.sample_len,
            opts.sample_prompt
        );
        crate::outln!("{}", row.sample);
    });
}

pub(crate) fn progress_bar(io: &RunIo, steps: u64, pos: u64) -> ProgressBar {
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
pub(crate) fn save(
    io: &RunIo,
    path: &Path,
    ckpt: &Checkpoint,
) -> Result<(), checkpoint::CheckpointError> {
    match io.on_save {
        Some(observe) => checkpoint::save_atomic_observed(path, ckpt, observe),
        None => checkpoint::save_atomic(path, ckpt),
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
