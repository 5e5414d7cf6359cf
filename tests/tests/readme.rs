//! The README's "tinypoet-core in your own firmware" example is `core/examples/embed.rs`
//! (which `cargo test` compiles): the README must show that file's code, without its `//!`
//! header, so the example a newcomer copies is one that builds.

#[test]
fn readme_example_is_core_examples_embed() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let example =
        std::fs::read_to_string(format!("{root}/core/examples/embed.rs")).expect("embed.rs");
    let code: Vec<&str> = example
        .lines()
        .skip_while(|l| l.starts_with("//!"))
        .collect();
    let code = code.join("\n");
    let section = readme
        .split("## tinypoet-core in your own firmware")
        .nth(1)
        .expect("README has the section");
    let block = section
        .split("```rust\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("a rust code block in the section");
    assert_eq!(
        block.trim(),
        code.trim(),
        "README example differs from core/examples/embed.rs"
    );
}
