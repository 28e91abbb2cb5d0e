//! `coffer server`: harden the process, open storage, load the seal state,
//! listen. Boots sealed (or uninitialized); never unseals by itself except in
//! `--dev` mode, which is a throw-away single-share instance for laptops.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{Listener, Settings};
use crate::http::metrics::MetricsToken;
use crate::http::proxy::TrustedProxies;
use crate::http::{AppState, router, tls};
use crate::secure_mem;
use crate::service::{Coffer, Unsealed};
use crate::storage;

/// Run a server with validated settings until SIGINT/SIGTERM.
pub(crate) async fn run(settings: Settings) -> anyhow::Result<()> {
    let hardening = secure_mem::harden_process(settings.disable_mlock)?;
    if !hardening.mlock {
        tracing::warn!(
            "disable_mlock = true and memory cannot be locked: keys may be written to swap. \
             Do not run like this in production; raise LimitMEMLOCK instead"
        );
    }
    let store = storage::open(&settings.storage_url)
        .await
        .context("cannot open storage")?;
    let wrapper = settings.pkcs11.clone().map(|p| {
        tracing::info!(
            module = %p.hsm.module.display(),
            token = %p.hsm.token_label,
            key = %p.hsm.key_label,
            disabled = p.disabled,
            "seal \"pkcs11\": the root key is unwrapped by the HSM at boot"
        );
        Arc::new(crate::seal::pkcs11::Pkcs11Wrapper {
            hsm: hsm::Hsm::new(p.hsm),
            disabled: p.disabled,
        }) as Arc<dyn crate::seal::RootWrapper>
    });
    crate::logging::apply(&settings.log_level, settings.log_format);
    let auto_unseal = wrapper.is_some();
    let coffer = Coffer::load_with_seal(
        Arc::new(store),
        wrapper,
        (&settings.audit).into(),
        crate::service::OrgSettings {
            max_per_user: settings.max_orgs_per_user,
            deletion_window: settings.deletion_window,
        },
    )
    .await?;
    coffer.configure_breach_check(crate::service::breach::BreachSettings {
        enabled: settings.breach_check.enabled,
        url: settings.breach_check.url.clone(),
        timeout: settings.breach_check.timeout,
    });
    if auto_unseal {
        coffer.operator.spawn_auto_unseal();
    }
    // Several servers over one PostgreSQL: cache invalidation and jobs
    // (both local on SQLite).
    coffer.spawn_cluster_listener();
    coffer.spawn_jobs(crate::service::jobs::builtin(settings.jobs_interval));
    let metrics_token = MetricsToken::default();
    metrics_token.load(settings.metrics_token_file.as_deref())?;
    let trusted = TrustedProxies::new(&settings.trusted_proxies);
    serve(
        settings.listener.clone(),
        coffer,
        None,
        metrics_token,
        trusted,
        Some(settings),
    )
    .await
}

/// `--dev`: throw-away SQLite in a temp dir, plain HTTP, auto-init with one
/// share, auto-unseal, org `default` / project `default` / env `dev`.
pub(crate) async fn run_dev(address: SocketAddr) -> anyhow::Result<()> {
    let hardening = secure_mem::harden_process(true)?;
    if !hardening.mlock {
        tracing::warn!("memory cannot be locked (dev mode continues anyway)");
    }
    let dir = DevDir::create()?;
    let url = format!("sqlite://{}", dir.0.join("coffer.db").display());
    let store = storage::open(&url).await.context("cannot open dev storage")?;
    let coffer = Coffer::load(Arc::new(store)).await?;
    let init = coffer.operator.init(1, 1).await?;
    let share = init.keys_hex.first().context("init returned no share")?;
    coffer.operator.unseal(share).await?;
    let root = coffer
        .identity
        .authenticate(&crate::service::Caller {
            token: Some(init.root_token.as_str()),
            ..Default::default()
        })
        .await?;
    seed_dev(&coffer, &root).await?;
    // Dev mode exists to hand out these two values; production never prints them.
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "coffer dev server (throw-away data in {dir}; NOT for production)\n\
         \n  Unseal share: {share}\n  Root token:   {token}\n\
         \n  export COFFER_ADDR=http://{address}\n  export COFFER_TOKEN={token}\n",
        dir = dir.0.display(),
        share = share.as_str(),
        token = init.root_token.as_str(),
    )?;
    drop(out);
    serve(
        Listener::Plain { address },
        coffer,
        Some(dir),
        MetricsToken::default(),
        TrustedProxies::default(),
        None,
    )
    .await
}

async fn seed_dev(coffer: &Coffer, root: &Unsealed) -> anyhow::Result<()> {
    coffer.tenants.create_org(root, "default", "Default").await?;
    coffer
        .tenants
        .create_project(root, "default", "default", "Default")
        .await?;
    coffer
        .tenants
        .create_env(root, "default", "default", "dev", "Development", false)
        .await?;
    Ok(())
}

/// Temp data dir of a dev server, removed when the server stops.
struct DevDir(PathBuf);

impl DevDir {
    fn create() -> anyhow::Result<DevDir> {
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).map_err(|_| anyhow::anyhow!("OS random number generator failed"))?;
        let dir = std::env::temp_dir().join(format!("coffer-dev-{}", hex::encode(suffix)));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(DevDir(dir))
    }
}

