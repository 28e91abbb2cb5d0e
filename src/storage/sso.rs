//! Storage of single sign-on (issue 20, docs/sso.md): an organization's
//! OIDC provider (a tenant row; its client secret only as a ciphertext
//! under the org KEK) and the pending logins between the redirect to the
//! provider and its callback (not tenant rows: the callback finds its
//! organization by the state; single use, short-lived). A trait of its own
//! ([`SsoStore`], a supertrait of [`super::Backend`]), implemented once here
//! for [`SqlBackend`] in portable SQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::db::{conflict, query, uuid};
use super::{Result, SqlBackend};

/// An organization's OIDC provider. Its Debug leaves out the client secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SsoProviderRow {
    /// organization
    pub org_id: Uuid,
    /// the name on the "Sign in with …" button
    pub display_name: String,
    /// issuer URL (discovery at `<issuer>/.well-known/openid-configuration`)
    pub issuer: String,
    /// OAuth client id
    pub client_id: String,
    /// the client secret, AES-256-GCM under the org KEK `kek_version`
    pub client_secret: Vec<u8>,
    /// the KEK version the secret is encrypted under
    pub kek_version: i64,
    /// space-separated scopes
    pub scopes: String,
    /// comma-separated email domains ('' = any)
    pub allowed_domains: String,
    /// the ID token claim with the person's groups ('' = no sync)
    pub groups_claim: String,
    /// members' password sessions are refused on this organization
    pub sso_required: bool,
    /// comma-separated emails whose password sessions stay accepted
    pub break_glass: String,
    /// actor name
    pub updated_by: String,
    /// unix ms
    pub updated_at: i64,
}

impl std::fmt::Debug for SsoProviderRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoProviderRow")
            .field("org_id", &self.org_id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("sso_required", &self.sso_required)
            .finish_non_exhaustive()
    }
}

/// A pending SSO login. Its Debug leaves out the nonce and the verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct SsoStateRow {
    /// SHA-256 of the `state` sent to the provider
    pub state_hash: Vec<u8>,
    /// organization
    pub org_id: Uuid,
    /// the `nonce` the ID token must carry
    pub nonce: String,
    /// the PKCE code verifier
    pub pkce_verifier: String,
    /// the redirect URI the code was sent to
    pub redirect_uri: String,
    /// SHA-256 of what binds the callback to the client that started it
    pub binding_hash: Vec<u8>,
    /// ui | api
    pub purpose: String,
    /// unix ms
    pub expires_at: i64,
    /// unix ms
    pub created_at: i64,
}

impl std::fmt::Debug for SsoStateRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoStateRow")
            .field("org_id", &self.org_id)
            .field("purpose", &self.purpose)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// SSO providers and pending SSO logins.
#[async_trait]
pub trait SsoStore: Send + Sync + std::fmt::Debug {
    /// An organization's provider.
    async fn sso_provider(&self, org_id: Uuid) -> Result<Option<SsoProviderRow>>;
    /// Create or replace an organization's provider.
    async fn put_sso_provider(&self, row: &SsoProviderRow) -> Result<()>;
    /// Remove an organization's provider (and its pending logins); false if absent.
    async fn delete_sso_provider(&self, org_id: Uuid) -> Result<bool>;
    /// Store the client secret sealed again under KEK version
    /// `kek_version`, if it is still under `expect` (re-wrap); false otherwise.
    async fn reseal_sso_secret(&self, org_id: Uuid, sealed: &[u8], kek_version: i64, expect: i64) -> Result<bool>;
    /// Record a pending login (and drop the expired ones).
    async fn insert_sso_state(&self, row: &SsoStateRow) -> Result<()>;
    /// Take a pending login by its state hash: it is deleted, so a second
    /// take of the same state finds nothing. Expired ones are returned too
    /// (the caller refuses them with a clear message).
    async fn take_sso_state(&self, state_hash: &[u8]) -> Result<Option<SsoStateRow>>;
}

