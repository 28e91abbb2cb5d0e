//! Environment variables coffer never injects into a process: the ones that
//! change how programs are loaded or started, or that name a command some
//! program runs (dynamic loader, interpreter start-up hooks and module
//! paths, shell start-up files and prompts, git/ssh/editor/pager helpers,
//! TLS-library configuration that loads modules, resolver overrides,
//! `PATH`). A secret with such a name would let whoever can write the
//! environment (*create* is enough) run code on every host that runs
//! `coffer run`, so both sides refuse it: the server drops these names from
//! an inject answer, and the CLI skips them (with a warning naming each).
//!
//! The one exception is an environment's allow list: an environment admin
//! may allow one blocked name at a time for the rare program that needs it
//! (audited; docs/cli.md). The server then returns that name and says so in
//! the inject answer, and the CLI sets it.
//!
//! Names are compared ignoring ASCII case: POSIX environments are
//! case-sensitive, but refusing `Path` too costs nothing, keeps the rule
//! simple on case-insensitive platforms, and matches .NET, which reads its
//! `COMPlus_`/`DOTNET_` settings case-insensitively.
//!
//! Each family cites where it is documented.

/// Exact names that are never injected (upper case).
pub(crate) const DANGEROUS_ENV: &[&str] = &[
    // dynamic loader, glibc: ld.so(8) (the LD_ prefix covers the rest),
    // tunables: "Looney Tunables", glibc manual "Tunables"
    "GLIBC_TUNABLES",
    // glibc: iconv modules loaded as shared objects (iconv_open(3), gconv),
    // locale and message-catalog search paths (locale(7), catopen(3))
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    // glibc resolver: name-resolution overrides (hostname(7), resolv.conf(5))
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    // where programs are found, and which shell runs commands: environ(7)
    "PATH",
    "SHELL",
    // shells, bash(1): start-up files, word splitting, options, prompts
    // (prompt strings undergo command substitution), hooks, cd search path;
    // sh(1p) ENV; zsh(1) ZDOTDIR (start-up files), FPATH (autoloaded functions)
    "BASH_ENV",
    "ENV",
    "IFS",
    "SHELLOPTS",
    "BASHOPTS",
    "PS0",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "PROMPT_COMMAND",
    "CDPATH",
    "ZDOTDIR",
    "FPATH",
    // git(1) ENVIRONMENT: helpers git runs as commands, the repository and
    // hook templates it trusts (GIT_CONFIG*/GIT_SSH* are prefixes below;
    // *_EDITOR, *PAGER, *ASKPASS are suffixes)
    "GIT_EXEC_PATH",
    "GIT_EXTERNAL_DIFF",
    "GIT_PROXY_COMMAND",
    "GIT_TEMPLATE_DIR",
    "GIT_DIR",
    "GIT_COMMON_DIR",
    // editors, pagers, browsers run as commands: environ(7), less(1)
    // (LESSOPEN/LESSCLOSE are input filters, LESSEDIT the editor command,
    // LESS may hold a start-up command), man(1) MANOPT, vim(1) start-up
    // commands, psql(1) PSQLRC, wget(1) WGETRC (use_askpass)
    "EDITOR",
    "VISUAL",
    "BROWSER",
    "LESS",
    "LESSOPEN",
    "LESSCLOSE",
    "LESSEDIT",
    "LESSKEY",
    "LESSKEYIN",
    "MANOPT",
    "VIMINIT",
    "GVIMINIT",
    "EXINIT",
    "PSQLRC",
    "WGETRC",
    // make(1): MAKEFLAGS may define SHELL or add makefiles
    "MAKEFLAGS",
    "MFLAGS",
    "GNUMAKEFLAGS",
    // Python, python(1) ENVIRONMENT: module paths, start-up file, imported
    // warning categories and breakpoint hook, user site (.pth files run
    // code), bytecode cache location
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONWARNINGS",
    "PYTHONBREAKPOINT",
    "PYTHONUSERBASE",
    "PYTHONPLATLIBDIR",
    "PYTHONPYCACHEPREFIX",
    "PYTHONEXECUTABLE",
    // pip(1) configuration: where packages (and their build code) come from
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_CONFIG_FILE",
    // Perl, perlrun(1): options, module paths, debugger code
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    // Ruby, ruby(1): options and load path; Bundler's Gemfile is Ruby code
    // (bundle-config(1)); GEM_ is a prefix (gem env)
    "RUBYOPT",
    "RUBYLIB",
    "BUNDLE_GEMFILE",
    // Node.js, node(1): options, module path, REPL module
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_REPL_EXTERNAL_MODULE",
    // Java: JVM options read by the launcher (java(1) JDK_JAVA_OPTIONS,
    // JVMTI JAVA_TOOL_OPTIONS, _JAVA_OPTIONS), the class path, and the
    // launch scripts' conventions (Tomcat, Maven, Gradle docs)
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "JAVA_OPTS",
    "CLASSPATH",
    "MAVEN_OPTS",
    "GRADLE_OPTS",
    "CATALINA_OPTS",
    // ASP.NET Core: hosting start-up assemblies (learn.microsoft.com
    // "Use hosting startup assemblies"); DOTNET_/CORECLR_/COMPlus_/COR_
    // are prefixes below
    "ASPNETCORE_HOSTINGSTARTUPASSEMBLIES",
    // Erlang erl(1): emulator flags and code path; Elixir's VM options
    "ERL_AFLAGS",
    "ERL_ZFLAGS",
    "ERL_FLAGS",
    "ERL_LIBS",
    "ELIXIR_ERL_OPTIONS",
    // PHP php(1): php.ini location and scan dir (auto_prepend_file)
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    // OpenSSL config(5), openssl-env(7): configuration (loads engines and
    // providers), engine and provider module directories
    "OPENSSL_CONF",
    "OPENSSL_CONF_INCLUDE",
    "OPENSSL_ENGINES",
    "OPENSSL_MODULES",
    // Tcl tclsh(1) library path
    "TCLLIBPATH",
    // R Startup(R): profile and environ files run at start
    "R_PROFILE",
    "R_PROFILE_USER",
    "R_ENVIRON",
    "R_ENVIRON_USER",
];

