//! The finetune and alignment stages (spec §2, §4): one loop, two objectives.
//!
//! Both start from trained weights (a checkpoint, or a blob whose f16 weights are upcast to
//! f32), with a fresh AdamW (moments and t reset) at a constant learning rate, and go through
//! the train split in order, in the same batches every epoch. Per iteration `i` of an epoch, in
//! the reference's order:
//! 1. build batch `i` ([`crate::data::stage_batch`]: fixed 256-wide rows cropped to the longest);
//! 2. forward and backward of the stage's objective:
//!    * finetune: the mean cross-entropy over the positions that are not ignored;
//!    * align: the frozen reference's per-position cross-entropies r⁺, r⁻ (forward only), then
//!      the policy's ℓ⁺, ℓ⁻ on the positive and negative rows as one batch of 2B rows; the
//!      per-token loss ([`crate::nn::ops::align_loss`]) turns them into the loss, the margin and
//!      per-position weights ∂L/∂ℓ that the head's weighted cross-entropy backward takes;
//! 3. if `i % K == 0`: evaluation over every eval batch (the mean of the batch losses, and for
//!    align of the batch margins) and a sample for the title through `tinypoet-core`, printed as
//!    the reference does: `Epoch e, step i, train loss X, evaluate loss Y` (align adds
//!    `train reward margin`, `evaluate reward margin`), X the mean of the epoch's iterations
//!    since the previous evaluation (0 at step 0: the sums restart every epoch);
//! 4. stop with an error if the loss or the gradient is not finite (the last good checkpoint
//!    stays);
//! 5. the AdamW update.
//!
//! After the last update a final evaluation is logged (`after_last_update`; the reference's
//! last row is the one before its last update). Checkpoints are written every
//! `checkpoint_every` updates, on Ctrl-C (after the current step) and at the end; they hold the
//! stage, its recipe, its parent, its position and (align) the frozen reference weights, so a
//! resumed stage is bit-identical to one that never stopped: nothing in a stage is random except
//! the samples, whose seeds derive from the seed and the update count.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use sha2::{Digest, Sha256};

use crate::data::corpus::text::instruction_prompt;
use crate::data::corpus::Dataset;
use crate::data::stage_batch::{
    align_batch, batch_count, finetune_batch, AlignBatch, RowBatch, WIDTH,
};
use crate::nn::adamw::{global_norm, AdamW, AdamWConfig};
use crate::nn::model::TrainModel;
use crate::nn::ops::align_loss::{align_loss_forward, align_loss_forward_backward, AlignLoss};
use crate::nn::params::{Config, ConfigRecord, ModelShape, Params};
use crate::run::checkpoint::{self, Checkpoint, CheckpointMeta};
use crate::run::metrics::MetricsLog;
use crate::run::options::TrainOptions;
use crate::run::plot;
use crate::run::stage_record::{Parent, Stage, StageOptions, StageRow, StageState};
use crate::run::train_loop::{RunIo, CHECKPOINT_FILE, METRICS_FILE, PLOT_FILE};

/// Trained weights to start a stage from, and where they came from.
pub struct StartWeights {
    pub params: Params,
    pub vocab: Vec<char>,
    pub parent: Parent,
    /// The pretraining options recorded with the parent, if it is a checkpoint.
    pub pretrain_options: Option<TrainOptions>,
}

