//! coffer: a self-hosted secrets manager in one hardened binary.
//!
//! Layering runs one way: `http → service → (seal, keys) → storage`.
//! Crypto and seal logic never touch HTTP; handlers never touch SQL; only
//! `secure_mem` may use `unsafe`.

pub mod access;
pub mod cli;
pub mod config;
pub mod env_policy;
pub mod http;
pub mod keys;
pub mod logging;
pub mod ops;
pub mod seal;
pub mod secure_mem;
pub mod server;
pub mod service;
pub mod storage;
