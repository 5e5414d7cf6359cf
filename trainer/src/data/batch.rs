//! Training batches: the pretrain sampler (random windows of the token stream). The finetune and
//! alignment batch builders belong here too.

use crate::nn::mt19937::Mt19937;

/// Fill `inputs`/`targets` with `b` random windows of `t` tokens, starts drawn from `rng` the
/// way the reference's `get_batch_pretrain` does (torch `randint(0, len − t, (b,))`).
pub fn random_batch(
    data: &[u16],
    rng: &mut Mt19937,
    b: usize,
    t: usize,
    inputs: &mut [u16],
    targets: &mut [u16],
) {
    let high = (data.len() - t) as u32;
    for row in 0..b {
        let s = rng.torch_randint(high) as usize;
        inputs[row * t..(row + 1) * t].copy_from_slice(&data[s..s + t]);
        targets[row * t..(row + 1) * t].copy_from_slice(&data[s + 1..s + t + 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_batch_matches_the_reference_draws() {
        // torch.manual_seed(2024); randint(0, high, (16,)) draws next_u32() % high.
        let data: Vec<u16> = (0..1000u32).map(|i| (i % 7) as u16).collect();
        let mut a = Mt19937::init_genrand(2024);
        let mut b = Mt19937::init_genrand(2024);
        let (mut x, mut y) = (vec![0u16; 2 * 8], vec![0u16; 2 * 8]);
        random_batch(&data, &mut a, 2, 8, &mut x, &mut y);
        for row in 0..2 {
            let s = (b.next_u32() % (1000 - 8)) as usize;
            assert_eq!(&x[row * 8..row * 8 + 8], &data[s..s + 8]);
            assert_eq!(&y[row * 8..row * 8 + 8], &data[s + 1..s + 9]);
        }
    }
}