/// Load the starting weights: a checkpoint (`.ckpt`, any stage) or a blob (`.tpb`, f16 weights
/// upcast to f32; an int8 blob is refused, its weights are not the trained ones).
pub fn load_start(path: &Path) -> anyhow::Result<StartWeights> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let sha256 = crate::io::fsx::hex(&Sha256::digest(&bytes));
    if bytes.starts_with(&checkpoint::MAGIC) {
        let ckpt = Checkpoint::from_bytes(&bytes)
            .with_context(|| format!("{} is not a readable checkpoint", path.display()))?;
        let params = checkpoint::checkpoint_params(&ckpt)?;
        let recipe = match &ckpt.stage {
            Some(s) => s.options.recipe_line(),
            None => checkpoint::manifest_for(&ckpt).recipe,
        };
        return Ok(StartWeights {
            params,
            vocab: ckpt.meta.vocab.clone(),
            parent: Parent {
                kind: "checkpoint".into(),
                path: path.display().to_string(),
                sha256,
                recipe,
                steps: ckpt.meta.step,
            },
            pretrain_options: Some(ckpt.meta.options),
        });
    }
    let blob = tinypoet_core::blob::parse(&bytes).map_err(|e| {
        anyhow!(
            "{} is neither a checkpoint nor a valid blob: {e}",
            path.display()
        )
    })?;
    let cfg: Config = blob.config;
    let layout = crate::nn::params::ParamLayout::new(&cfg);
    let mut params = Params::zeros(&cfg);
    let mut seen = 0;
    for (t, info) in blob.tensors().zip(layout.tensors()) {
        let e = &t.entry;
        if e.name != info.name || e.shape.dims() != info.shape.as_slice() {
            bail!(
                "{}: tensor {} {:?} where the model has {} {:?}",
                path.display(),
                e.name,
                e.shape.dims(),
                info.name,
                info.shape
            );
        }
        if e.dtype != tinypoet_core::blob::Dtype::F16 {
            bail!(
                "{}: tensor {} is stored as {:?}; a stage starts only from f16 weights (export \
                 the f16 blob or use the checkpoint)",
                path.display(),
                e.name,
                e.dtype
            );
        }
        let out = &mut params.data[info.range()];
        let value =
            |j: usize| tinypoet_core::kernels::f16_to_f32(t.bytes[2 * j], t.bytes[2 * j + 1]);
        match (e.layout, e.shape.dims()) {
            // Stored [in, out] for the core's mat-vecs; the trainer keeps PyTorch's [out, in].
            (tinypoet_core::blob::Layout::Transposed, &[rows, cols]) => {
                for r in 0..rows {
                    for c in 0..cols {
                        out[r * cols + c] = value(c * rows + r);
                    }
                }
            }
            _ => {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = value(j);
                }
            }
        }
        seen += 1;
    }
    if seen != layout.tensors().len() || blob.n_tensors() != seen {
        bail!(
            "{}: {} tensors where the model has {}",
            path.display(),
            blob.n_tensors(),
            layout.tensors().len()
        );
    }
    let m = blob.manifest;
    Ok(StartWeights {
        params,
        vocab: blob.vocab_chars().collect(),
        parent: Parent {
            kind: "blob".into(),
            path: path.display().to_string(),
            sha256,
            recipe: format!("{} (f16 blob, upcast to f32)", m.recipe),
            steps: m.steps,
        },
        pretrain_options: None,
    })
}

/// How a stage run starts.
pub enum StageStart {
    Fresh {
        options: StageOptions,
        from: Box<StartWeights>,
    },
    /// Continue a stage checkpoint; `checkpoint_every` may change (nothing else may).
    Resume {
        checkpoint: Box<Checkpoint>,
        checkpoint_every: Option<u64>,
    },
}

/// What a stage run ended with.
#[derive(Debug)]
pub struct StageOutcome {
    /// Updates done in the stage.
    pub updates: u64,
    pub interrupted: bool,
    pub checkpoint_path: PathBuf,
    pub rows: Vec<StageRow>,
}

/// The mutable state of a stage run.
struct State {
    cfg: Config,
    pretrain_options: TrainOptions,
    params: Params,
    grads: Params,
    adam: AdamW,
    /// Align: the frozen reference weights.
    reference: Option<Params>,
    stage: StageState,
    wall_time_s: f64,
}

