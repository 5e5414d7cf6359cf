//! The finetune and alignment stages on a tiny model and a small generated dataset (never the
//! real corpus): `--resume` inside a stage is bit-identical (a run stopped mid-epoch and resumed
//! ends with exactly the state and log of a run that never stopped), the stage record, and
//! starting from a blob (f16 weights upcast to f32).

use tinypoet_trainer::data::corpus::dataset::DatasetParts;
use tinypoet_trainer::data::corpus::text::instruction_prompt;
use tinypoet_trainer::data::corpus::{Dataset, Items, Vocab};
use tinypoet_trainer::io::export::{self, ManifestInfo};
use tinypoet_trainer::nn::init::{golden_params, SplitMix64};
use tinypoet_trainer::nn::params::{Config, Params};
use tinypoet_trainer::run::checkpoint::manifest_for;
use tinypoet_trainer::run::checkpoint::{self, Checkpoint};
use tinypoet_trainer::run::stage_record::{Parent, Stage, StageOptions, StageRow};
use tinypoet_trainer::run::train_loop::RunIo;
use tinypoet_trainer::stages::start::{load_start, StartWeights};
use tinypoet_trainer::stages::tune::{self as stages, StageStart};

const POEM_CHARS: &str = "春夜喜雨好知時節當乃發生隨風潛入細無聲野徑雲俱黑江船火獨明，。\n";

/// Instruction texts of random titles and poems (some longer than 256), 40 finetune items and
/// 22 pairs, split 90/10 like the real dataset.
fn dataset() -> Dataset {
    let chars: Vec<char> = POEM_CHARS.chars().collect();
    let mut sm = SplitMix64(5);
    let mut text = |n: usize| -> String {
        (0..n)
            .map(|_| chars[(sm.next() % chars.len() as u64) as usize])
            .collect()
    };
    let mut item = |poem_len: usize| {
        let title = text(4);
        format!("{}{}", instruction_prompt(&title), text(poem_len))
    };
    let lens = |k: usize| [30, 90, 12, 300, 55, 7][k % 6];
    let ft: Vec<String> = (0..40).map(|k| item(lens(k))).collect();
    let pos: Vec<String> = (0..22).map(|k| item(lens(k + 1))).collect();
    let neg: Vec<String> = (0..22).map(|k| item(lens(k + 3))).collect();
    let vocab = Vocab::from_texts(
        ft.iter()
            .chain(&pos)
            .chain(&neg)
            .map(String::as_str)
            .chain([POEM_CHARS]),
    )
    .unwrap();
    let items = |texts: &[String]| {
        let mut it = Items::new();
        for t in texts {
            it.push(&vocab.encode(t).unwrap());
        }
        it
    };
    let pretrain = vocab.encode(&ft.concat()).unwrap();
    Dataset::from_parts(DatasetParts {
        recipe: "test".into(),
        recipe_version: 1,
        source_kind: "test".into(),
        source_name: "generated".into(),
        source_sha256: [0; 32],
        poems: 0,
        dataset_length: 0,
        pretrain_train_tokens: pretrain.len() * 9 / 10,
        pretrain,
        finetune: items(&ft),
        finetune_train_items: 36,
        align_pos: items(&pos),
        align_neg: items(&neg),
        alignment_train_pairs: 18,
        vocab,
    })
}

fn config(vocab: usize) -> Config {
    Config {
        vocab_size: vocab,
        dim: 16,
        n_heads: 2,
        n_layers: 1,
        context: 256,
        ffn_dim: 32,
        ln_eps: 1e-5,
        attn_scale: 16f32.powf(-0.5),
    }
}

fn start_weights(ds: &Dataset) -> StartWeights {
    StartWeights {
        params: golden_params(&config(ds.vocab().len()), 3),
        vocab: ds.vocab().to_vec(),
        parent: Parent {
            kind: "test".into(),
            path: "golden_params(3)".into(),
            sha256: String::new(),
            recipe: "golden".into(),
            steps: 0,
        },
        pretrain_options: None,
    }
}

/// 4 items (pairs) per batch: finetune 9 batches per epoch, align 5 (the last partial); eval
/// every 2 batches; 2 epochs.
fn options(stage: Stage) -> StageOptions {
    StageOptions {
        lr: if stage == Stage::Finetune { 3e-3 } else { 1e-3 },
        epochs: 2,
        batch: 4,
        eval_interval: 2,
        sample_title: "春夜".into(),
        sample_len: 12,
        checkpoint_every: 0,
        ..StageOptions::reference(stage)
    }
}

fn io(dir: &std::path::Path) -> RunIo<'static> {
    RunIo {
        out_dir: dir.to_path_buf(),
        interrupt: None,
        threads: 2,
        progress: false,
        print: std::env::var_os("STAGE_TEST_PRINT").is_some(),
        on_save: None,
    }
}

