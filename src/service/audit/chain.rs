//! The audit chain's arithmetic: the hash of a record and the signature of
//! a checkpoint. Pure functions; the encoding is fixed for good (a change
//! would break the verification of every stored log), hence the version
//! labels.
//!
//! ```text
//! hash_n = SHA-256("coffer-audit-v1" ‖ seq ‖ time ‖ status ‖ field… ‖ prev_hash)
//!          integers as 8 bytes big-endian, text fields as 4-byte length ‖ bytes
//! mac    = HMAC-SHA256(audit key, "coffer-audit-checkpoint-v1" ‖ kind ‖ seq ‖ hash ‖ time)
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::storage::audit::{AuditRow, CheckpointRow};

/// `prev_hash` of the first record.
pub const GENESIS: [u8; 32] = [0u8; 32];

fn text(h: &mut Sha256, s: &str) {
    h.update((s.len() as u32).to_be_bytes());
    h.update(s.as_bytes());
}

/// The hash a record must carry, from its fields and `prev_hash`.
pub fn record_hash(r: &AuditRow) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"coffer-audit-v1");
    h.update(r.seq.to_be_bytes());
    h.update(r.time.to_be_bytes());
    h.update(r.status.to_be_bytes());
    for f in r.texts().into_iter().chain([r.reason.as_str(), r.detail.as_str()]) {
        text(&mut h, f);
    }
    h.update((r.prev_hash.len() as u32).to_be_bytes());
    h.update(&r.prev_hash);
    h.finalize().into()
}

fn checkpoint_mac_state(key: &[u8], c: &CheckpointRow) -> Option<Hmac<Sha256>> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    m.update(b"coffer-audit-checkpoint-v1");
    m.update(&(c.kind.len() as u32).to_be_bytes());
    m.update(c.kind.as_bytes());
    m.update(&c.seq.to_be_bytes());
    m.update(&(c.hash.len() as u32).to_be_bytes());
    m.update(&c.hash);
    m.update(&c.time.to_be_bytes());
    Some(m)
}

/// The signature of a checkpoint (its `mac` field is ignored).
pub fn checkpoint_mac(key: &[u8], c: &CheckpointRow) -> Vec<u8> {
    checkpoint_mac_state(key, c)
        .map(|m| m.finalize().into_bytes().to_vec())
        .unwrap_or_default()
}

/// Does the checkpoint carry a valid signature? Constant time.
pub fn checkpoint_valid(key: &[u8], c: &CheckpointRow) -> bool {
    checkpoint_mac_state(key, c).is_some_and(|m| m.verify_slice(&c.mac).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> AuditRow {
        AuditRow {
            seq: 1,
            time: 1_700_000_000_000,
            action: "secret.reveal".into(),
            resource: "/api/v1/orgs/a".into(),
            status: 200,
            prev_hash: GENESIS.to_vec(),
            ..AuditRow::default()
        }
    }

    #[test]
    fn every_field_is_covered() {
        let base = record_hash(&row());
        let edits: [fn(&mut AuditRow); 7] = [
            |r| r.seq = 2,
            |r| r.time += 1,
            |r| r.status = 403,
            |r| r.actor = "x".into(),
            |r| r.resource.push('x'),
            |r| r.detail = "{}".into(),
            |r| r.prev_hash[0] = 1,
        ];
        for edit in edits {
            let mut r = row();
            edit(&mut r);
            assert_ne!(record_hash(&r), base);
        }
    }

    #[test]
    fn fields_cannot_be_shifted_into_each_other() {
        let mut a = row();
        a.actor = "ab".into();
        a.accessor = String::new();
        let mut b = row();
        b.actor = "a".into();
        b.accessor = "b".into();
        assert_ne!(record_hash(&a), record_hash(&b));
    }

    #[test]
    fn checkpoint_signature_checks_key_and_fields() {
        let key = [7u8; 32];
        let mut c = CheckpointRow {
            seq: 10,
            hash: vec![1; 32],
            time: 5,
            kind: "periodic".into(),
            mac: Vec::new(),
        };
        c.mac = checkpoint_mac(&key, &c);
        assert!(checkpoint_valid(&key, &c));
        assert!(!checkpoint_valid(&[8u8; 32], &c));
        let mut moved = c.clone();
        moved.seq = 11;
        assert!(!checkpoint_valid(&key, &moved));
        let mut relabeled = c.clone();
        relabeled.kind = "prune".into();
        assert!(!checkpoint_valid(&key, &relabeled));
    }
}