impl Drop for DevDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What SIGHUP can change without a restart.
struct Reloadable {
    /// the settings the server runs with (the file is re-read)
    settings: Settings,
    /// the TLS configuration of new handshakes (None: plain HTTP)
    tls: Option<tls::SharedConfig>,
    /// the `/metrics` scrape token
    metrics_token: MetricsToken,
}

/// The one reload entry point (SIGHUP, `systemctl reload`): re-read the
/// config file and apply its reloadable parts — the TLS certificate, key,
/// client CA and CRL (new handshakes only; open connections stay), the log
/// level and format, the metrics token. A part that fails to load keeps
/// its old value and the reason is logged. Keys that need a restart
/// (listener.address, storage.url, seal) are reported if they changed.
async fn reload(r: &mut Reloadable, coffer: &Coffer) {
    crate::ops::notify(&[
        sd_notify::NotifyState::Reloading,
        sd_notify::NotifyState::monotonic_usec_now().unwrap_or(sd_notify::NotifyState::Status("reloading")),
    ]);
    let new = match Settings::load(r.settings.source.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "reload: the config is invalid; keeping the running configuration");
            crate::ops::notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&crate::ops::status_line(coffer)),
            ]);
            return;
        }
    };
    crate::logging::apply(&new.log_level, new.log_format);
    // logrotate moved the audit file: write a new one.
    coffer.audit.reopen_audit_sinks();
    if let Err(e) = r.metrics_token.load(new.metrics_token_file.as_deref()) {
        tracing::error!(error = %e, "reload: keeping the old metrics token");
    }
    if let (
        Some(shared),
        Listener::Tls {
            cert,
            key,
            client_ca,
            client_crl,
            ..
        },
    ) = (&r.tls, &new.listener)
    {
        match tls::server_config(cert, key, client_ca.as_deref(), client_crl.as_deref()) {
            Ok(config) => {
                shared.replace(config);
                tracing::info!(cert = %cert.display(), "reload: TLS certificate reloaded");
            }
            Err(e) => tracing::error!(error = %e, "reload: keeping the old TLS certificate"),
        }
    }
    let restart_needed = listener_address(&new.listener) != listener_address(&r.settings.listener)
        || matches!(new.listener, Listener::Tls { .. }) != r.tls.is_some()
        || new.trusted_proxies != r.settings.trusted_proxies
        || new.storage_url != r.settings.storage_url
        || new.disable_mlock != r.settings.disable_mlock;
    if restart_needed {
        tracing::warn!(
            "reload: listener.address, listener.tls_disable, listener.trusted_proxies, storage.url and \
             disable_mlock changes need a restart"
        );
    }
    r.settings = new;
    tracing::info!("reloaded");
    crate::ops::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&crate::ops::status_line(coffer)),
    ]);
}

fn listener_address(l: &Listener) -> SocketAddr {
    match l {
        Listener::Plain { address } | Listener::Tls { address, .. } => *address,
    }
}

async fn serve(
    listener: Listener,
    coffer: Coffer,
    _dev_dir: Option<DevDir>,
    metrics_token: MetricsToken,
    trusted_proxies: TrustedProxies,
    settings: Option<Settings>,
) -> anyhow::Result<()> {
    let limits = settings.as_ref().map(|s| s.conn_limits).unwrap_or_default();
    crate::ops::install_metrics()?;
    coffer.audit.spawn_audit_checkpoints();
    // Every request clones the state: one reference count, not the services'.
    let coffer = Arc::new(coffer);
    let state = AppState {
        coffer: coffer.clone(),
        tls: matches!(listener, Listener::Tls { .. }),
        metrics_token: metrics_token.clone(),
    };
    let app = router(state, limits, trusted_proxies);
    let (address, tls_config) = match &listener {
        Listener::Plain { address } => (*address, None),
        Listener::Tls {
            address,
            cert,
            key,
            client_ca,
            client_crl,
        } => (
            *address,
            Some(tls::SharedConfig::new(tls::server_config(
                cert,
                key,
                client_ca.as_deref(),
                client_crl.as_deref(),
            )?)),
        ),
    };
    let tcp = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let bound = tcp.local_addr()?;
    let scheme = if tls_config.is_some() { "https" } else { "http" };
    let status = coffer.operator.seal_status_cached();
    let state_word = match (status.initialized, status.sealed) {
        (false, _) => "uninitialized",
        (true, true) => "sealed",
        (true, false) => "unsealed",
    };
    tracing::info!(
        storage = coffer.operator.storage_kind(),
        "listening on {scheme}://{bound} ({state_word})"
    );
    // A stable line on stdout for scripts and tests that bind port 0.
    println!("coffer: listening on {scheme}://{bound}");
    if let Some(settings) = settings {
        let mut r = Reloadable {
            settings,
            tls: tls_config.clone(),
            metrics_token,
        };
        let coffer = coffer.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot install the SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading");
                reload(&mut r, &coffer).await;
            }
        });
    }
    crate::ops::spawn_notify(coffer.clone());
    tls::serve(tcp, tls_config, app, limits, shutdown_signal()).await;
    crate::ops::notify(&[sd_notify::NotifyState::Stopping]);
    // Drop every key before exiting.
    coffer.operator.seal_on_shutdown();
    tracing::info!("stopped; keys dropped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
