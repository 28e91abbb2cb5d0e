//! Integration tests: the real `coffer` binary over real HTTP, on the
//! storage backend chosen by `COFFER_TEST_STORAGE` (see `util.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod abuse_limits;
mod access;
mod access_auth;
mod access_mtls;
mod age_shares;
mod approvals;
mod audit;
mod backup;
mod breach_check;
mod cli;
mod cli_access;
mod cli_integrity;
mod cli_pin;
mod cli_run;
mod cli_status;
mod cli_tenants;
mod cluster;
mod conformance;
mod dashboard;
mod edges;
mod env_compare;
mod faults;
mod generate_root;
mod hardening;
mod hsm;
mod idempotency;
mod keys;
mod lifecycle;
mod memory;
mod ops;
mod org_limits;
mod references;
mod rekey;
mod rotate_totp;
mod sessions;
mod shares;
mod sync_endpoints;
mod tamper;
mod tenant_deletion;
mod tls;
mod util;
mod vault_clients;
mod vault_kv;
mod webhooks;