fn timeless(rows: &[StageRow]) -> Vec<StageRow> {
    rows.iter()
        .map(|r| StageRow {
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
    let (sa, sb) = (a.stage.as_ref().unwrap(), b.stage.as_ref().unwrap());
    assert_eq!((sa.epoch, sa.index), (sb.epoch, sb.index));
    assert_eq!(sa.loss_acc.to_bits(), sb.loss_acc.to_bits());
    assert_eq!(sa.margin_acc.to_bits(), sb.margin_acc.to_bits());
    assert_eq!(sa.acc_count, sb.acc_count);
    assert_eq!(timeless(&sa.rows), timeless(&sb.rows));
    assert_eq!(sa.options, sb.options);
    assert!(bits(&sa.reference_params) == bits(&sb.reference_params));
}

/// A full stage run, and the same stage stopped after `stop` updates and resumed.
fn straight_and_resumed(
    ds: &Dataset,
    stage: Stage,
    from: impl Fn() -> StartWeights,
    stop: u64,
) -> (Checkpoint, Checkpoint) {
    let total = 2 * (if stage == Stage::Finetune { 9 } else { 5 });
    let fresh = || StageStart::Fresh {
        options: options(stage),
        from: Box::new(from()),
    };
    let straight = tempfile::tempdir().unwrap();
    let out = stages::run_stage(ds, fresh(), &io(straight.path()), None).unwrap();
    assert_eq!((out.updates, out.interrupted), (total, false));
    let a = checkpoint::load(&out.checkpoint_path).unwrap();

    let split = tempfile::tempdir().unwrap();
    let first = stages::run_stage(ds, fresh(), &io(split.path()), Some(stop)).unwrap();
    assert_eq!((first.updates, first.interrupted), (stop, true));
    let mid = checkpoint::load(&first.checkpoint_path).unwrap();
    let second = stages::run_stage(
        ds,
        StageStart::Resume {
            checkpoint: Box::new(mid),
            checkpoint_every: None,
        },
        &io(split.path()),
        None,
    )
    .unwrap();
    assert_eq!((second.updates, second.interrupted), (total, false));
    let b = checkpoint::load(&second.checkpoint_path).unwrap();
    // The metrics file was rewritten from the checkpoint and continued: same rows.
    let lines = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(lines(straight.path()), lines(split.path()));
    (a, b)
}

#[test]
fn finetune_resume_is_bit_identical_and_records_the_stage() {
    let ds = dataset();
    // Stop mid-epoch 1, between two evaluations (update 13 = epoch 1, batch 4 next).
    let (a, b) = straight_and_resumed(&ds, Stage::Finetune, || start_weights(&ds), 13);
    assert_same_state(&a, &b);
    let st = a.stage.as_ref().unwrap();
    assert_eq!(st.options.stage, Stage::Finetune);
    assert_eq!(st.parent.path, "golden_params(3)");
    assert!(st.reference_params.is_empty());
    // Rows at steps 0, 2, 4, 6, 8 of both epochs, then the final one.
    let steps: Vec<(u32, u64)> = st.rows.iter().map(|r| (r.epoch, r.step)).collect();
    let mut want: Vec<(u32, u64)> = (0..2)
        .flat_map(|e| (0..9).step_by(2).map(move |s| (e, s)))
        .collect();
    want.push((2, 0));
    assert_eq!(steps, want);
    assert!(st.rows.last().unwrap().after_last_update);
    // Each epoch's step 0 prints 0 (the sums restart), and finetuning lowers the eval loss.
    assert!(st
        .rows
        .iter()
        .filter(|r| r.step == 0 && !r.after_last_update)
        .all(|r| r.train_loss == 0.0));
    assert!(st.rows.last().unwrap().eval_loss < st.rows[0].eval_loss);
    // The manifest of an exported stage checkpoint names the stage and the parent.
    let info = manifest_for(&a);
    assert!(
        info.recipe.contains("tinypoet finetune lr=0.003"),
        "{}",
        info.recipe
    );
    assert!(info.recipe.contains("golden_params(3)"), "{}", info.recipe);
}

#[test]
fn align_resume_is_bit_identical_and_starts_at_ln2() {
    let ds = dataset();
    let (a, b) = straight_and_resumed(&ds, Stage::Align, || start_weights(&ds), 7);
    assert_same_state(&a, &b);
    let st = a.stage.as_ref().unwrap();
    let first = &st.rows[0];
    // Policy = reference at the start: margin 0 at every position, loss ln 2.
    assert!(
        (first.eval_loss - std::f64::consts::LN_2).abs() < 1e-12,
        "{first:?}"
    );
    assert_eq!(first.eval_margin, Some(0.0));
    // The frozen reference is the starting weights, kept in the checkpoint.
    let start = start_weights(&ds).params;
    assert!(st.reference_params == start.data);
    // Alignment raises the margin.
    assert!(st.rows.last().unwrap().eval_margin.unwrap() > 0.0);
}

/// `--from BLOB`: the f16 weights come back as f32 exactly (each value the f16 rounding of the
/// exported parameter), with the blob recorded as the parent.
#[test]
fn a_stage_starts_from_an_f16_blob() {
    let ds = dataset();
    let p: Params = golden_params(&config(ds.vocab().len()), 3);
    let info = ManifestInfo {
        recipe: "tinypoet pretrain test".into(),
        steps: 42,
        ..ManifestInfo::unknown()
    };
    let bytes = export::blob_bytes(&p, ds.vocab(), &info).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tpb");
    std::fs::write(&path, &bytes).unwrap();
    let w = load_start(&path).unwrap();
    assert_eq!(w.vocab, ds.vocab());
    assert_eq!(w.parent.kind, "blob");
    assert_eq!(w.parent.steps, 42);
    assert!(w.parent.recipe.starts_with("tinypoet pretrain test"));
    for (&a, &b) in w.params.data.iter().zip(&p.data) {
        assert_eq!(a, half::f16::from_f32(b).to_f32());
    }
    // An int8 blob is refused with a clear error.
    let int8 = export::int8_dtype_for(p.config()).unwrap();
    let q = export::blob_bytes_as(&p, ds.vocab(), &info, int8).unwrap();
    std::fs::write(&path, &q).unwrap();
    let e = load_start(&path).err().unwrap().to_string();
    assert!(e.contains("only from f16 weights"), "{e}");
}
