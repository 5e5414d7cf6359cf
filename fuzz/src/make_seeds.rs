//! Write the seed corpus: `cargo run --release --bin make_seeds -- corpus/parse_blob`.
fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "corpus/parse_blob".into());
    std::fs::create_dir_all(&dir).unwrap();
    for (i, b) in tinypoet_core_fuzz::seed_blobs().iter().enumerate() {
        // every seed is a valid, runnable blob (f16 and int8)
        let m = tinypoet_core::Model::load(b).expect("seed blob loads");
        tinypoet_core_fuzz::exercise(b);
        println!("seed {i}: int8 group {:?}", m.q8_group());
        std::fs::write(format!("{dir}/seed_{i}.tpb"), b).unwrap();
        println!("{dir}/seed_{i}.tpb: {} bytes", b.len());
    }
}
