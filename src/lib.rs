//! coffer: a self-hosted secrets manager in one hardened binary.
//!
//! Layering runs one way: `http → service → (seal, keys) → storage`, with
//! `config` (settings) and `crypto` (the AEAD blob format) below all of
//! them; `cli` talks to a server over HTTP (docs/architecture.md,
//! "Direction of dependencies"; guarded by the `layering` test). Crypto and
//! seal logic never touch HTTP; handlers never touch SQL; only `secure_mem`
//! may use `unsafe`.

pub mod access;
pub mod cli;
pub(crate) mod config;
pub mod crypto;
pub(crate) mod env_policy;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod keys;
#[cfg(test)]
mod layering;
pub mod logging;
pub(crate) mod ops;
pub(crate) mod seal;
pub mod secure_mem;
pub(crate) mod server;
pub mod service;
pub mod storage;
