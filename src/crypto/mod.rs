//! Cryptographic building blocks shared by the server and the CLI, with no
//! knowledge of either: the AEAD blob format ([`aead`]) wraps the server's
//! key hierarchy (`keys/`) and the CLI's stored logins and offline
//! fallback files (`cli/credentials.rs`, `cli/fallback.rs`).

pub mod aead;
pub mod share;
