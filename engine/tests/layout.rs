//! README's Layout section and `lib.rs`'s module map name the same modules of `engine/src`,
//! in the same order, and every module `lib.rs` declares is in both.

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The modules `lib.rs` declares (`pub mod x;`, `mod x;`, with any attributes before).
fn declared(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("pub(crate) mod "))
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').to_string())
        })
        .collect()
}

/// The module map: the first backticked name of each numbered or bulleted line of the
/// crate's doc comment.
fn module_map(lib: &str) -> Vec<String> {
    lib.lines()
        .take_while(|l| l.starts_with("//!"))
        .filter_map(|l| {
            let item = l.trim_start_matches("//!").trim_start();
            let item = item.strip_prefix("- ").or_else(|| {
                item.split_once(". ")
                    .filter(|(n, _)| n.parse::<u32>().is_ok())
                    .map(|(_, r)| r)
            })?;
            let name = item.strip_prefix("[`").or_else(|| item.strip_prefix('`'))?;
            Some(name.split('`').next()?.to_string())
        })
        .collect()
}

/// The `engine/src/<module>` entries of README's Layout block, in order (the binary's own
/// files, `main.rs`, `lib.rs` and `cli/`, left out).
fn layout(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## Layout\n")
        .nth(1)
        .expect("README has a Layout section");
    let block = section.split("```").nth(1).expect("a code block in Layout");
    block
        .lines()
        .filter_map(|l| l.strip_prefix("engine/src/"))
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| p.trim_end_matches('/').trim_end_matches(".rs").to_string())
        .filter(|m| !["main", "lib", "cli"].contains(&m.as_str()))
        .collect()
}

#[test]
fn the_layout_section_and_the_module_map_agree_with_the_modules() {
    let lib = read("src/lib.rs");
    let readme = read("../README.md");
    let (declared, map, layout) = (declared(&lib), module_map(&lib), layout(&readme));
    assert_eq!(
        map.iter().cloned().collect::<BTreeSet<_>>(),
        declared,
        "lib.rs's module map against its `mod` declarations"
    );
    assert_eq!(
        layout, map,
        "README's Layout against lib.rs's module map, in order"
    );
}