impl State {
    fn fresh(ds: &Dataset, options: StageOptions, from: StartWeights) -> anyhow::Result<State> {
        if from.vocab.as_slice() != ds.vocab() {
            bail!(
                "the starting weights' vocabulary ({} characters) differs from the dataset's ({})",
                from.vocab.len(),
                ds.vocab().len()
            );
        }
        let cfg = *from.params.config();
        let pretrain_options = from.pretrain_options.unwrap_or_else(|| TrainOptions {
            model: ModelShape::from(&cfg),
            ..TrainOptions::default()
        });
        let n = from.params.data.len();
        let reference = (options.stage == Stage::Align).then(|| from.params.clone());
        Ok(State {
            cfg,
            pretrain_options,
            grads: Params::zeros(&cfg),
            adam: AdamW::new(n, AdamWConfig::default()),
            params: from.params,
            stage: StageState {
                options,
                parent: from.parent,
                epoch: 0,
                index: 0,
                loss_acc: 0.0,
                margin_acc: 0.0,
                acc_count: 0,
                rows: Vec::new(),
                reference_params: Vec::new(),
            },
            reference,
            wall_time_s: 0.0,
        })
    }

    fn resume(ds: &Dataset, ckpt: Checkpoint, every: Option<u64>) -> anyhow::Result<State> {
        let Some(mut stage) = ckpt.stage else {
            bail!(
                "this is a pretraining checkpoint: continue it with `tinypoet train --resume`, \
                 or start a stage from it with --from"
            );
        };
        let meta = ckpt.meta;
        if meta.dataset_hash != ds.content_hash() {
            bail!("the checkpoint was trained on another dataset");
        }
        if meta.vocab.as_slice() != ds.vocab() {
            bail!("the checkpoint's vocabulary differs from the dataset's");
        }
        if let Some(e) = every {
            stage.options.checkpoint_every = e;
        }
        let cfg = Config::from(&meta.config);
        let params = Params::from_vec(&cfg, ckpt.params)
            .context("checkpoint parameter count does not match its config")?;
        let n = params.data.len();
        let mut adam = AdamW::new(n, AdamWConfig::default());
        adam.m = ckpt.adam_m;
        adam.v = ckpt.adam_v;
        adam.t = meta.adam_t;
        let reference = match stage.options.stage {
            Stage::Align => Some(
                Params::from_vec(&cfg, std::mem::take(&mut stage.reference_params))
                    .context("the checkpoint's reference weights")?,
            ),
            Stage::Finetune => None,
        };
        // The final row (after the last update) is recomputed if the run is finished again.
        stage.rows.retain(|r| !r.after_last_update);
        Ok(State {
            cfg,
            pretrain_options: meta.options,
            grads: Params::zeros(&cfg),
            adam,
            params,
            reference,
            stage,
            wall_time_s: meta.wall_time_s,
        })
    }

    fn checkpoint(&self, ds: &Dataset) -> Checkpoint {
        let mut stage = self.stage.clone();
        if let Some(r) = &self.reference {
            stage.reference_params = r.data.clone();
        }
        Checkpoint {
            meta: CheckpointMeta {
                step: self.adam.t,
                adam_t: self.adam.t,
                n_params: self.params.data.len() as u64,
                config: ConfigRecord::from(&self.cfg),
                vocab: ds.vocab().to_vec(),
                dataset_hash: ds.content_hash().to_string(),
                // Nothing in a stage draws from the batch stream.
                rng_state: Vec::new(),
                train_loss_acc: self.stage.loss_acc,
                train_loss_count: self.stage.acc_count,
                wall_time_s: self.wall_time_s,
                options: self.pretrain_options.clone(),
                metrics: Vec::new(),
            },
            stage: Some(stage),
            params: self.params.data.clone(),
            adam_m: self.adam.m.clone(),
            adam_v: self.adam.v.clone(),
        }
    }
}

/// The stage's splits as batch counts.
struct Splits {
    train_batches: usize,
    eval_batches: usize,
}

