//! The per-character simplified -> traditional table (core/src/simplified.rs): well formed, and
//! every target is in the bundled model's vocabulary.

use tinypoet_core::simplified::{to_traditional, TABLE};
use tinypoet_core::Model;

#[test]
fn table_is_sorted_and_maps_to_other_characters() {
    assert!(TABLE.len() > 2000, "{}", TABLE.len());
    for w in TABLE.windows(2) {
        assert!(w[0].0 < w[1].0, "{:?} {:?}", w[0], w[1]);
    }
    for &(s, t) in TABLE {
        assert_ne!(s, t);
        assert_eq!(to_traditional(s), Some(t));
    }
}

#[test]
fn everyday_titles_convert() {
    let conv = |s: &str| -> String { s.chars().map(|c| to_traditional(c).unwrap_or(c)).collect() };
    assert_eq!(conv("静夜思"), "靜夜思");
    assert_eq!(conv("黄河远上白云间"), "黃河遠上白雲間");
    assert_eq!(
        conv("东归留辞沣东寄苗发紫阁别愁迟"),
        "東歸留辭灃東寄苗發紫閣別愁遲"
    );
    // Traditional characters and punctuation stay as they are.
    assert_eq!(conv("春夜喜雨，靜"), "春夜喜雨，靜");
    // Phrase-level choices are lost: OpenCC writes 頭髮 (hair); one character at a time gives 發.
    assert_eq!(conv("头发"), "頭發");
}

#[test]
fn every_target_is_in_the_bundled_vocabulary() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/tinypoet-tang-int8.tpb"
    );
    let bytes = std::fs::read(path).unwrap();
    let model = Model::load(&bytes).unwrap();
    let tok = model.tokenizer();
    for &(s, t) in TABLE {
        assert!(tok.id(t).is_ok(), "{s} -> {t} is not in the vocabulary");
    }
}
