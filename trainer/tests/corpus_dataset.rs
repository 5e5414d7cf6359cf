//! The `.tpd` dataset file: round trip, and a typed error (never a panic) for every kind of
//! damaged file.

use sha2::{Digest, Sha256};
use tinypoet_trainer::data::corpus::{
    self, dataset::FORMAT_VERSION, Dataset, DatasetError, FormatError, InputFormat,
};

/// A small dataset through the full Tang recipe (JSON poem list input).
fn small_dataset() -> Dataset {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("poems.json");
    let pool: Vec<char> = "春夜喜雨好知時節當乃發生隨風潛入物潤細無聲野徑雲俱黑江船火獨明𠀋𠀌"
        .chars()
        .collect();
    let poems: Vec<serde_json::Value> = (0..60)
        .map(|i| {
            let n = if i % 3 == 0 { 7 } else { 5 };
            let l = |k: usize| -> String {
                let a: String = (0..n).map(|j| pool[(i * 5 + j + k) % pool.len()]).collect();
                let b: String = (0..n).map(|j| pool[(i * 3 + j * 2 + k) % pool.len()]).collect();
                format!("{a}，{b}。")
            };
            serde_json::json!({"title": format!("題{}", pool[i % pool.len()]), "paragraphs": [l(0), l(1)]})
        })
        .collect();
    std::fs::write(&p, serde_json::to_string(&poems).unwrap()).unwrap();
    corpus::prepare_path(&p, InputFormat::Auto).unwrap().0
}

/// Replace the trailing checksum so that a deliberately edited file passes it.
fn reseal(bytes: &mut [u8]) {
    let n = bytes.len() - 32;
    let sum = Sha256::digest(&bytes[..n]);
    bytes[n..].copy_from_slice(&sum);
}

fn header_len(bytes: &[u8]) -> usize {
    u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize
}

#[test]
fn round_trip_through_a_file() {
    let ds = small_dataset();
    assert!(!ds.alignment().is_empty(), "the sample should have pairs");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("s.tpd");
    ds.save(&path).unwrap();
    let back = Dataset::load(&path).unwrap();
    assert_eq!(back, ds);
    assert_eq!(back.content_hash(), ds.content_hash());
    assert_eq!(back.content_hash().len(), 64);
    assert_eq!(back.recipe(), (corpus::TANG_RECIPE, corpus::RECIPE_VERSION));
    // The only file in the folder is the dataset (no temp file left).
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["s.tpd"]);
}

#[test]
fn accessors_are_consistent() {
    let ds = small_dataset();
    let ft = ds.finetune();
    assert_eq!(
        ds.finetune_train().len() + ds.finetune_eval().len(),
        ft.len()
    );
    assert_eq!(ds.finetune_eval().get(0), ft.get(ds.finetune_train().len()));
    assert_eq!(ft.get(ft.len()), None);
    let al = ds.alignment();
    assert_eq!(
        ds.alignment_eval().get(0),
        al.get(ds.alignment_train().len())
    );
    assert_eq!(al.get(al.len()), None);
    assert_eq!(
        ds.pretrain_train().len() + ds.pretrain_eval().len(),
        ds.pretrain().len()
    );
    // encode/decode and their errors.
    let ids = ds.encode("春夜𠀋").unwrap();
    assert_eq!(ds.decode(&ids).unwrap(), "春夜𠀋");
    let e = ds.encode("春X").unwrap_err();
    assert_eq!((e.ch, e.position), ('X', 1));
    let bad = ds.vocab_size() as u16;
    assert_eq!(ds.decode(&[0, bad]).unwrap_err().position, 1);
}