fn splits(ds: &Dataset, o: &StageOptions) -> anyhow::Result<Splits> {
    let (train, eval) = match o.stage {
        Stage::Finetune => (ds.finetune_train().len(), ds.finetune_eval().len()),
        Stage::Align => (ds.alignment_train().len(), ds.alignment_eval().len()),
    };
    if train == 0 || eval == 0 {
        bail!(
            "the dataset has {train} train and {eval} eval items for the {} stage; both must be \
             non-empty",
            o.stage.name()
        );
    }
    Ok(Splits {
        train_batches: batch_count(train, o.batch),
        eval_batches: batch_count(eval, o.batch),
    })
}

fn validate(o: &StageOptions, cfg: &Config) -> anyhow::Result<()> {
    if o.batch == 0 || o.eval_interval == 0 || o.epochs == 0 {
        bail!("batch, eval interval and epochs must be positive");
    }
    if !(o.lr.is_finite() && o.lr >= 0.0) {
        bail!("learning rate must be a finite non-negative number");
    }
    if cfg.context < WIDTH {
        bail!(
            "the model's context {} is shorter than the stage's rows ({WIDTH})",
            cfg.context
        );
    }
    Ok(())
}

/// Buffers of the stage's objective (allocated once).
struct Objective {
    model: TrainModel,
    rows: RowBatch,
    pairs: AlignBatch,
    /// Align: the reference's per-position losses of the current batch [2B·T′].
    ref_losses: Vec<f32>,
    /// Align: the reference's per-position losses of every eval batch (it is frozen, so they are
    /// computed once).
    ref_eval: Vec<Vec<f32>>,
}

/// One batch's numbers.
#[derive(Clone, Copy, Debug)]
struct BatchLoss {
    loss: f64,
    margin: Option<f64>,
}

impl Objective {
    fn new(cfg: &Config, o: &StageOptions) -> anyhow::Result<Objective> {
        let rows = match o.stage {
            Stage::Finetune => o.batch,
            Stage::Align => 2 * o.batch,
        };
        Ok(Objective {
            model: TrainModel::new(cfg, rows, WIDTH)?,
            rows: RowBatch::with_capacity(o.batch),
            pairs: AlignBatch::with_capacity(o.batch),
            ref_losses: vec![0.0; rows * WIDTH],
            ref_eval: Vec::new(),
        })
    }

    /// Forward and backward of train batch `i` into `st.grads`.
    fn train_step(&mut self, st: &mut State, ds: &Dataset, i: usize) -> anyhow::Result<BatchLoss> {
        let o = &st.stage.options;
        match o.stage {
            Stage::Finetune => {
                finetune_batch(&mut self.rows, &ds.finetune_train(), o.batch, i);
                let b = &self.rows;
                let loss = self.model.forward_backward(
                    &st.params,
                    &mut st.grads,
                    &b.inputs,
                    &b.targets,
                    b.rows,
                    b.seq,
                )?;
                Ok(BatchLoss {
                    loss: loss as f64,
                    margin: None,
                })
            }
            Stage::Align => {
                align_batch(&mut self.pairs, &ds.alignment_train(), o.batch, i);
                let reference = st.reference.as_ref().expect("align keeps its reference");
                let (b, padding, cfg) = (&self.pairs.rows, self.pairs.padding(), o.align);
                let n = b.rows * b.seq;
                self.model
                    .forward_loss(reference, &b.inputs, &b.targets, b.rows, b.seq)?;
                self.ref_losses[..n].copy_from_slice(self.model.last_losses(n));
                let half = n / 2;
                let (rp, rn) = self.ref_losses[..n].split_at(half);
                let mut out = None;
                self.model.forward_backward_weighted(
                    &st.params,
                    &mut st.grads,
                    &b.inputs,
                    &b.targets,
                    b.rows,
                    b.seq,
                    |l, w| {
                        let (lp, ln) = l.split_at(half);
                        let (wp, wn) = w.split_at_mut(half);
                        out = Some(align_loss_forward_backward(
                            wp, wn, lp, ln, rp, rn, padding, &cfg,
                        ));
                    },
                )?;
                let AlignLoss { loss, margin } = out.expect("the weights closure ran");
                Ok(BatchLoss {
                    loss,
                    margin: Some(margin),
                })
            }
        }
    }

