//! coffer: a self-hosted secrets manager in one hardened binary.
//!
//! Layering runs one way: `http → service → (seal, keys) → storage`.
//! Crypto and seal logic never touch HTTP; handlers never touch SQL; only
//! `secure_mem` may use `unsafe`.

pub mod access;
pub mod cli;
pub(crate) mod config;
pub(crate) mod env_policy;
pub mod http;
pub mod keys;
pub mod logging;
pub(crate) mod ops;
pub(crate) mod seal;
pub mod secure_mem;
pub(crate) mod server;
pub mod service;
pub mod storage;
