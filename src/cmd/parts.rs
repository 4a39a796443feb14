//! The working parts a command that sends builds, in the order they depend on each other: the
//! metrics endpoint, the recorder, the Cognito client, the pool (its profile, read once, and
//! the client for `--precheck` and alias resolution), and last the ledger (a run is registered
//! there only once nothing else can fail).

use std::sync::Arc;

use super::RunError;
use crate::cognito::admin::PoolAdmin;
use crate::cognito::profile::{DEFAULT_EMAIL_ACCOUNT_PER_DAY, PoolProfile};
use crate::cognito::{Cognito, Misconfiguration};
use crate::config::Settings;
use crate::engine::identity::{IdentityConfig, PoolLookup};
use crate::engine::{self, EngineConfig, SpendLimits, StopCause};
use crate::job::{Source, UsernameCase};
use crate::ledger::{self, Ledger, Waves};
use crate::outcome::Recorder;
use crate::shutdown::Shutdown;
use crate::telemetry::metrics;
use crate::telemetry::server::{self, Readiness};

/// What every command that sends needs, built in the order they depend on each other.
pub(super) struct Parts {
    pub(super) stop_server: tokio_util::sync::CancellationToken,
    pub(super) ready: Readiness,
    pub(super) server: Option<std::net::SocketAddr>,
    pub(super) recorder: Arc<Recorder>,
    pub(super) cognito: Cognito,
    pub(super) ledger: Option<Ledger>,
    pub(super) pool: Option<PoolAccess>,
}

/// The pool, when the run was given `--user-pool-id`: the signed client and what
/// `DescribeUserPool` / `DescribeUserPoolClient` said at the start.
#[derive(Clone)]
pub(crate) struct PoolAccess {
    pub(crate) admin: PoolAdmin,
    pub(crate) profile: PoolProfile,
}

impl Parts {
    pub(super) async fn start(
        settings: &Settings,
        command: &str,
        source: &'static str,
    ) -> Result<Self, RunError> {
        Prepared::start(settings, source)
            .await?
            .register(settings, command)
            .await
    }
}

/// Every part but the run in the ledger: what a command may look at (the ledger's store, the
/// day's spend) before it registers a run ([`Prepared::register`]).
pub(super) struct Prepared {
    pub(super) stop_server: tokio_util::sync::CancellationToken,
    pub(super) ready: Readiness,
    pub(super) server: Option<std::net::SocketAddr>,
    pub(super) recorder: Arc<Recorder>,
    pub(super) cognito: Cognito,
    pub(super) pool: Option<PoolAccess>,
    /// The ledger's store, opened (`None`: `--state none`).
    pub(super) store: Option<Arc<dyn ledger::Store>>,
}

impl Prepared {
    pub(super) async fn start(settings: &Settings, source: &'static str) -> Result<Self, RunError> {
        // The recorder registers its counters: the metrics recorder must exist first.
        let stop_server = tokio_util::sync::CancellationToken::new();
        let ready = Readiness::default();
        // `consume` (the SQS source) is the long-running command.
        let server = start_metrics(
            settings,
            ready.clone(),
            stop_server.clone(),
            source == "sqs",
        )
        .await?;
        let recorder = recorder(settings, source)?;
        let pool = pool_access(settings).await?;
        let cognito = with_invites(cognito(settings).await?, pool.as_ref());
        let case = username_case(settings, pool.as_ref());
        let store = match &settings.ledger.path {
            // A dry run writes nothing, a ledger file included: with none there yet, nobody is
            // in cooldown or capped, and it is planned so.
            ledger::StateSpec::Sqlite(path) if settings.run.dry_run && !path.exists() => {
                tracing::info!(
                    "dry run: no ledger at {} yet, and a dry run creates none: nobody is in \
                     cooldown or capped",
                    path.display()
                );
                None
            }
            _ => open_ledger(settings, case).await?,
        };
        Ok(Self {
            stop_server,
            ready,
            server,
            recorder,
            cognito,
            pool,
            store,
        })
    }

