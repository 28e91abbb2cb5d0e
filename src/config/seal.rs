//! The `[seal]` section: how the root key is protected at rest.
//!
//! ```toml
//! [seal]
//! type = "pkcs11"                                  # default "shamir" (no section needed)
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "coffer"
//! key_label = "coffer-root"
//! pin_file = "/etc/coffer/hsm-pin"                 # or: pin_env = "COFFER_HSM_PIN"
//! # disabled = true                                # migrate back to shamir (with the quorum)
//! ```
//! The PIN itself never goes in the config file: a `pin` key is refused.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSeal {
    #[serde(rename = "type")]
    kind: Option<String>,
    module: Option<PathBuf>,
    token_label: Option<String>,
    key_label: Option<String>,
    pin_file: Option<PathBuf>,
    pin_env: Option<String>,
    /// Vault's `disabled`: keep the HSM only to migrate away from it.
    #[serde(default)]
    disabled: bool,
    /// Only to refuse it with a clear message.
    pin: Option<toml::Value>,
}

/// Validated `seal "pkcs11"` settings.
#[derive(Debug, Clone)]
pub(crate) struct Pkcs11Settings {
    /// how to reach the token key
    pub hsm: hsm::HsmConfig,
    /// `disabled = true`: used only to migrate the keyring back to shamir
    pub disabled: bool,
}

impl RawSeal {
    pub(super) fn validate(self) -> Result<Option<Pkcs11Settings>, ConfigError> {
        if self.pin.is_some() {
            return Err(ConfigError::Invalid(
                "seal.pin is not allowed: keep the PIN out of the config file, use seal.pin_file or seal.pin_env"
                    .into(),
            ));
        }
        match self.kind.as_deref() {
            None | Some("shamir") => {
                if self.module.is_some() || self.token_label.is_some() || self.key_label.is_some() {
                    return Err(ConfigError::Invalid(
                        "seal.module/token_label/key_label need seal.type = \"pkcs11\"".into(),
                    ));
                }
                Ok(None)
            }
            Some("pkcs11") => {
                let need = |v: Option<String>, name: &str| {
                    v.filter(|s| !s.is_empty()).ok_or_else(|| {
                        ConfigError::Invalid(format!("seal.{name} is required for seal.type = \"pkcs11\""))
                    })
                };
                let module = self
                    .module
                    .ok_or_else(|| ConfigError::Invalid("seal.module is required for seal.type = \"pkcs11\"".into()))?;
                let pin = match (self.pin_file, self.pin_env) {
                    (Some(f), None) => hsm::PinSource::File(f),
                    (None, Some(e)) if !e.is_empty() => hsm::PinSource::Env(e),
                    _ => {
                        return Err(ConfigError::Invalid(
                            "seal.type = \"pkcs11\" needs exactly one of seal.pin_file or seal.pin_env".into(),
                        ));
                    }
                };
                Ok(Some(Pkcs11Settings {
                    hsm: hsm::HsmConfig {
                        module,
                        token_label: need(self.token_label, "token_label")?,
                        key_label: need(self.key_label, "key_label")?,
                        pin,
                    },
                    disabled: self.disabled,
                }))
            }
            Some(other) => Err(ConfigError::Invalid(format!(
                "seal.type {other:?} is unknown; use \"shamir\" or \"pkcs11\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Pkcs11Settings>, ConfigError> {
        let raw: RawSeal = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.message().to_owned()))?;
        raw.validate()
    }

    #[test]
    fn pkcs11_needs_its_fields_and_never_a_pin() {
        let ok = "type = \"pkcs11\"\nmodule = \"/m.so\"\ntoken_label = \"t\"\nkey_label = \"k\"\npin_file = \"/p\"\n";
        let s = parse(ok).expect("valid").expect("pkcs11");
        assert_eq!(s.hsm.pin, hsm::PinSource::File("/p".into()));
        assert!(!s.disabled);
        let err = parse(&format!("{ok}pin = \"1234\"\n")).expect_err("pin in file");
        assert!(err.to_string().contains("pin_file or seal.pin_env"), "{err}");
        let err = parse(&ok.replace("pin_file = \"/p\"\n", "")).expect_err("no pin source");
        assert!(err.to_string().contains("exactly one"), "{err}");
        let err = parse(&ok.replace("key_label = \"k\"\n", "")).expect_err("no key label");
        assert!(err.to_string().contains("seal.key_label"), "{err}");
        assert!(parse("type = \"shamir\"\n").expect("shamir").is_none());
        assert!(parse("type = \"kms\"\n").is_err());
    }
}