fn provider_row(r: &AnyRow) -> Result<SsoProviderRow> {
    Ok(SsoProviderRow {
        org_id: uuid(r, "org_id", "sso_providers")?,
        display_name: r.try_get("display_name")?,
        issuer: r.try_get("issuer")?,
        client_id: r.try_get("client_id")?,
        client_secret: r.try_get("client_secret")?,
        kek_version: r.try_get("kek_version")?,
        scopes: r.try_get("scopes")?,
        allowed_domains: r.try_get("allowed_domains")?,
        groups_claim: r.try_get("groups_claim")?,
        sso_required: r.try_get::<i64, _>("sso_required")? != 0,
        break_glass: r.try_get("break_glass")?,
        updated_by: r.try_get("updated_by")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn state_row(r: &AnyRow) -> Result<SsoStateRow> {
    Ok(SsoStateRow {
        state_hash: r.try_get("state_hash")?,
        org_id: uuid(r, "org_id", "sso_states")?,
        nonce: r.try_get("nonce")?,
        pkce_verifier: r.try_get("pkce_verifier")?,
        redirect_uri: r.try_get("redirect_uri")?,
        binding_hash: r.try_get("binding_hash")?,
        purpose: r.try_get("purpose")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
    })
}

#[async_trait]
impl SsoStore for SqlBackend {
    async fn sso_provider(&self, org_id: Uuid) -> Result<Option<SsoProviderRow>> {
        let row = query("SELECT * FROM sso_providers WHERE org_id = $1")
            .bind(org_id.to_string())
            .fetch_optional(&mut *self.tenant(org_id).await?)
            .await?;
        row.as_ref().map(provider_row).transpose()
    }

    async fn reseal_sso_secret(&self, org_id: Uuid, sealed: &[u8], kek_version: i64, expect: i64) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query(
            "UPDATE sso_providers SET client_secret = $1, kek_version = $2 WHERE org_id = $3 AND kek_version = $4",
        )
        .bind(sealed.to_vec())
        .bind(kek_version)
        .bind(org_id.to_string())
        .bind(expect)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_sso_provider(&self, p: &SsoProviderRow) -> Result<()> {
        let mut tx = self.tenant_tx(p.org_id).await?;
        query("DELETE FROM sso_providers WHERE org_id = $1")
            .bind(p.org_id.to_string())
            .execute(&mut *tx)
            .await?;
        query(
            "INSERT INTO sso_providers (org_id, display_name, issuer, client_id, client_secret, kek_version, scopes, \
             allowed_domains, groups_claim, sso_required, break_glass, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(p.org_id.to_string())
        .bind(p.display_name.clone())
        .bind(p.issuer.clone())
        .bind(p.client_id.clone())
        .bind(p.client_secret.clone())
        .bind(p.kek_version)
        .bind(p.scopes.clone())
        .bind(p.allowed_domains.clone())
        .bind(p.groups_claim.clone())
        .bind(i64::from(p.sso_required))
        .bind(p.break_glass.clone())
        .bind(p.updated_by.clone())
        .bind(p.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict("sso provider exists"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_sso_provider(&self, org_id: Uuid) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query("DELETE FROM sso_providers WHERE org_id = $1")
            .bind(org_id.to_string())
            .execute(&mut *tx)
            .await?;
        query("DELETE FROM sso_states WHERE org_id = $1")
            .bind(org_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_sso_state(&self, s: &SsoStateRow) -> Result<()> {
        query("DELETE FROM sso_states WHERE expires_at < $1")
            .bind(s.created_at)
            .execute(self.pool())
            .await?;
        query(
            "INSERT INTO sso_states (state_hash, org_id, nonce, pkce_verifier, redirect_uri, binding_hash, purpose, \
             expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(s.state_hash.clone())
        .bind(s.org_id.to_string())
        .bind(s.nonce.clone())
        .bind(s.pkce_verifier.clone())
        .bind(s.redirect_uri.clone())
        .bind(s.binding_hash.clone())
        .bind(s.purpose.clone())
        .bind(s.expires_at)
        .bind(s.created_at)
        .execute(self.pool())
        .await
        .map_err(conflict("sso state exists"))?;
        Ok(())
    }

    async fn take_sso_state(&self, state_hash: &[u8]) -> Result<Option<SsoStateRow>> {
        let mut tx = self.pool().begin().await?;
        let row = query("SELECT * FROM sso_states WHERE state_hash = $1")
            .bind(state_hash.to_vec())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        // Whoever deletes the row owns the login: two callbacks racing
        // with one state see one row deleted between them.
        let gone = query("DELETE FROM sso_states WHERE state_hash = $1")
            .bind(state_hash.to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if gone.rows_affected() != 1 {
            return Ok(None);
        }
        state_row(&row).map(Some)
    }
}
