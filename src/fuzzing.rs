//! Entry points for the fuzz targets of `fuzz/` (cargo-fuzz, nightly; issue
//! 22): one function per parser of outside input, taking raw bytes. Each
//! one feeds the bytes to the parser the server or the CLI uses and checks
//! the properties that must hold whatever the input (no panic, and where
//! the format promises it, a round trip). Not an API: hidden from the docs,
//! used by nothing else.

use std::collections::BTreeMap;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::service::formats::{self, Format};
use crate::service::values::ValueType;

/// Split `data` at its first NUL byte into two texts (the second empty if
/// there is none); None when either is not UTF-8.
fn two_texts(data: &[u8]) -> Option<(&str, &str)> {
    let (a, b) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    Some((std::str::from_utf8(a).ok()?, std::str::from_utf8(b).ok()?))
}

/// `.env`, JSON and YAML import (`coffer push`, the dashboard's import).
/// Whatever parses as a `.env` file and is exported again reads back as
/// the same keys and values (an export/import round trip loses nothing).
pub fn env_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for format in [Format::Json, Format::Yaml] {
        let _ = formats::parse_file(format, text);
    }
    let Ok(parsed) = formats::parse_file(Format::Env, text) else {
        return;
    };
    let mut values: BTreeMap<String, Zeroizing<String>> = BTreeMap::new();
    for (key, entry) in parsed {
        match entry.value {
            Ok(v) => values.insert(key, v),
            Err(_) => return,
        };
    }
    for format in [Format::Env, Format::Json, Format::Yaml] {
        let rendered = match formats::render_as(format, &values) {
            Ok(r) => r,
            Err(e) => panic!("{format:?} cannot render what .env parsed: {e}"),
        };
        let again = match formats::parse_file(format, &rendered) {
            Ok(a) => a,
            Err(e) => panic!("{format:?} cannot read its own rendering: {e}"),
        };
        let again: BTreeMap<String, Zeroizing<String>> = again
            .into_iter()
            .filter_map(|(k, e)| e.value.ok().map(|v| (k, v)))
            .collect();
        assert!(again == values, "{format:?}: a round trip changed the values");
    }
}

/// Typed-value validation (json, yaml, integer, boolean, text, password):
/// the first byte picks the type, the rest is the value.
pub fn typed_value(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(rest) else { return };
    let names = ["text", "json", "yaml", "boolean", "integer", "password"];
    let Some(ty) = ValueType::parse(names[usize::from(first) % names.len()]) else {
        unreachable!("every listed name is a type")
    };
    if ty.validate(value).is_ok() {
        match ty {
            ValueType::Integer => assert!(value.parse::<i64>().is_ok()),
            ValueType::Boolean => assert!(value == "true" || value == "false"),
            ValueType::Json => assert!(serde_json::from_str::<serde::de::IgnoredAny>(value).is_ok()),
            _ => {}
        }
    }
}

/// A share link's URL fragment, its stored KDF parameters and ciphertext
/// (`coffer share open`): parse, then try to open. Nothing opens without
/// the right key, and nothing panics or runs an unbounded KDF.
pub fn share_link(data: &[u8]) {
    let Some((fragment, kdf)) = two_texts(data) else { return };
    let _ = crate::crypto::share::parse_kdf(kdf);
    let Ok(parsed) = crate::crypto::share::parse_fragment(fragment) else {
        return;
    };
    // The ciphertext is arbitrary bytes: with an AEAD it never opens.
    let ciphertext = fragment.as_bytes();
    assert!(crate::crypto::share::open(&parsed, kdf, Some("p"), ciphertext).is_err());
}

/// The path and query of a request below the Vault `secret/` mount, as the
/// audit layer names it (`http/audit.rs`).
pub fn kv_path(data: &[u8]) {
    use axum::extract::Query;
    use axum::http::{Method, Uri};
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    let method = &methods[usize::from(first) % methods.len()];
    let Ok(uri) = format!("/v1/secret/{text}").parse::<Uri>() else {
        return;
    };
    let Ok(Query(q)) = Query::<crate::http::vault_kv::KvQuery>::try_from_uri(&uri) else {
        return;
    };
    let rest = uri.path().trim_start_matches("/v1/secret/");
    let (action, _) = crate::http::vault_kv::kv_target(method, rest, &q);
    assert!(action.starts_with("secret."));
}