    /// Registers the run in the ledger (last: only once nothing else can fail).
    pub(super) async fn register(
        self,
        settings: &Settings,
        command: &str,
    ) -> Result<Parts, RunError> {
        let ledger = match self.store {
            Some(store) => Some(start_ledger(settings, store, command).await?),
            None if settings.run.dry_run => None,
            None => {
                tracing::warn!(
                    "--state none: no ledger. A rerun, a duplicate row or a redelivered message \
                     sends another code; there is no cooldown"
                );
                None
            }
        };
        // The report's first record, now that the run is certain to start.
        if self.recorder.writes_report() {
            let target = super::run_record::target(settings).await;
            self.recorder.begin_run(&super::run_record::run_record(
                settings,
                command,
                ledger.as_ref().map(Ledger::run),
                self.pool.as_ref(),
                std::env::args().skip(1),
                target,
            ));
        }
        Ok(Parts {
            stop_server: self.stop_server,
            ready: self.ready,
            server: self.server,
            recorder: self.recorder,
            cognito: self.cognito,
            ledger,
            pool: self.pool,
        })
    }
}

/// The recorder of a run whose jobs come from `source` (the metric label), writing the report
/// `--report` names. Needs the metrics recorder installed.
pub(super) fn recorder(
    settings: &Settings,
    source: &'static str,
) -> Result<Arc<Recorder>, RunError> {
    let report = settings
        .report
        .path
        .as_deref()
        .map(|path| (path, settings.report.if_exists));
    let recorder = Recorder::new(source, report, settings.log.usernames)
        .map(|r| r.with_wave(settings.run.wave.clone()))
        .map_err(|e| RunError::Usage(format!("--report (report.path): {e}")))?;
    Ok(Arc::new(recorder))
}

/// Whether the run sends invitations to the FORCE_CHANGE_PASSWORD users it meets: `--action
/// invite`, or `--status` lists them.
pub(crate) fn invites(settings: &Settings) -> bool {
    settings.cognito.action == Some(crate::job::Action::Invite)
        || settings.discover.status.contains(&"FORCE_CHANGE_PASSWORD")
}

/// The Cognito client sends invitations through the pool's signed client, when the run has one.
pub(super) fn with_invites(cognito: Cognito, pool: Option<&PoolAccess>) -> Cognito {
    match pool {
        Some(p) => cognito.with_invites(p.admin.clone()),
        None => cognito,
    }
}

/// The Cognito client; no region anywhere is a usage error.
pub(super) async fn cognito(settings: &Settings) -> Result<Cognito, RunError> {
    let cognito = Cognito::connect(
        &settings.cognito.connection(),
        settings.cognito.client_secret(),
    )
    .await;
    if cognito.region().is_none() {
        return Err(RunError::Usage(
            "no AWS region: set --region (aws.region) or AWS_REGION".into(),
        ));
    }
    Ok(cognito)
}

/// The pool, when `--user-pool-id` is given: connects (credentials are needed), reads its
/// profile once and checks the run against it — a contradicting `--case-sensitive-usernames`
/// or an app client with a secret the run was not given is a usage error, before any call.
/// `--precheck` without a pool is one too.
pub(crate) async fn pool_access(settings: &Settings) -> Result<Option<PoolAccess>, RunError> {
    let Some(pool_id) = settings.cognito.user_pool_id.as_deref() else {
        if settings.cognito.action == Some(crate::job::Action::Invite) {
            return Err(RunError::Usage(
                "--action invite sends invitations with AdminCreateUser to the pool: it needs \
                 --user-pool-id (cognito.user_pool_id)"
                    .into(),
            ));
        }
        if settings.run.precheck {
            return Err(RunError::Usage(
                "--precheck needs the user pool: --user-pool-id (cognito.user_pool_id)".into(),
            ));
        }
        return Ok(None);
    };
    let admin = PoolAdmin::connect(
        &settings.cognito.connection(),
        Some(pool_id),
        if settings.run.precheck {
            "--precheck"
        } else {
            "--user-pool-id (reading the pool profile)"
        },
    )
    .await
    .map_err(|e| RunError::Usage(e.to_string()))?;
    let clients: Vec<String> = settings
        .cognito
        .client_id
        .iter()
        .chain(&settings.cognito.allowed_client_ids)
        .fold(Vec::new(), |mut v, c| {
            if !v.contains(c) {
                v.push(c.clone());
            }
            v
        });
    let profile = read_profile(settings, &admin, &clients).await?;
    check_against_profile(settings, &profile)?;
    for line in profile.to_string().lines() {
        tracing::info!("{line}");
    }
    Ok(Some(PoolAccess { admin, profile }))
}

