//! Where the alignment margin comes from (docs/results-stages.md): the eval pairs' per-position
//! rewards of an aligned checkpoint against its frozen reference (the checkpoint it started
//! from), split by which side has a real target at that position, as the eval margin weighs
//! them (0.8·reward⁺ + 0.2·reward⁻, mean over every B·256 position, mean over the batches).
//!
//! `cargo run --release -p tinypoet-trainer --example align_breakdown -- POLICY REF DATA`
//! (POLICY, REF: checkpoints or f16 blobs; DATA: the prepared dataset)
use tinypoet_trainer::data::corpus::Dataset;
use tinypoet_trainer::data::stage_batch::{align_batch, batch_count, AlignBatch};
use tinypoet_trainer::nn::model::Model;
use tinypoet_trainer::nn::ops::head_ce::IGNORE;
use tinypoet_trainer::stages::start::load_start;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 4 {
        anyhow::bail!("usage: align_breakdown POLICY REF DATA");
    }
    let policy = load_start(a[1].as_ref())?.params;
    let reference = load_start(a[2].as_ref())?.params;
    let ds = Dataset::load(&a[3])?;
    let pairs = ds.alignment_eval();
    let cfg = *policy.config();
    let mut model: Model<f32> = Model::new(&cfg, 32, 256)?;
    let mut batch = AlignBatch::with_capacity(16);
    // [category][0 = reward+, 1 = reward-], category: 0 both real, 1 pos only, 2 neg only
    let mut sums = [[0f64; 2]; 3];
    let mut counts = [0u64; 3];
    let mut eot = [0f64; 2];
    let mut margin_total = 0f64;
    let n_batches = batch_count(pairs.len(), 16);
    for i in 0..n_batches {
        align_batch(&mut batch, &pairs, 16, i);
        let b = &batch.rows;
        let n = b.rows * b.seq;
        model.forward_loss(&policy, &b.inputs, &b.targets, b.rows, b.seq)?;
        let l = model.last_losses(n).to_vec();
        model.forward_loss(&reference, &b.inputs, &b.targets, b.rows, b.seq)?;
        let r = model.last_losses(n).to_vec();
        let half = n / 2;
        let total = (batch.pairs * 256) as f64;
        let mut m = 0f64;
        for t in 0..half {
            let (tp, tn) = (b.targets[t], b.targets[half + t]);
            let rp = (r[t] - l[t]) as f64;
            let rn = (l[half + t] - r[half + t]) as f64;
            let c = match (tp != IGNORE, tn != IGNORE) {
                (true, true) => 0,
                (true, false) => 1,
                (false, true) => 2,
                (false, false) => continue,
            };
            sums[c][0] += 0.8 * rp / total / n_batches as f64;
            sums[c][1] += 0.2 * rn / total / n_batches as f64;
            counts[c] += 1;
            if tp == 0 {
                eot[0] += 0.8 * rp / total / n_batches as f64;
            }
            if tn == 0 {
                eot[1] += 0.2 * rn / total / n_batches as f64;
            }
            m += 0.8 * rp + 0.2 * rn;
        }
        margin_total += m / total;
    }
    println!("eval margin {:.4}", margin_total / n_batches as f64);
    for (c, name) in ["both real", "positive only", "negative only"]
        .iter()
        .enumerate()
    {
        println!(
            "{name:>14}: {:>7} positions, 0.8·reward+ {:+.4}, 0.2·reward- {:+.4}",
            counts[c], sums[c][0], sums[c][1]
        );
    }
    println!(
        "   end-of-text targets: 0.8·reward+ {:+.4}, 0.2·reward- {:+.4}",
        eot[0], eot[1]
    );
    Ok(())
}
