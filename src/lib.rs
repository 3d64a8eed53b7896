//! An on-premises key management service that speaks the AWS KMS API, with every root and
//! backing key inside a PKCS#11 token and only wrapped blobs and metadata in Postgres.
//!
//! Layers (dependencies point down only): `api` → `domain` → (`audit`, `hsm`, `store`); `api`
//! reads the domain's views (`domain`), never a store row. `operations`, `vocab`, `encoding`
//! and `deadline` are leaves every layer may read. The `layering` test below keeps the rules it
//! can check mechanically.

pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod console;
pub mod deadline;
pub mod domain;
pub mod encoding;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod hsm;
pub mod messages;
pub mod metrics;
pub mod operations;
pub mod policy;
pub mod server;
pub mod store;
pub mod vocab;
pub mod xks;

#[cfg(test)]
mod layering {
    use std::path::{Path, PathBuf};

    /// Every `.rs` file under `dir`, with its text.
    fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(sources(&p));
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
            }
        }
        out
    }

    /// The lines of `text` whose code (outside comments and string literals) names `word`.
    fn naming<'a>(text: &'a str, word: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|line| {
                let code = line.split("//").next().unwrap_or("");
                code.match_indices(word)
                    .any(|(i, _)| code[..i].matches('"').count() % 2 == 0)
            })
            .collect()
    }

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn the_api_reads_the_domain_never_the_store() {
        let api = sources(&src().join("api"));
        for (path, text) in api.into_iter().chain(sources(&src().join("console"))) {
            let lines = naming(&text, "store::");
            assert!(
                lines.is_empty(),
                "{} names the store: {lines:?}",
                path.display()
            );
        }
    }

    /// Test tables may be long; code is split by area before it reaches 1,000 lines.
    #[test]
    fn no_source_file_is_over_a_thousand_lines() {
        const TEST_TABLES: &[&str] = &["store/contract.rs", "policy/tests.rs"];
        for (path, text) in sources(&src()) {
            let name = path
                .strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .to_string();
            if TEST_TABLES.contains(&name.as_str()) {
                continue;
            }
            let lines = text.lines().count();
            assert!(
                lines <= 1000,
                "src/{name} has {lines} lines: split it by area"
            );
        }
    }

    #[test]
    fn sql_is_run_only_in_the_store() {
        let store = src().join("store");
        for (path, text) in sources(&src()) {
            if path.starts_with(&store) {
                continue;
            }
            let lines = naming(&text, "sqlx::");
            assert!(lines.is_empty(), "{} uses sqlx: {lines:?}", path.display());
        }
    }
}