/// Name prefixes that are never injected (upper case).
pub(crate) const DANGEROUS_PREFIXES: &[&str] = &[
    // every LD_* (glibc ld.so(8), musl) and DYLD_* (macOS dyld(1)) variable
    // configures the loader
    "LD_",
    "DYLD_",
    // glibc malloc tunables: mallopt(3) ENVIRONMENT (MALLOC_CHECK_, …)
    "MALLOC_",
    // bash(1): exported shell functions (BASH_FUNC_name%%) replace commands
    "BASH_FUNC_",
    // git(1): GIT_CONFIG, GIT_CONFIG_COUNT/KEY_n/VALUE_n (core.fsmonitor,
    // core.sshCommand… run code), _PARAMETERS, _GLOBAL, _SYSTEM;
    // GIT_SSH, GIT_SSH_COMMAND, GIT_SSH_VARIANT
    "GIT_CONFIG",
    "GIT_SSH",
    // ssh(1): SSH_ASKPASS, SSH_ASKPASS_REQUIRE
    "SSH_ASKPASS",
    // Lua lua(1): LUA_INIT, LUA_INIT_5_x (code run at start), module paths
    "LUA_INIT",
    "LUA_PATH",
    "LUA_CPATH",
    // RubyGems gem(1) / `gem env`: GEM_HOME, GEM_PATH, GEM_SPEC_CACHE…
    "GEM_",
    // npm-config(7): every npm setting (script-shell, node-options, …)
    "NPM_CONFIG_",
    // .NET runtime configuration (learn.microsoft.com "Runtime
    // configuration options", "dotnet environment variables"): DOTNET_*
    // (DOTNET_STARTUP_HOOKS, DOTNET_ADDITIONAL_DEPS…), COMPlus_* (same
    // settings, older prefix), CORECLR_* (profiler: CORECLR_PROFILER_PATH),
    // COR_* (.NET Framework profiler), COREHOST_* (host tracing to files)
    "DOTNET_",
    "COMPLUS_",
    "CORECLR_",
    "COR_",
    "COREHOST_",
];

