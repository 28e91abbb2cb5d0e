//! Environment variables coffer never injects into a process: the ones that
//! change how programs are loaded or started (dynamic loader, interpreter
//! start-up hooks, shell start-up files, `PATH`). A secret with such a name
//! would let whoever can write the environment run code in every process
//! started by `coffer run`, so both sides refuse it: the server drops these
//! names from an inject answer, and the CLI skips them (with a warning naming
//! each) should an older server still return one.
//!
//! Names are compared ignoring ASCII case: POSIX environments are
//! case-sensitive, but refusing `Path` too costs nothing and keeps the rule
//! simple on case-insensitive platforms.

/// Exact names that are never injected.
pub const DANGEROUS_ENV: &[&str] = &[
    // dynamic loader (glibc, musl)
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    // where programs are found
    "PATH",
    // interpreters' start-up hooks and module paths
    "NODE_OPTIONS",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PERL5OPT",
    "PERL5LIB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    // shells: start-up files and parsing
    "BASH_ENV",
    "ENV",
    "IFS",
    "SHELLOPTS",
    "PS4",
    "PROMPT_COMMAND",
    // glibc iconv modules (loaded as shared objects)
    "GCONV_PATH",
];

/// Name prefixes that are never injected: every `LD_*` (glibc, musl) and
/// `DYLD_*` (macOS dyld) variable configures the loader.
pub const DANGEROUS_PREFIXES: &[&str] = &["LD_", "DYLD_"];

/// Whether `name` is a variable coffer refuses to inject.
pub fn is_dangerous(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    DANGEROUS_ENV.contains(&upper.as_str()) || DANGEROUS_PREFIXES.iter().any(|p| upper.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::is_dangerous;

    #[test]
    fn loader_and_startup_variables_are_dangerous() {
        for name in [
            "LD_PRELOAD",
            "LD_BIND_NOW",
            "ld_preload",
            "DYLD_INSERT_LIBRARIES",
            "PATH",
            "Path",
            "NODE_OPTIONS",
            "BASH_ENV",
            "ENV",
            "IFS",
            "GCONV_PATH",
            "_JAVA_OPTIONS",
        ] {
            assert!(is_dangerous(name), "{name}");
        }
        for name in [
            "DATABASE_URL",
            "PATH_PREFIX",
            "MY_PATH",
            "ENVIRONMENT",
            "LD",
            "OLD_PRELOAD",
        ] {
            assert!(!is_dangerous(name), "{name}");
        }
    }
}