#[test]
fn every_truncation_is_reported_as_truncated() {
    let bytes = small_dataset().to_bytes();
    let h = header_len(&bytes);
    let cuts = [
        0,
        1,
        7,
        8,
        12,
        15,
        16,
        17,
        16 + h / 2,
        16 + h,
        16 + h + 1,
        bytes.len() / 2,
    ]
    .into_iter()
    .chain(bytes.len() - 40..bytes.len());
    for cut in cuts {
        match Dataset::from_bytes(&bytes[..cut]) {
            Err(FormatError::Truncated { expected, actual }) => {
                assert_eq!(actual, cut as u64);
                assert!(expected > actual);
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn flipped_bytes_fail_the_checksum() {
    let bytes = small_dataset().to_bytes();
    let h = header_len(&bytes);
    for pos in [16 + h, 16 + h + 100, bytes.len() - 40, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[pos] ^= 0x01;
        assert_eq!(
            Dataset::from_bytes(&b).unwrap_err(),
            FormatError::ChecksumMismatch,
            "flip at {pos}"
        );
    }
}

#[test]
fn wrong_magic_version_and_trailing_bytes() {
    let bytes = small_dataset().to_bytes();
    assert_eq!(
        Dataset::from_bytes(b"\x89PNG\r\n\x1a\n....................................").unwrap_err(),
        FormatError::NotADataset
    );
    let mut b = bytes.clone();
    b[0] = b'X';
    assert_eq!(
        Dataset::from_bytes(&b).unwrap_err(),
        FormatError::NotADataset
    );

    let mut b = bytes.clone();
    b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(
        Dataset::from_bytes(&b).unwrap_err(),
        FormatError::UnsupportedVersion {
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION
        }
    );

    let mut b = bytes.clone();
    b.push(0);
    assert!(matches!(
        Dataset::from_bytes(&b).unwrap_err(),
        FormatError::Corrupt(m) if m.contains("trailing")
    ));
}

#[test]
fn sealed_but_inconsistent_files_are_corrupt_not_panics() {
    let bytes = small_dataset().to_bytes();
    let h = header_len(&bytes);
    let header: serde_json::Value = serde_json::from_slice(&bytes[16..16 + h]).unwrap();
    let vocab_size = header["vocab_size"].as_u64().unwrap() as usize;

    // An edited token with the checksum fixed up: caught by the content hash.
    let mut b = bytes.clone();
    let at = 16 + h + 4 * vocab_size;
    b[at] ^= 1;
    reseal(&mut b);
    assert!(matches!(
        Dataset::from_bytes(&b).unwrap_err(),
        FormatError::Corrupt(m) if m.contains("content hash")
    ));

    // A token id outside the vocabulary (first pretrain token), checksum fixed up.
    let mut b = bytes.clone();
    let at = 16 + h + 4 * vocab_size;
    b[at..at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        Dataset::from_bytes(&b).unwrap_err(),
        FormatError::Corrupt(m) if m.contains("outside the vocabulary")
    ));

    // An unsorted vocabulary.
    let mut b = bytes.clone();
    let v0 = 16 + h;
    let (first, second) = (v0 + 4, v0 + 8);
    let tmp: Vec<u8> = b[first..first + 4].to_vec();
    b.copy_within(second..second + 4, first);
    b[second..second + 4].copy_from_slice(&tmp);
    reseal(&mut b);
    assert!(matches!(
        Dataset::from_bytes(&b).unwrap_err(),
        FormatError::Corrupt(_)
    ));

    // A surrogate code point in the vocabulary.
    let mut b = bytes.clone();
    b[v0 + 4..v0 + 8].copy_from_slice(&0xD800u32.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        Dataset::from_bytes(&b).unwrap_err(),
        FormatError::Corrupt(_)
    ));

    // A header that is not JSON.
    let mut b = bytes.clone();
    b[16] = b'#';
    reseal(&mut b);
    assert!(matches!(
        Dataset::from_bytes(&b).unwrap_err(),
        FormatError::Corrupt(m) if m.starts_with("header")
    ));

    // Absurd sizes in the header do not overflow or allocate.
    let mut hv = header.clone();
    hv["pretrain_tokens"] = serde_json::json!(u64::MAX);
    let hb = serde_json::to_vec(&hv).unwrap();
    let mut b = bytes[..12].to_vec();
    b.extend_from_slice(&(hb.len() as u32).to_le_bytes());
    b.extend_from_slice(&hb);
    b.extend_from_slice(&bytes[16 + h..]);
    assert!(Dataset::from_bytes(&b).is_err());
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.tpd");
    let e = Dataset::load(&missing).unwrap_err();
    assert!(matches!(e, DatasetError::Io { .. }));
    assert!(e.to_string().contains("missing.tpd"), "{e}");

    let p = dir.path().join("cut.tpd");
    let bytes = small_dataset().to_bytes();
    std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    let e = Dataset::load(&p).unwrap_err();
    assert!(matches!(
        e,
        DatasetError::Format {
            error: FormatError::Truncated { .. },
            ..
        }
    ));
    let msg = e.to_string();
    assert!(
        msg.contains("cut.tpd") && msg.contains("truncated"),
        "{msg}"
    );
}

/// Random damage, with the checksum re-sealed so that the structural validation (not just the
/// checksum) is exercised: `from_bytes` returns an error or a dataset, and never panics.
#[test]
fn random_sealed_damage_never_panics() {
    use tinypoet_trainer::nn::mt19937::Mt19937;
    let bytes = small_dataset().to_bytes();
    let mut rng = Mt19937::init_genrand(7);
    let mut accepted = 0;
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.next_u32() % 4 {
            let i = rng.next_u32() as usize % (b.len() - 32);
            b[i] = rng.next_u32() as u8;
        }
        reseal(&mut b);
        if let Ok(ds) = Dataset::from_bytes(&b) {
            // Whatever was accepted is internally consistent.
            accepted += 1;
            let v = ds.vocab_size();
            assert!(ds.pretrain().iter().all(|&t| (t as usize) < v));
            assert!(ds.finetune().iter().flatten().all(|&t| (t as usize) < v));
            assert_eq!(ds.vocab()[0], '\0');
        }
    }
    // The content hash in the header covers every array, so only changes to informational
    // header fields (or none, when a byte is rewritten with its own value) can be accepted.
    assert!(accepted < 3000, "accepted {accepted}");
}