/// `DescribeUserPool` and `DescribeUserPoolClient` through the one retry layer; a denial or an
/// unknown pool or client is a usage error (nothing was sent).
async fn read_profile(
    settings: &Settings,
    admin: &PoolAdmin,
    clients: &[String],
) -> Result<PoolProfile, RunError> {
    let retry = engine::resend_policy::RetryPolicy::new(settings.retry.clone());
    let limiter = engine::rate::RateLimiter::unreported(settings.run.precheck_rate);
    let never = tokio_util::sync::CancellationToken::new();
    match engine::resend_policy::pool_call(&retry, &limiter, &never, "DescribeUserPool", || {
        admin.profile(clients)
    })
    .await
    {
        Some(Ok(profile)) => Ok(profile),
        Some(Err(e)) => Err(RunError::Usage(format!(
            "--user-pool-id (cognito.user_pool_id): cannot read the pool profile of {} \
             (DescribeUserPool, DescribeUserPoolClient; IAM: cognito-idp:DescribeUserPool and \
             cognito-idp:DescribeUserPoolClient on the pool): {e}",
            admin.pool_id()
        ))),
        None => Err(RunError::Usage(
            "reading the pool profile was interrupted".into(),
        )),
    }
}

/// What the profile makes wrong in the settings: each a usage error naming the setting.
fn check_against_profile(settings: &Settings, profile: &PoolProfile) -> Result<(), RunError> {
    if settings.cognito.case_sensitive_usernames && profile.case() == UsernameCase::Insensitive {
        return Err(RunError::Usage(format!(
            "--case-sensitive-usernames (cognito.case_sensitive_usernames): pool {} is \
             case-insensitive (UsernameConfiguration.CaseSensitive = false); drop the setting",
            profile.pool_id
        )));
    }
    if settings.cognito.client_secret().is_none()
        && let Some(c) = profile.clients.iter().find(|c| c.has_secret)
    {
        return Err(RunError::Usage(format!(
            "app client {} has a secret, and every resend needs its SecretHash: give it with \
             --client-secret-file (cognito.client_secret_file) or COGNITO_RESEND_CLIENT_SECRET",
            c.client_id
        )));
    }
    Ok(())
}

/// How the run keys usernames: the pool's own setting when it was read, else
/// `--case-sensitive-usernames`, else case-insensitive (the safe side: see
/// [`UsernameCase`]).
pub(crate) fn username_case(settings: &Settings, pool: Option<&PoolAccess>) -> UsernameCase {
    match pool {
        Some(p) => p.profile.case(),
        None if settings.cognito.case_sensitive_usernames => UsernameCase::Sensitive,
        None => UsernameCase::Insensitive,
    }
}

/// Who the engine's jobs are for: the case rule, and the pool reads (alias resolution when the
/// pool has aliases, `--precheck`).
pub(crate) fn identity(settings: &Settings, pool: Option<&PoolAccess>) -> IdentityConfig {
    IdentityConfig {
        case: username_case(settings, pool),
        lookup: pool.map(|p| PoolLookup {
            admin: p.admin.clone(),
            precheck: settings.run.precheck,
            resolve_aliases: p.profile.has_aliases(),
            profile: p.profile.clone(),
            rate: settings.run.precheck_rate,
        }),
    }
}

/// Registers a run of `command` in the ledger `store`, in the fleet with `--fleet-rate`.
pub(super) async fn start_ledger(
    settings: &Settings,
    store: Arc<dyn ledger::Store>,
    command: &str,
) -> Result<Ledger, RunError> {
    // `--retention` on a SQLite ledger: what DynamoDB's TTL does for a table, done as the run
    // starts (a run is the one thing that writes the file).
    if let (ledger::StateSpec::Sqlite(_), Some(keep)) =
        (&settings.ledger.path, settings.ledger.retention)
    {
        let before = ledger::now_millis().saturating_sub(ledger::duration_millis(keep));
        let removed = store
            .prune(before)
            .await
            .map_err(|e| RunError::Usage(format!("ledger.retention (--retention): {e}")))?;
        if removed > 0 {
            tracing::info!(
                removed,
                "ledger {}: {removed} user row(s) idle for longer than --retention {} deleted",
                store.describe(),
                humantime::format_duration(keep)
            );
        }
    }
    let timing = settings.ledger.timing();
    // `--fleet-rate`: the run's share of the budget replaces `--rate` (the engine follows it as
    // runs come and go).
    let started = match settings.run.fleet_rate {
        Some(budget) => Ledger::start_in_fleet(store, command, timing, budget).await,
        None => Ledger::start(store, command, timing).await,
    };
    let started = started.map_err(|e| RunError::Usage(format!("ledger.path (--state): {e}")))?;
    Ok(started.with_waves(Waves {
        wave: settings.run.wave.clone(),
        max_sends_per_user: settings.ledger.max_sends_per_user,
    }))
}

