//! Batches of the finetune and alignment stages (spec §2, "Finetune/alignment batches").
//!
//! The items (instruction texts `<INS>請用以下題目寫一首詩<INP>{title}<RES>{poem}`, already
//! tokenised in the prepared dataset) go through in order, in groups of [`BATCH`] with the last
//! group partial, the same groups every epoch. Each item becomes one row of the reference's fixed
//! width [`WIDTH`] (L = min(len, 256)):
//!
//! ```text
//! input[0..L)  = item[0..L)          input[L..256)  = 0 (`\0`, the padding id)
//! label[0..L−1) = item[1..L)          label[L−1..256) = 0
//! then every label 0 except the first one becomes IGNORE (PyTorch's −100)
//! ```
//!
//! so the position of the last real input character learns to predict `\0` (end-of-text) and the
//! padding is ignored; an item longer than 256 is cut and learns `\0` at position 255.
//!
//! The rows built here are cropped to the batch's longest row (`seq` ≤ 256): every position
//! past it is padding with an ignored label, and with causal attention the kept positions'
//! outputs do not depend on later ones, so the masked-mean loss and its gradient are exactly
//! those of the 256-wide batch, for a fraction of the work. The alignment loss, which averages
//! over all `B·256` positions padding included, adds the cropped positions analytically
//! ([`AlignBatch::padding`]).

use crate::nn::ops::head_ce::IGNORE;

/// The reference's row width.
pub const WIDTH: usize = 256;
/// The reference's batch size (items or pairs per batch).
pub const BATCH: usize = 16;

/// Number of batches over `items` items in groups of `batch` (the last one partial).
pub fn batch_count(items: usize, batch: usize) -> usize {
    items.div_ceil(batch)
}

/// One row exactly as the reference builds it, `width` wide: writes `input` and `labels`
/// (`width` each) and returns L = min(len, width), the positions that are not padding.
///
/// # Panics
/// If `input` or `labels` is not `width` long.
pub fn instruction_row(item: &[u16], width: usize, input: &mut [u16], labels: &mut [u16]) -> usize {
    assert!(input.len() == width && labels.len() == width, "row buffers");
    let l = item.len().min(width);
    input[..l].copy_from_slice(&item[..l]);
    input[l..].fill(0);
    if l > 0 {
        labels[..l - 1].copy_from_slice(&item[1..l]);
    }
    labels[l.saturating_sub(1)..].fill(0);
    // Every 0 label except the first becomes ignored (done literally: an item holding `\0`
    // itself would end its trained part there, as in the reference).
    let mut seen = false;
    for y in labels.iter_mut().filter(|y| **y == 0) {
        if seen {
            *y = IGNORE;
        }
        seen = true;
    }
    l
}

/// A batch of rows cropped to its longest row: `inputs`/`targets` [rows, seq] row-major.
#[derive(Clone, Debug, Default)]
pub struct RowBatch {
    pub inputs: Vec<u16>,
    pub targets: Vec<u16>,
    pub rows: usize,
    pub seq: usize,
}

impl RowBatch {
    /// Preallocated for up to `max_rows` rows of [`WIDTH`].
    pub fn with_capacity(max_rows: usize) -> RowBatch {
        RowBatch {
            inputs: Vec::with_capacity(max_rows * WIDTH),
            targets: Vec::with_capacity(max_rows * WIDTH),
            rows: 0,
            seq: 0,
        }
    }

    /// Rebuild from `items`, every row cropped to `seq` (≥ each item's min(len, 256), ≤ 256).
    fn fill<'a>(&mut self, items: impl Iterator<Item = &'a [u16]>, seq: usize) {
        let mut row_in = [0u16; WIDTH];
        let mut row_lb = [0u16; WIDTH];
        self.inputs.clear();
        self.targets.clear();
        self.rows = 0;
        self.seq = seq;
        for item in items {
            let l = instruction_row(item, WIDTH, &mut row_in, &mut row_lb);
            debug_assert!(l <= seq);
            self.inputs.extend_from_slice(&row_in[..seq]);
            self.targets.extend_from_slice(&row_lb[..seq]);
            self.rows += 1;
        }
    }
}

/// The width a group of items needs: the longest min(len, 256), at least 1.
fn cropped_width<'a>(items: impl Iterator<Item = &'a [u16]>) -> usize {
    items.map(|i| i.len().min(WIDTH)).max().unwrap_or(0).max(1)
}