    /// The reference estimator: the mean over every eval batch of the batch loss (and margin).
    fn evaluate(&mut self, st: &State, ds: &Dataset, batches: usize) -> anyhow::Result<BatchLoss> {
        let o = &st.stage.options;
        let (mut loss, mut margin) = (0.0f64, 0.0f64);
        for i in 0..batches {
            match o.stage {
                Stage::Finetune => {
                    finetune_batch(&mut self.rows, &ds.finetune_eval(), o.batch, i);
                    let b = &self.rows;
                    let l = self
                        .model
                        .forward_loss(&st.params, &b.inputs, &b.targets, b.rows, b.seq)?;
                    loss += l as f64;
                }
                Stage::Align => {
                    align_batch(&mut self.pairs, &ds.alignment_eval(), o.batch, i);
                    let b = &self.pairs.rows;
                    let n = b.rows * b.seq;
                    if self.ref_eval.len() == i {
                        let reference = st.reference.as_ref().expect("align keeps its reference");
                        self.model
                            .forward_loss(reference, &b.inputs, &b.targets, b.rows, b.seq)?;
                        self.ref_eval.push(self.model.last_losses(n).to_vec());
                    }
                    self.model
                        .forward_loss(&st.params, &b.inputs, &b.targets, b.rows, b.seq)?;
                    let l = self.model.last_losses(n);
                    let r = &self.ref_eval[i];
                    let half = n / 2;
                    let out = align_loss_forward(
                        &l[..half],
                        &l[half..],
                        &r[..half],
                        &r[half..],
                        self.pairs.padding(),
                        &o.align,
                    );
                    loss += out.loss;
                    margin += out.margin;
                }
            }
        }
        let k = batches as f64;
        Ok(BatchLoss {
            loss: loss / k,
            margin: (o.stage == Stage::Align).then_some(margin / k),
        })
    }
}

/// The sample for a title through the core: the generated poem, cut at the first `\0` (the
/// core stops there and does not emit it), the prompt stripped.
pub fn sample_poem(
    params: &Params,
    vocab: &[char],
    title: &str,
    max_new: usize,
    seed: u64,
) -> anyhow::Result<String> {
    let prompt = instruction_prompt(title);
    let out = crate::run::sample::sample_through_core(params, vocab, &prompt, max_new, seed)?;
    let poem = out.strip_prefix(prompt.as_str()).unwrap_or(&out);
    Ok(poem.split('\0').next().unwrap_or("").to_string())
}

/// Run (or continue) a stage. See the module docs for the loop. `stop_after`: stop as on
/// Ctrl-C (save, return `interrupted`) once the stage has done this many updates in total.
pub fn run_stage(
    ds: &Dataset,
    start: StageStart,
    io: &RunIo,
    stop_after: Option<u64>,
) -> anyhow::Result<StageOutcome> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(io.threads.max(1))
        .build()
        .context("building the thread pool")?;
    pool.install(|| run_in_pool(ds, start, io, stop_after))
}