/// Opens the store `--state` names for a pool whose usernames are `case` (a case-insensitive
/// pool's ledger has its keys folded once, see [`ledger::open`]); a failure is a configuration
/// error (nothing was sent).
pub(super) async fn open_ledger(
    settings: &Settings,
    case: UsernameCase,
) -> Result<Option<Arc<dyn ledger::Store>>, RunError> {
    settings
        .ledger
        .usable()
        .map_err(|e| RunError::Usage(e.to_string()))?;
    if let ledger::StateSpec::Sqlite(path) = &settings.ledger.path
        && settings.ledger.origin == crate::config::LedgerOrigin::DataHome
    {
        create_data_dir(path)?;
    }
    ledger::open(
        &settings.ledger.path,
        &ledger::dynamo::DynamoSettings {
            region: settings.cognito.region.clone(),
            profile: settings.cognito.profile.clone(),
            endpoint: settings.ledger.dynamodb_endpoint.clone(),
            retention: settings.ledger.retention,
        },
        case,
    )
    .await
    .map_err(|e| RunError::Usage(format!("ledger.path (--state): {e}")))
}

/// Creates the folder of the default ledger (`cognito-resend/` in the data directory, and the
/// data directory itself on a fresh machine), readable by its owner only: the ledger holds
/// personal data. A `--state` path's folder is never created: a typo there should fail, not
/// start a ledger nobody will find again.
fn create_data_dir(ledger: &std::path::Path) -> Result<(), RunError> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(dir) = ledger.parent().filter(|d| !d.exists()) else {
        return Ok(());
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            RunError::Usage(format!(
                "ledger.path (--state): cannot create {} for the default ledger: {e}; give \
                 --state FILE",
                dir.display()
            ))
        })?;
    tracing::info!("created {} for the ledger", dir.display());
    Ok(())
}

/// Runs the engine over `source`, then closes the ledger. Once `time_up` is cancelled (see
/// [`time_up_after_signal`]) every ledger call gives up at once.
#[allow(clippy::too_many_arguments)] // the parts a command built, handed over once
pub(super) async fn run_engine<S: Source>(
    settings: &Settings,
    source: &mut S,
    cognito: Cognito,
    ledger: Option<Ledger>,
    pool: Option<&PoolAccess>,
    recorder: &Arc<Recorder>,
    shutdown: &Shutdown,
    time_up: &tokio_util::sync::CancellationToken,
) -> StopCause {
    let ledger = ledger.map(|l| l.with_give_up(time_up.clone()));
    let cause = engine::run(
        engine_config(settings, ledger.clone(), pool),
        source,
        cognito,
        recorder.clone(),
        shutdown.token.clone(),
    )
    .await;
    // Every job has its ledger result by now; claims still held belong to calls abandoned at
    // shutdown, and are in doubt for the next run from this moment.
    if let Some(l) = &ledger {
        l.close().await;
    }
    cause
}

/// The engine's settings and parts for one run.
pub(super) fn engine_config(
    settings: &Settings,
    ledger: Option<Ledger>,
    pool: Option<&PoolAccess>,
) -> EngineConfig {
    let limits = effective_limits(settings, ledger.is_some(), pool);
    EngineConfig {
        concurrency: settings.run.concurrency,
        rate: settings.run.rate,
        invite_rate: settings.run.invite_rate,
        dry_run: settings.run.dry_run,
        retry: settings.retry.clone(),
        spend: SpendLimits {
            run: limits.max_sends,
            day: limits.day(),
        },
        default_client_id: settings.cognito.client_id.clone(),
        allowed_client_ids: settings.cognito.allowed_client_ids.clone(),
        shutdown_grace: calls_grace(settings.sqs.shutdown_grace),
        ledger,
        identity: identity(settings, pool),
        default_email_account: pool.is_some_and(|p| p.profile.default_email_account),
        request_defaults: crate::job::RequestDefaults {
            invites: invites(settings),
            ..settings.cognito.request_defaults()
        },
    }
}

