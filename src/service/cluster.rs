//! Several servers over one PostgreSQL: cache invalidation by
//! LISTEN/NOTIFY. Each server is unsealed on its own; what one server
//! changes and another may have cached is announced on the store's channel
//! right after the change commits, and every server (the sender too) drops
//! the affected entries when the notification arrives, typically within a
//! few milliseconds.
//!
//! | event              | sent after                                          | receivers drop            |
//! |--------------------|-----------------------------------------------------|---------------------------|
//! | `principals`       | token/session revocation, grant, membership, group, service-account change | token, certificate and permission caches |
//! | `env:<id>`         | a secret write, delete, restore or purge            | that environment's inject rows |
//! | `keys:<org>`       | KEK rotation                                        | every hot cache (env paths carry the active KEK) |
//! | `kek:<org>:<v>`    | KEK destruction                                     | that KEK from the keyring |
//! | `root`             | root key rotation                                   | their keys: they seal (the root in their memory is stale); unseal them again with the same shares |
//! | `seal`             | `sys/seal` on any server                            | their keys: a seal seals the whole cluster |
//!
//! A seal on one server seals all (decision): sealing is the emergency stop
//! of an incident, and an operator who seals expects the secrets to become
//! unreadable, not to keep flowing from the other servers. Each server must
//! then be unsealed again. Stopping one server (SIGTERM) drops only its own
//! keys.
//!
//! Messages are authenticated (see [`Envelope`]): any database role can
//! `NOTIFY` the channel, so only messages tagged under the key derived from
//! the root key, fresh and not seen before, are applied; the rest are
//! counted (`coffer_cluster_messages_rejected_total`) and logged. A sealed
//! server holds no key: it sends nothing and, on any well-formed message,
//! only drops its caches.
//!
//! Gaps: when the listener connection is lost or re-established, a server
//! drops all its caches, since notifications sent meanwhile are lost. Every
//! cache entry also expires after one second regardless, so even a
//! notification lost in a gap never lets stale data live longer than that.
//! On SQLite (one process) nothing is sent and no listener runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use uuid::Uuid;

use super::{Shared, now_ms};
use crate::keys::Keyring;

/// Pause before reconnecting a failed listener.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// This process's id on the channel: a server ignores its own
/// notifications (it applied the change locally already; a root rotation
/// must not seal the server that made it).
static NODE: LazyLock<String> = LazyLock::new(|| Uuid::new_v4().simple().to_string());

/// Sequence number of this process's next message (per [`NODE`]).
static SEQ: AtomicU64 = AtomicU64::new(1);

/// The replay state of this process's listener.
static REPLAY: LazyLock<ReplayGuard> = LazyLock::new(ReplayGuard::default);

/// Version of the signed message format.
const FORMAT: &str = "v1";

/// Oldest (and furthest in the future) a message may be by the receiver's
/// clock: delivery takes milliseconds, so this is mostly clock skew
/// between servers (keep them NTP-synchronised).
const MAX_AGE_MS: i64 = 10_000;

/// Senders remembered before the ones silent for [`MAX_AGE_MS`] are pruned.
const REPLAY_NODES_MAX: usize = 256;

/// A change other servers must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// a token, grant, membership, group or service account changed
    Principals,
    /// an environment's secrets changed
    Env(Uuid),
    /// an organization's active KEK changed
    Keys(Uuid),
    /// a KEK version was destroyed
    KekDestroyed(Uuid, i64),
    /// the root key was rotated
    Root,
    /// the cluster was sealed
    Seal,
}

impl Event {
    fn payload(self) -> String {
        match self {
            Event::Principals => "principals".into(),
            Event::Env(id) => format!("env:{id}"),
            Event::Keys(org) => format!("keys:{org}"),
            Event::KekDestroyed(org, v) => format!("kek:{org}:{v}"),
            Event::Root => "root".into(),
            Event::Seal => "seal".into(),
        }
    }

    /// The event's kind, for logs and metrics (no ids).
    fn kind(self) -> &'static str {
        match self {
            Event::Principals => "principals",
            Event::Env(_) => "env",
            Event::Keys(_) => "keys",
            Event::KekDestroyed(..) => "kek",
            Event::Root => "root",
            Event::Seal => "seal",
        }
    }

    fn parse(payload: &str) -> Option<Event> {
        let mut parts = payload.split(':');
        let ev = match (parts.next()?, parts.next(), parts.next()) {
            ("principals", None, None) => Event::Principals,
            ("env", Some(id), None) => Event::Env(Uuid::parse_str(id).ok()?),
            ("keys", Some(org), None) => Event::Keys(Uuid::parse_str(org).ok()?),
            ("kek", Some(org), Some(v)) => Event::KekDestroyed(Uuid::parse_str(org).ok()?, v.parse().ok()?),
            ("root", None, None) => Event::Root,
            ("seal", None, None) => Event::Seal,
            _ => return None,
        };
        parts.next().is_none().then_some(ev)
    }
}