/// Finetune batch `index` of `items` (groups of `batch`): the rows, cropped to the longest.
///
/// # Panics
/// If `index` is past the last batch.
pub fn finetune_batch(
    out: &mut RowBatch,
    items: &crate::data::corpus::ItemsView<'_>,
    batch: usize,
    index: usize,
) {
    let (a, b) = group(items.len(), batch, index);
    let group = items.slice(a..b);
    let seq = cropped_width(group.iter());
    out.fill(group.iter(), seq);
}

/// An alignment batch: the positive rows then the negative rows ([2·pairs, seq]; pair k's sides
/// are rows k and pairs + k), both sides cropped to the same width so positions pair up.
#[derive(Clone, Debug, Default)]
pub struct AlignBatch {
    pub rows: RowBatch,
    /// Pairs in the batch.
    pub pairs: usize,
}

impl AlignBatch {
    pub fn with_capacity(max_pairs: usize) -> AlignBatch {
        AlignBatch {
            rows: RowBatch::with_capacity(2 * max_pairs),
            pairs: 0,
        }
    }

    /// Positions of one side in the reference's 256-wide batch that the crop removed
    /// (pairs·(256 − seq)): padding on both sides, margin 0, `ln 2` each in the loss.
    pub fn padding(&self) -> usize {
        self.pairs * (WIDTH - self.rows.seq)
    }
}

/// Alignment batch `index` of `pairs` (groups of `batch`).
///
/// # Panics
/// If `index` is past the last batch.
pub fn align_batch(
    out: &mut AlignBatch,
    pairs: &crate::data::corpus::PairsView<'_>,
    batch: usize,
    index: usize,
) {
    let (a, b) = group(pairs.len(), batch, index);
    let (pos, neg) = (pairs.positive.slice(a..b), pairs.negative.slice(a..b));
    let seq = cropped_width(pos.iter().chain(neg.iter()));
    out.rows.fill(pos.iter().chain(neg.iter()), seq);
    out.pairs = b - a;
}

/// Items `[a, b)` of group `index`.
fn group(len: usize, batch: usize, index: usize) -> (usize, usize) {
    assert!(batch > 0, "batch size");
    let a = index * batch;
    assert!(
        a < len,
        "batch {index} is past the last of {}",
        batch_count(len, batch)
    );
    (a, (a + batch).min(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_masks_all_but_the_first_end_of_text() {
        let mut inp = [9u16; 8];
        let mut lab = [9u16; 8];
        let l = instruction_row(&[5, 6, 7], 8, &mut inp, &mut lab);
        assert_eq!(l, 3);
        assert_eq!(inp, [5, 6, 7, 0, 0, 0, 0, 0]);
        let i = IGNORE;
        assert_eq!(lab, [6, 7, 0, i, i, i, i, i]);
    }

    #[test]
    fn long_item_is_cut_and_learns_end_of_text_at_the_last_position() {
        let item: Vec<u16> = (1..=10).collect();
        let mut inp = [0u16; 4];
        let mut lab = [0u16; 4];
        assert_eq!(instruction_row(&item, 4, &mut inp, &mut lab), 4);
        assert_eq!(inp, [1, 2, 3, 4]);
        assert_eq!(lab, [2, 3, 4, 0]);
    }

    #[test]
    fn item_of_exactly_the_width_and_of_one_token() {
        let mut inp = [0u16; 3];
        let mut lab = [0u16; 3];
        instruction_row(&[1, 2, 3], 3, &mut inp, &mut lab);
        assert_eq!(lab, [2, 3, 0]);
        instruction_row(&[4], 3, &mut inp, &mut lab);
        assert_eq!((inp, lab), ([4, 0, 0], [0, IGNORE, IGNORE]));
    }

    #[test]
    fn groups_and_crop() {
        let mut items = crate::data::corpus::Items::new();
        for len in [3usize, 5, 2, 300, 1] {
            items.push(&vec![1u16; len]);
        }
        let v = items.view();
        assert_eq!(batch_count(v.len(), 2), 3);
        let mut b = RowBatch::with_capacity(2);
        finetune_batch(&mut b, &v, 2, 0);
        assert_eq!((b.rows, b.seq), (2, 5));
        assert_eq!(&b.targets[..5], &[1, 1, 0, IGNORE, IGNORE]);
        finetune_batch(&mut b, &v, 2, 1);
        assert_eq!((b.rows, b.seq), (2, 256));
        finetune_batch(&mut b, &v, 2, 2);
        assert_eq!((b.rows, b.seq), (1, 1));
        assert_eq!(b.targets, [0]);
    }
}