/// RFC 7396 JSON merge patch (KV v2 PATCH): two JSON documents split at the
/// first NUL. A merge patch is idempotent: applying it twice is applying it once.
pub fn merge_patch(data: &[u8]) {
    let Some((target, patch)) = two_texts(data) else { return };
    let (Ok(mut once), Ok(patch)) = (
        serde_json::from_str::<Value>(target),
        serde_json::from_str::<Value>(patch),
    ) else {
        return;
    };
    crate::service::kv::merge_patch(&mut once, &patch);
    let mut twice = once.clone();
    crate::service::kv::merge_patch(&mut twice, &patch);
    assert_eq!(once, twice, "a merge patch applied twice differs from once");
}

/// The request-signature headers (`X-Coffer-Signature`,
/// `X-Coffer-Timestamp`) at a clock given by the first 8 bytes.
pub fn signature_headers(data: &[u8]) {
    let Some((clock, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let now = i64::from_le_bytes(*clock);
    let Some((sig, ts)) = two_texts(rest) else { return };
    if let Ok(bytes) = crate::http::integrity::check_headers(sig, Some(ts), now) {
        assert_eq!(bytes.len() * 2, sig.trim().len());
        let ts: i64 = ts
            .parse()
            .unwrap_or_else(|_| panic!("accepted a timestamp that is not a number"));
        assert!(now.abs_diff(ts) <= crate::http::integrity::MAX_SKEW_SECS.unsigned_abs());
    }
}

/// The configuration file (`/etc/coffer/coffer.toml`), without environment overrides.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::config::Settings::from_text(text, "fuzz.toml", |_| None);
}

/// The backup file reader (`coffer restore`), before the signature check.
pub fn backup(data: &[u8]) {
    let _ = crate::service::backup::parse(data);
}

/// An unseal key share as a custodian types it (hex or base64, checksummed):
/// what parses re-encodes to a share that parses to the same share.
pub fn unseal_share(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(share) = unseal::Share::parse(text) else { return };
    for encoded in [share.to_hex(), share.to_base64()] {
        match unseal::Share::parse(&encoded) {
            Ok(again) => assert!(again.x() == share.x() && again.to_hex() == share.to_hex()),
            Err(e) => panic!("a share's own encoding does not parse: {e}"),
        }
    }
}

/// An age-encrypted share as a custodian pastes it (armored, hex or
/// base64), opened with an identity made for the run: it never opens (the
/// fuzzer holds no file encrypted to that identity), and never panics.
pub fn age_share(data: &[u8]) {
    use age::secrecy::ExposeSecret;
    static IDENTITY: std::sync::OnceLock<Zeroizing<String>> = std::sync::OnceLock::new();
    let identity = IDENTITY
        .get_or_init(|| Zeroizing::new(age::x25519::Identity::generate().to_string().expose_secret().to_owned()));
    let Ok(text) = std::str::from_utf8(data) else { return };
    assert!(crate::keys::shares::decrypt_share(identity, text).is_err());
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// A fuzz target: its name and its entry.
    type Target = (&'static str, fn(&[u8]));

    /// Every committed corpus input of every fuzz target runs through its
    /// entry in the ordinary (stable) test run, so an input that once
    /// crashed a parser, fixed and added to the corpus, stays fixed; and
    /// every target of `fuzz/fuzz_targets/` has an entry and a corpus here.
    #[test]
    fn committed_corpora_replay() {
        let targets: [Target; 10] = [
            ("env_file", super::env_file),
            ("typed_value", super::typed_value),
            ("share_link", super::share_link),
            ("kv_path", super::kv_path),
            ("merge_patch", super::merge_patch),
            ("signature_headers", super::signature_headers),
            ("config", super::config),
            ("backup", super::backup),
            ("unseal_share", super::unseal_share),
            ("age_share", super::age_share),
        ];
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut on_disk: Vec<String> = std::fs::read_dir(fuzz.join("fuzz_targets"))
            .expect("fuzz/fuzz_targets is readable")
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".rs").map(str::to_owned))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = targets.iter().map(|(n, _)| (*n).to_owned()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "fuzz targets and the entries replayed here differ");
        for (name, entry) in targets {
            let dir = fuzz.join("corpus").join(name);
            let mut inputs = 0;
            for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = file.expect("corpus entry").path();
                entry(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
                inputs += 1;
            }
            assert!(inputs > 0, "{name} has no committed corpus");
        }
    }
}