fn run_in_pool(
    ds: &Dataset,
    start: StageStart,
    io: &RunIo,
    stop_after: Option<u64>,
) -> anyhow::Result<StageOutcome> {
    let mut st = match start {
        StageStart::Fresh { options, from } => State::fresh(ds, options, *from)?,
        StageStart::Resume {
            checkpoint,
            checkpoint_every,
        } => State::resume(ds, *checkpoint, checkpoint_every)?,
    };
    validate(&st.stage.options, &st.cfg)?;
    let sp = splits(ds, &st.stage.options)?;
    // Checked up front so a bad title fails before any training.
    ds.encode(&instruction_prompt(&st.stage.options.sample_title))
        .map_err(|e| anyhow!("sample title: {e}"))?;
    std::fs::create_dir_all(&io.out_dir)
        .with_context(|| format!("creating {}", io.out_dir.display()))?;
    let ckpt_path = io.out_dir.join(CHECKPOINT_FILE);
    let plot_path = io.out_dir.join(PLOT_FILE);
    let metrics_log = MetricsLog::create(&io.out_dir.join(METRICS_FILE), &st.stage.rows)?;
    let o = st.stage.options.clone();
    let name = o.stage.name();
    let plot_title = format!(
        "tinypoet {name}: {} epochs x {} batches of {}, lr={} (from {})",
        o.epochs, sp.train_batches, o.batch, o.lr, st.stage.parent.path
    );
    let mut obj = Objective::new(&st.cfg, &o)?;
    let total = o.epochs as u64 * sp.train_batches as u64;
    let pb = crate::run::train_loop::progress_bar(io, total, st.adam.t);
    let mut last_msg = Instant::now() - Duration::from_secs(10);
    let mut last_eval = f64::NAN;
    let mut interrupted = false;
    let mut last_good: Option<u64> = checkpoint::load(&ckpt_path)
        .ok()
        .filter(|c| c.stage.is_some())
        .map(|c| c.meta.step);

    // One iteration per pass: (epoch, index) advance together, so the loop ends after the last
    // batch of the last epoch (and at once for a checkpoint past it).
    while st.stage.epoch < o.epochs {
        {
            let (epoch, i) = (st.stage.epoch, st.stage.index);
            let t0 = Instant::now();
            let kept = || match last_good {
                Some(s) => format!(
                    "the last good checkpoint {} (update {s}) is kept",
                    ckpt_path.display()
                ),
                None => "no checkpoint had been written yet".to_string(),
            };
            let bl = match obj.train_step(&mut st, ds, i as usize) {
                Ok(bl) => bl,
                Err(e) => {
                    pb.finish_and_clear();
                    bail!("{name} stopped at epoch {epoch} step {i}: {e}; {}", kept());
                }
            };
            let grad_norm = global_norm(&st.grads.data);
            let train_time = t0.elapsed().as_secs_f64();
            if !bl.loss.is_finite() || !grad_norm.is_finite() {
                pb.finish_and_clear();
                bail!(
                    "{name} stopped at epoch {epoch} step {i}: loss {}, gradient norm {grad_norm}; {}",
                    bl.loss,
                    kept()
                );
            }
            if i % o.eval_interval == 0 {
                let row = evaluation(&mut st, ds, &mut obj, &sp, false)?;
                last_eval = row.eval_loss;
                report(io, &pb, &row, &o);
                metrics_log.append(&row)?;
                st.stage.rows.push(row);
                plot::write_stage_svg(
                    &plot_path,
                    &st.stage.rows,
                    o.stage,
                    sp.train_batches as u64,
                    &plot_title,
                )?;
            }
            st.stage.loss_acc += bl.loss;
            st.stage.margin_acc += bl.margin.unwrap_or(0.0);
            st.stage.acc_count += 1;
            let t1 = Instant::now();
            st.adam.step(&mut st.params.data, &st.grads.data, o.lr);
            st.wall_time_s += train_time + t1.elapsed().as_secs_f64();
            st.stage.index += 1;
            if st.stage.index as usize == sp.train_batches {
                // The reference's sums restart with every epoch.
                st.stage.epoch += 1;
                st.stage.index = 0;
                st.stage.loss_acc = 0.0;
                st.stage.margin_acc = 0.0;
                st.stage.acc_count = 0;
            }

            pb.inc(1);
            if !pb.is_hidden() && last_msg.elapsed() >= Duration::from_millis(500) {
                pb.set_message(format!("loss {:.4}  eval {last_eval:.4}", bl.loss));
                last_msg = Instant::now();
            }
            let updates = st.adam.t;
            let stop = io.interrupt.is_some_and(|f| f.load(Ordering::SeqCst))
                || stop_after.is_some_and(|n| updates >= n && updates < total);
            let periodic = o.checkpoint_every > 0 && updates % o.checkpoint_every == 0;
            if (periodic && updates < total) || stop {
                crate::run::train_loop::save(io, &ckpt_path, &st.checkpoint(ds))?;
                last_good = Some(updates);
            }
            if stop {
                interrupted = true;
                break;
            }
        }
    }

    if !interrupted {
        let row = evaluation(&mut st, ds, &mut obj, &sp, true)?;
        report(io, &pb, &row, &o);
        metrics_log.append(&row)?;
        st.stage.rows.push(row);
        plot::write_stage_svg(
            &plot_path,
            &st.stage.rows,
            o.stage,
            sp.train_batches as u64,
            &plot_title,
        )?;
        crate::run::train_loop::save(io, &ckpt_path, &st.checkpoint(ds))?;
    }
    pb.finish_and_clear();
    if interrupted && io.print {
        crate::errln!(
            "interrupted: saved {} after {} updates; continue with --resume {}",
            ckpt_path.display(),
            st.adam.t,
            ckpt_path.display()
        );
    }
    Ok(StageOutcome {
        updates: st.adam.t,
        interrupted,
        checkpoint_path: ckpt_path,
        rows: st.stage.rows,
    })
}