/// One message on the channel:
/// `v1|<node>|<seq>|<unix ms>|<event>|<hex HMAC-SHA256>`.
///
/// Any role that can connect to the database can `NOTIFY` the channel, so
/// a message counts only if its tag verifies under the cluster key derived
/// from the root key (only unsealed servers hold it); the tag covers the
/// channel name and every field. Against replay the receiver requires a
/// sequence number above the last one it accepted from that node, and a
/// timestamp within [`MAX_AGE_MS`] of its own clock (a node it has not
/// heard from yet, e.g. after a restart, cannot be fed an old message).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Envelope {
    /// sender process (32 hex digits)
    node: String,
    /// sender's sequence number, from 1
    seq: u64,
    /// sender's clock, unix ms
    ts: i64,
    event: Event,
}

impl Envelope {
    fn new(event: Event) -> Envelope {
        Envelope {
            node: NODE.clone(),
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
            ts: now_ms(),
            event,
        }
    }

    /// What the tag covers.
    fn body(&self) -> String {
        format!(
            "{FORMAT}|{}|{}|{}|{}",
            self.node,
            self.seq,
            self.ts,
            self.event.payload()
        )
    }

    fn mac_input(channel: &str, body: &str) -> Vec<u8> {
        let mut input = Vec::with_capacity(channel.len() + 1 + body.len());
        input.extend_from_slice(channel.as_bytes());
        input.push(0);
        input.extend_from_slice(body.as_bytes());
        input
    }

    /// The message to send on `channel`, signed under `keyring`.
    fn sign(&self, keyring: &Keyring, channel: &str) -> String {
        let body = self.body();
        let tag = keyring.cluster_tag(&Self::mac_input(channel, &body));
        format!("{body}|{}", hex::encode(tag))
    }

    /// The fields of a well-formed message and its tag (not verified yet).
    fn parse(msg: &str) -> Option<(Envelope, Vec<u8>)> {
        let (body, tag) = msg.rsplit_once('|')?;
        let tag = hex::decode(tag).ok().filter(|t| t.len() == 32)?;
        let mut f = body.split('|');
        let (format, node, seq, ts, event) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
        let ok_node = node.len() == 32 && node.bytes().all(|b| b.is_ascii_hexdigit());
        if format != FORMAT || !ok_node || f.next().is_some() {
            return None;
        }
        let env = Envelope {
            node: node.to_owned(),
            seq: seq.parse().ok()?,
            ts: ts.parse().ok()?,
            event: Event::parse(event)?,
        };
        // Exactly one spelling per message: the tag covers what we re-encode.
        (env.body() == body).then_some((env, tag))
    }

    /// Whether `tag` authenticates this message on `channel` (constant time).
    fn verify(&self, keyring: &Keyring, channel: &str, tag: &[u8]) -> bool {
        keyring.check_cluster_tag(&Self::mac_input(channel, &self.body()), tag)
    }
}

/// Why a message was refused (the `reason` label of
/// `coffer_cluster_messages_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    /// not a v1 message
    Malformed,
    /// the tag does not verify under this server's root key
    BadMac,
    /// timestamp too far from this server's clock
    Stale,
    /// sequence number not above the last accepted from its node
    Replayed,
}

impl Reject {
    fn label(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::BadMac => "bad_mac",
            Reject::Stale => "stale",
            Reject::Replayed => "replayed",
        }
    }
}

/// The last sequence number (and its timestamp) accepted from each node.
/// Only authenticated messages get here, so only real servers take room.
#[derive(Debug, Default)]
struct ReplayGuard {
    seen: Mutex<HashMap<String, (u64, i64)>>,
}

impl ReplayGuard {
    fn accept(&self, env: &Envelope, now: i64) -> Result<(), Reject> {
        if (now - env.ts).abs() > MAX_AGE_MS {
            return Err(Reject::Stale);
        }
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.get(&env.node).is_some_and(|&(last, _)| env.seq <= last) {
            return Err(Reject::Replayed);
        }
        if seen.len() >= REPLAY_NODES_MAX {
            // A node silent for longer than a message may live can only be
            // replayed with stale timestamps, which are refused anyway.
            seen.retain(|_, &mut (_, ts)| now - ts <= MAX_AGE_MS);
        }
        seen.insert(env.node.clone(), (env.seq, env.ts));
        Ok(())
    }
}

