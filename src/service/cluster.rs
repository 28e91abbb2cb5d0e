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
//! Gaps: when the listener connection is lost or re-established, a server
//! drops all its caches, since notifications sent meanwhile are lost. Every
//! cache entry also expires after one second regardless, so even a
//! notification lost in a gap never lets stale data live longer than that.
//! On SQLite (one process) nothing is sent and no listener runs.

use std::sync::LazyLock;
use std::time::Duration;

use uuid::Uuid;

use super::Coffer;

/// Pause before reconnecting a failed listener.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// This process's id on the channel: a server ignores its own
/// notifications (it applied the change locally already; a root rotation
/// must not seal the server that made it).
static NODE: LazyLock<String> = LazyLock::new(|| Uuid::new_v4().simple().to_string());

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

    /// `<node>|<event>`
    fn message(self) -> String {
        format!("{}|{}", *NODE, self.payload())
    }

    /// The event of a message, unless this process sent it.
    fn from_message(msg: &str) -> Option<Option<Event>> {
        let (node, payload) = msg.split_once('|')?;
        let ev = Event::parse(payload)?;
        Some((node != NODE.as_str()).then_some(ev))
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

impl Coffer {
    /// Announce `event` to every server on this store (no-op on SQLite).
    /// Sent from a task, so callers need not wait; a failed send is logged
    /// and covered by the caches' one-second lifetime.
    pub(crate) fn broadcast(&self, event: Event) {
        if self.store.cluster().is_none() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        rt.spawn(async move {
            if let Err(e) = store.notify(&event.message()).await {
                tracing::warn!(error = %e, event = %event.payload(), "cluster notification not sent");
            }
        });
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
                        event = %event.payload(),
                        "sealed by a cluster event from another server; unseal this server again"
                    );
                }
                self.drop_caches();
            }
        }
    }

    /// PostgreSQL: listen on the store's channel until the process ends,
    /// reconnecting after failures. Nothing on SQLite.
    pub fn spawn_cluster_listener(&self) {
        let Some(link) = self.store.cluster() else {
            tracing::info!("single-process storage: no cluster listener (nothing to broadcast)");
            return;
        };
        let coffer = self.clone();
        tokio::spawn(async move {
            loop {
                let mut listener = match link.listen().await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster listener cannot connect; retrying");
                        coffer.drop_caches();
                        tokio::time::sleep(RECONNECT_DELAY).await;
                        continue;
                    }
                };
                // Whatever was announced before we listened is unknown.
                coffer.drop_caches();
                tracing::info!(channel = %link.channel(), "cluster listener connected");
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => match Event::from_message(n.payload()) {
                            Some(Some(ev)) => coffer.apply(ev),
                            Some(None) => {}
                            None => tracing::warn!("unknown cluster notification ignored"),
                        },
                        Ok(None) => {
                            // Connection lost; the next try_recv reconnects.
                            tracing::warn!("cluster listener connection lost: dropping all caches");
                            coffer.drop_caches();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cluster listener failed: dropping all caches");
                            coffer.drop_caches();
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
            assert_eq!(
                Event::from_message(&ev.message()),
                Some(None),
                "own messages are skipped"
            );
            assert_eq!(Event::from_message(&format!("other|{}", ev.payload())), Some(Some(ev)));
        }
        for junk in ["", "seal:1", "env:nope", "kek:x", "principals:", "other"] {
            assert_eq!(Event::parse(junk), None, "{junk}");
        }
    }
}
