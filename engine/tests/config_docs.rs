//! docs/config.md is what `ordo config docs` generates from the code: a key, a default or a
//! flag changed in the code and not in the page fails here.

#[test]
fn docs_config_md_is_what_the_code_generates() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["config", "docs"])
        .output()
        .expect("ordo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/config.md");
    let committed = std::fs::read_to_string(path).expect("docs/config.md");
    assert!(
        generated == committed,
        "docs/config.md differs from what the code generates: run `make docs` (ordo config docs > docs/config.md) and commit it"
    );
}