/// Of `--shutdown-grace` (all the time a run has after a signal), what calls in flight may
/// take: two thirds. The last third is for what comes after them — recording their results,
/// deleting or returning their messages, closing the ledger — so that all of it ends within
/// the grace, before the orchestrator's SIGKILL ([`time_up_after_signal`]).
pub(super) fn calls_grace(shutdown_grace: std::time::Duration) -> std::time::Duration {
    shutdown_grace * 2 / 3
}

/// A token cancelled `--shutdown-grace` after the first signal: the run's time is up, and every
/// ledger call and queue acknowledgement still pending gives up rather than run into the
/// orchestrator's SIGKILL (a pod's terminationGracePeriodSeconds, which the grace stays under).
pub(super) fn time_up_after_signal(
    settings: &Settings,
    shutdown: &Shutdown,
) -> tokio_util::sync::CancellationToken {
    let time_up = tokio_util::sync::CancellationToken::new();
    let (signal, grace, up) = (
        shutdown.token.clone(),
        settings.sqs.shutdown_grace,
        time_up.clone(),
    );
    tokio::spawn(async move {
        signal.cancelled().await;
        tokio::time::sleep(grace).await;
        tracing::warn!(
            "the {grace:?} shutdown grace is over: giving up on what is still pending (results \
             not yet recorded stay claimed, and the next run reports those users in doubt)"
        );
        up.cancel();
    });
    time_up
}

/// The spend caps a run applies: the settings', and Cognito's default email account's 50
/// emails a day as the email day cap unless one is set (it needs the ledger, which keeps the
/// day's counts). `plan` forecasts with the same caps.
pub(crate) fn effective_limits(
    settings: &Settings,
    has_ledger: bool,
    pool: Option<&PoolAccess>,
) -> crate::config::LimitSettings {
    let mut limits = settings.limits.clone();
    if has_ledger
        && limits.max_email_per_day.is_none()
        && pool.is_some_and(|p| p.profile.default_email_account)
    {
        limits.max_email_per_day = Some(DEFAULT_EMAIL_ACCOUNT_PER_DAY);
    }
    limits
}

/// `--pushgateway`: pushes a one-shot run's final metrics. A failed push is logged, not fatal:
/// the jobs are done and reported either way.
/// `by`, when given, bounds it (the Lambda's deadline): a push not done by then is given up.
pub(super) async fn push_final(
    settings: &Settings,
    command: &str,
    by: Option<tokio::time::Instant>,
) {
    let Some(url) = &settings.metrics.pushgateway else {
        return;
    };
    let push = crate::telemetry::push::push(url, command);
    let pushed = match by {
        Some(by) => tokio::time::timeout_at(by, push)
            .await
            .unwrap_or(Err(crate::telemetry::push::PushError::TimeUp)),
        None => push.await,
    };
    match pushed {
        Ok(to) => tracing::info!("pushed the final metrics to {to}"),
        Err(e) => tracing::error!("pushing the final metrics failed: {e}"),
    }
}

/// Installs the process's metrics recorder (once), with every stop reason at 0.
pub(super) fn install_metrics() -> Result<metrics_exporter_prometheus::PrometheusHandle, RunError> {
    metrics::install(&Misconfiguration::ALL.map(Misconfiguration::reason)).map_err(RunError::Fatal)
}

/// Installs the recorder and serves it where `--metrics-addr` says (without it: a
/// `long_running` command on its fixed port, a one-shot nowhere). Returns the bound address.
pub(super) async fn start_metrics(
    settings: &Settings,
    ready: Readiness,
    stop: tokio_util::sync::CancellationToken,
    long_running: bool,
) -> Result<Option<std::net::SocketAddr>, RunError> {
    let handle = install_metrics()?;
    let Some(addr) = settings.metrics.listen.for_command(long_running) else {
        return Ok(None);
    };
    let (bound, _task) = server::serve(addr, handle, ready, stop)
        .await
        .map_err(|e| {
            RunError::Usage(format!(
                "metrics.listen (--metrics-addr): cannot listen on {addr}: {e}; another \
                 process may hold the port: give another (--metrics-addr 127.0.0.1:0 picks a \
                 free one and logs it) or --metrics-addr none"
            ))
        })?;
    tracing::info!("metrics on http://{bound}/metrics (also /healthz, /readyz)");
    Ok(Some(bound))
}
