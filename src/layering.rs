//! Guard for the direction of dependencies (docs/architecture.md,
//! "Direction of dependencies"): no source file of a lower layer names a
//! module of a layer above it. A plain text scan of `crate::…` paths
//! outside comments; the documented exceptions are listed by file.

use std::path::{Path, PathBuf};

/// (directory under `src/`, paths it must not name, files exempted).
const RULES: &[(&str, &[&str], &[&str])] = &[
    ("http", &["crate::storage"], &[]),
    (
        "config",
        &[
            "crate::service",
            "crate::http",
            "crate::storage",
            "crate::server",
            "crate::cli",
            "crate::seal",
        ],
        &[],
    ),
    (
        "storage",
        &[
            "crate::service",
            "crate::http",
            "crate::config",
            "crate::server",
            "crate::cli",
            "crate::seal",
            "crate::keys",
        ],
        &[],
    ),
    (
        "crypto",
        &[
            "crate::keys",
            "crate::seal",
            "crate::service",
            "crate::http",
            "crate::storage",
            "crate::cli",
        ],
        &[],
    ),
    (
        "keys",
        &[
            "crate::seal",
            "crate::service",
            "crate::http",
            "crate::storage",
            "crate::cli",
        ],
        &[],
    ),
    (
        "seal",
        &["crate::service", "crate::http", "crate::cli", "crate::server"],
        &[],
    ),
    ("service", &["crate::http", "crate::cli", "crate::server"], &[]),
    // The CLI talks to the server over HTTP; offline restore is the one
    // command that opens a store (the target is empty, the server stopped).
    (
        "cli",
        &["crate::storage", "crate::service", "crate::seal"],
        &["backup.rs"],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn lower_layers_do_not_name_upper_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (dir, forbidden, exempt) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(dir), &mut files);
        assert!(!files.is_empty(), "src/{dir} has no source files: update the rules");
        for f in files {
            if exempt.iter().any(|x| f.ends_with(x)) {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let grouped = code.contains("crate::{");
                for bad in *forbidden {
                    let module = bad.trim_start_matches("crate::");
                    let named = code.contains(&format!("{bad}::"))
                        || code.contains(&format!("{bad};"))
                        || code.contains(&format!("{bad} "))
                        || (grouped && code.contains(module));
                    if named {
                        broken.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

/// Each service holds the store traits of the aggregates it touches, not
/// the whole `Backend` (docs/architecture.md, the service row): only the
/// operator ceremonies (init, backup), the shared runtime (cluster
/// messages, cache drops) and the assembly in `service/mod.rs` see it.
#[test]
fn only_the_operator_and_the_assembly_hold_the_whole_backend() {
    const ALLOWED: &[&str] = &["mod.rs", "operator.rs", "backup.rs"];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/service");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let mut broken = Vec::new();
    for f in files {
        if f.parent() == Some(dir.as_path()) && ALLOWED.iter().any(|x| f.ends_with(x)) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let names_backend = code
                .match_indices("Backend")
                .any(|(at, _)| !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
            if names_backend {
                broken.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "a service names the whole Backend:\n{}",
        broken.join("\n")
    );
}