/// Name suffixes that are never injected (upper case): commands by
/// convention — `*PAGER` (PAGER, MANPAGER, GIT_PAGER, SYSTEMD_PAGER,
/// PSQL_PAGER: environ(7), man(1), git(1)), `*_EDITOR` (GIT_EDITOR,
/// GIT_SEQUENCE_EDITOR, SUDO_EDITOR: git(1), sudo(8)), `*ASKPASS`
/// (GIT_ASKPASS, SUDO_ASKPASS: git(1), sudo(8)).
pub(crate) const DANGEROUS_SUFFIXES: &[&str] = &["PAGER", "_EDITOR", "ASKPASS"];

/// Whether `name` is a variable coffer refuses to inject (unless an
/// environment admin allowed it).
pub(crate) fn is_dangerous(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    DANGEROUS_ENV.contains(&upper.as_str())
        || DANGEROUS_PREFIXES.iter().any(|p| upper.starts_with(p))
        || DANGEROUS_SUFFIXES.iter().any(|s| upper.ends_with(s))
}

/// Whether `name` is a valid variable name: `[A-Za-z_][A-Za-z0-9_]*`, at
/// most 256 bytes (what an allow-list entry may hold).
pub(crate) fn is_variable_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| *c == b'_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::{is_dangerous, is_variable_name};

    /// Every name the issue listed, and the families' other members.
    const MUST_REFUSE: &[&str] = &[
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
        "GIT_CONFIG_COUNT",
        "GIT_CONFIG_KEY_0",
        "GIT_CONFIG_VALUE_0",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_ASKPASS",
        "GIT_EXEC_PATH",
        "GIT_EDITOR",
        "GIT_PAGER",
        "SSH_ASKPASS",
        "SSH_ASKPASS_REQUIRE",
        "SUDO_ASKPASS",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "MANPAGER",
        "BROWSER",
        "PS0",
        "PS1",
        "PS2",
        "PS3",
        "LUA_INIT",
        "LUA_INIT_5_4",
        "ERL_AFLAGS",
        "ERL_ZFLAGS",
        "PYTHONWARNINGS",
        "PYTHONBREAKPOINT",
        "CLASSPATH",
        "DOTNET_STARTUP_HOOKS",
        "CORECLR_PROFILER_PATH",
        "CORECLR_ENABLE_PROFILING",
        "COMPlus_EnableDiagnostics",
        "complus_anything",
        "OPENSSL_CONF",
        "OPENSSL_ENGINES",
        "PERLLIB",
        "NODE_PATH",
        "GEM_HOME",
        "GEM_PATH",
        "MALLOC_CHECK_",
        "MALLOC_ARENA_MAX",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "RES_OPTIONS",
        "GLIBC_TUNABLES",
        "BASH_FUNC_ls%%",
        "npm_config_script_shell",
        "LESSOPEN",
    ];

    #[test]
    fn loader_and_startup_variables_are_dangerous() {
        for name in MUST_REFUSE {
            assert!(is_dangerous(name), "{name}");
        }
        for name in [
            "DATABASE_URL",
            "PATH_PREFIX",
            "MY_PATH",
            "ENVIRONMENT",
            "LD",
            "OLD_PRELOAD",
            "GIT_AUTHOR_NAME",
            "GITHUB_TOKEN",
            "PS5",
            "PYTHONUNBUFFERED",
            "API_KEY",
            "DOTNET",
            "REDIS_URL",
        ] {
            assert!(!is_dangerous(name), "{name}");
        }
    }

    #[test]
    fn variable_names() {
        for ok in ["A", "_X", "EDITOR", "a1_b"] {
            assert!(is_variable_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=", "A\0", &"A".repeat(257)] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }
}