/// Evaluation and sample at the current position (`last`: the final one after the last update;
/// it leaves the train sums alone).
fn evaluation(
    st: &mut State,
    ds: &Dataset,
    obj: &mut Objective,
    sp: &Splits,
    last: bool,
) -> anyhow::Result<StageRow> {
    let count = st.stage.acc_count;
    let mean = |s: f64| if count == 0 { 0.0 } else { s / count as f64 };
    let (train_loss, train_margin) = (mean(st.stage.loss_acc), mean(st.stage.margin_acc));
    if !last {
        st.stage.loss_acc = 0.0;
        st.stage.margin_acc = 0.0;
        st.stage.acc_count = 0;
    }
    let ev = obj.evaluate(st, ds, sp.eval_batches)?;
    let o = &st.stage.options;
    let updates = st.adam.t;
    let sample = sample_poem(
        &st.params,
        ds.vocab(),
        &o.sample_title,
        o.sample_len,
        crate::run::train_loop::sample_seed(o.seed, updates),
    )?;
    let align = o.stage == Stage::Align;
    Ok(StageRow {
        stage: o.stage,
        epoch: if last { o.epochs } else { st.stage.epoch },
        step: if last { 0 } else { st.stage.index },
        global_step: updates,
        // (The final row has no train interval: 0, the reference's value for none.)
        train_loss: if last { 0.0 } else { train_loss },
        eval_loss: ev.loss,
        train_margin: (align && !last).then_some(train_margin),
        eval_margin: ev.margin,
        after_last_update: last,
        train_time_s: st.wall_time_s,
        sample,
    })
}

fn report(io: &RunIo, pb: &indicatif::ProgressBar, row: &StageRow, o: &StageOptions) {
    if !io.print {
        return;
    }
    pb.suspend(|| {
        let head = if row.after_last_update {
            format!("Final (after {} updates)", row.global_step)
        } else {
            format!(
                "Epoch {}, step {}, train loss {:.4}",
                row.epoch, row.step, row.train_loss
            )
        };
        match (row.train_margin, row.eval_margin) {
            (tm, Some(em)) => crate::outln!(
                "{head}, evaluate loss {:.4}{}, evaluate reward margin {em:.4}",
                row.eval_loss,
                tm.map(|m| format!(", train reward margin {m:.4}"))
                    .unwrap_or_default()
            ),
            _ => crate::outln!("{head}, evaluate loss {:.4}", row.eval_loss),
        }
        crate::outln!("Generate a complete poem for title {}:", o.sample_title);
        crate::outln!("{}", row.sample);
    });
}