/// Count and log a refused message: its kind and sender, never its tag.
fn reject(reason: Reject, env: Option<&Envelope>, len: usize) {
    metrics::counter!("coffer_cluster_messages_rejected_total", "reason" => reason.label()).increment(1);
    match env {
        Some(e) => tracing::warn!(
            reason = reason.label(),
            event = e.event.kind(),
            node = %e.node,
            seq = e.seq,
            "cluster notification rejected (not signed by a server with this root key, or replayed)"
        ),
        None => tracing::warn!(
            reason = reason.label(),
            bytes = len,
            "cluster notification rejected (not a coffer message)"
        ),
    }
}

impl Shared {
    /// After a revocation on this server: drop every cached authentication
    /// and permission, so the very next request here re-reads them (other
    /// servers re-read within the 1 s cache lifetime).
    pub(crate) fn forget_principals(&self) {
        self.cache.tokens.clear();
        self.cache.certs.clear();
        self.cache.access.clear();
        // slug paths → ids: a renamed organization or project changes them
        self.cache.envs.clear();
    }

    /// After a change to who may do what (revocation, grants, memberships,
    /// groups, service accounts) or to the slugs that name a tenant (a
    /// rename): forget it here and on every other server.
    pub(crate) fn principals_changed(&self) {
        self.forget_principals();
        self.broadcast(Event::Principals);
    }

    /// Announce `event` to every server on this store (no-op on SQLite),
    /// signed under this server's root key. Sent from a task, so callers
    /// need not wait; a failed send is logged and covered by the caches'
    /// one-second lifetime. A sealed server holds no key to sign with and
    /// announces nothing (the others' caches expire within a second).
    pub(crate) fn broadcast(&self, event: Event) {
        if let Event::Env(env_id) = event {
            // CI sync (issue 19): this server queues the environment's sync jobs
            self.ci_sync_writes.written(env_id);
        }
        match self.keyring() {
            Ok(keyring) => self.broadcast_signed(event, &keyring),
            Err(_) => tracing::debug!(event = event.kind(), "sealed: cluster notification not sent"),
        }
    }

    /// [`Shared::broadcast`] signed under `keyring`: a root rotation signs
    /// with the root the other servers still hold.
    pub(crate) fn broadcast_signed(&self, event: Event, keyring: &Keyring) {
        let Some(link) = self.store.cluster() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let message = Envelope::new(event).sign(keyring, &link.channel());
        let store = self.store.clone();
        rt.spawn(async move {
            if let Err(e) = store.notify(&message).await {
                tracing::warn!(error = %e, event = event.kind(), "cluster notification not sent");
            }
        });
    }

    /// Handle one notification from `channel`: apply it if a server holding
    /// this root key sent it, once; count and log it otherwise.
    fn receive(&self, channel: &str, msg: &str) {
        let Some((env, tag)) = Envelope::parse(msg) else {
            return reject(Reject::Malformed, None, msg.len());
        };
        if env.node == *NODE {
            return;
        }
        let Ok(keyring) = self.keyring() else {
            // Sealed: no key to verify with. Dropping caches is always safe
            // (and a seal or root event has nothing left to do here).
            if !matches!(env.event, Event::Root | Event::Seal) {
                self.drop_caches();
            }
            return;
        };
        let genuine = env.verify(&keyring, channel, &tag);
        drop(keyring);
        if !genuine {
            return reject(Reject::BadMac, Some(&env), msg.len());
        }
        if let Err(reason) = REPLAY.accept(&env, now_ms()) {
            return reject(reason, Some(&env), msg.len());
        }
        self.apply(env.event);
    }

    /// Apply an event from the channel.
    fn apply(&self, event: Event) {
        match event {
            Event::Principals => self.forget_principals(),
            Event::Env(id) => self.store.forget_values(id),
            Event::Keys(_) => self.cache.clear(),
            Event::KekDestroyed(org, v) => {
                if let Ok(k) = self.keyring() {
                    k.forget_kek(org, v);
                }
            }
            Event::Root | Event::Seal => {
                if self.keyring().is_ok() {
                    let _ = self.seal.seal();
                    tracing::warn!(
                        event = event.kind(),
                        "sealed by a cluster event from another server; unseal this server again"
                    );
                }
                self.drop_caches();
            }
        }
    }

    /// PostgreSQL: listen on the store's channel until the process ends,
    /// reconnecting after failures. Nothing on SQLite.
    pub(super) fn spawn_cluster_listener(self: &Arc<Self>) {
        let Some(link) = self.store.cluster() else {
            tracing::info!("single-process storage: no cluster listener (nothing to broadcast)");
            return;
        };
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let mut listener = match link.listen().await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster listener cannot connect; retrying");
                        shared.drop_caches();
                        tokio::time::sleep(RECONNECT_DELAY).await;
                        continue;
                    }
                };
                // Whatever was announced before we listened is unknown.
                shared.drop_caches();
                let channel = link.channel();
                tracing::info!(channel = %channel, "cluster listener connected");
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => shared.receive(&channel, n.payload()),
                        Ok(None) => {
                            // Connection lost; the next try_recv reconnects.
                            tracing::warn!("cluster listener connection lost: dropping all caches");
                            shared.drop_caches();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cluster listener failed: dropping all caches");
                            shared.drop_caches();
                            break;
                        }
                    }
                }
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure_mem::KeyBytes;

    fn keyring() -> Keyring {
        Keyring::generate(&KeyBytes::random().expect("key")).expect("keyring").0
    }

    fn from(node: &str, seq: u64, ts: i64, event: Event) -> Envelope {
        Envelope {
            node: node.to_owned(),
            seq,
            ts,
            event,
        }
    }

    #[test]
    fn payloads_round_trip_and_junk_is_refused() {
        let id = Uuid::new_v4();
        for ev in [
            Event::Principals,
            Event::Env(id),
            Event::Keys(id),
            Event::KekDestroyed(id, 3),
            Event::Root,
            Event::Seal,
        ] {
            assert_eq!(Event::parse(&ev.payload()), Some(ev));
        }
        for junk in ["", "seal:1", "env:nope", "kek:x", "principals:", "other"] {
            assert_eq!(Event::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn only_messages_signed_under_the_same_root_and_channel_verify() {
        let (ring, other) = (keyring(), keyring());
        let env = Envelope::new(Event::Seal);
        let msg = env.sign(&ring, "coffer_a");
        let (parsed, tag) = Envelope::parse(&msg).expect("well-formed");
        assert_eq!(parsed, env);
        assert!(parsed.verify(&ring, "coffer_a", &tag));
        assert!(!parsed.verify(&other, "coffer_a", &tag), "another root key");
        assert!(
            !parsed.verify(&ring, "coffer_b", &tag),
            "another installation's channel"
        );
        // Every field is covered by the tag.
        let body = msg.rsplit_once('|').expect("tag").0;
        let tag_hex = hex::encode(&tag);
        for forged in [
            body.replace("|seal", "|root"),
            body.replacen(&format!("|{}|", env.seq), &format!("|{}|", env.seq + 1), 1),
            body.replacen(&format!("|{}|", env.ts), &format!("|{}|", env.ts + 1), 1),
            body.replacen(&env.node, &"0".repeat(32), 1),
        ] {
            let (f, t) = Envelope::parse(&format!("{forged}|{tag_hex}")).expect("well-formed");
            assert!(!f.verify(&ring, "coffer_a", &t), "{forged}");
        }
        // The pre-signature format, and other junk, is not a message at all.
        for junk in [
            format!("{}|seal", "a".repeat(32)),
            "seal".to_owned(),
            format!("v2|{}", &msg[3..]),
            format!("{msg}|x"),
            msg.replace("|seal|", "|SEAL|"),
            format!("{body}|{}", &tag_hex[..62]),
        ] {
            assert!(Envelope::parse(&junk).is_none(), "{junk}");
        }
    }

    #[test]
    fn replayed_and_stale_messages_are_refused() {
        let guard = ReplayGuard::default();
        let now = 1_000_000_000;
        let a = "a".repeat(32);
        let b = "b".repeat(32);
        assert_eq!(guard.accept(&from(&a, 5, now, Event::Seal), now), Ok(()));
        assert_eq!(guard.accept(&from(&a, 5, now, Event::Seal), now), Err(Reject::Replayed));
        assert_eq!(
            guard.accept(&from(&a, 4, now, Event::Seal), now + 1),
            Err(Reject::Replayed)
        );
        assert_eq!(guard.accept(&from(&a, 6, now, Event::Principals), now + 1), Ok(()));
        // Another node has its own sequence.
        assert_eq!(guard.accept(&from(&b, 1, now, Event::Seal), now), Ok(()));
        // A node never heard of (a restart) cannot be fed an old message.
        let c = "c".repeat(32);
        let old = from(&c, 1, now - MAX_AGE_MS - 1, Event::Seal);
        assert_eq!(guard.accept(&old, now), Err(Reject::Stale));
        let future = from(&c, 1, now + MAX_AGE_MS + 1, Event::Seal);
        assert_eq!(guard.accept(&future, now), Err(Reject::Stale));
    }

    #[test]
    fn replay_state_stays_bounded() {
        let guard = ReplayGuard::default();
        let now = 1_000_000_000;
        for i in 0..(3 * REPLAY_NODES_MAX as u64) {
            let node = format!("{i:032x}");
            let at = now + i64::try_from(i).expect("small") * MAX_AGE_MS;
            assert_eq!(guard.accept(&from(&node, 1, at, Event::Principals), at), Ok(()));
        }
        let n = guard.seen.lock().expect("lock").len();
        assert!(n <= REPLAY_NODES_MAX, "{n}");
    }
}
