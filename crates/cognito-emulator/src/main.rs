//! `cognito-emulator`: the bundled Cognito emulator as a process, for the README demo and for
//! benchmarks that drive the release binary from outside.
//!
//! It only parses flags, seeds the pool (the demo users, and users from `--users` files), and
//! runs [`cognito_emulator`] until SIGINT/SIGTERM. Its one line on stdout (`listening on
//! http://127.0.0.1:PORT`) is what scripts wait for; the final stats go to stderr as JSON, and
//! live ones are at `GET /_emulator/stats`.
//! `POST /_emulator/down?for=2s` takes it down for that long (connections refused, open ones
//! closed), after which it listens on the same address again. `POST /_emulator/quota?rps=20` (or
//! `?schedule=0s=50,20s=20`) changes the quota; `GET /_emulator/rates` has the accepted and
//! throttled requests per second (`&category=user_creation` for AdminCreateUser's own quota).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use cognito_emulator::seed::seed_pool;
use cognito_emulator::{
    AliasAttribute, ClientSpec, EmailSendingAccount, Emulator, Faults, QuotaSchedule,
    UsernameAttribute, VerifiedAttribute, parse_list,
};

/// A local Amazon Cognito emulator (ResendConfirmationCode, AdminGetUser, ListUsers,
/// DescribeUserPool, DescribeUserPoolClient, AdminCreateUser RESEND) with fault injection and a
/// ledger of every code and invitation it "sends". Loopback only.
#[derive(Debug, Parser)]
#[command(name = "cognito-emulator", version)]
struct Args {
    /// Address to listen on (loopback only; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// Seed the demo pool with N usernames (user-000001...): ~70% UNCONFIRMED, ~20% CONFIRMED,
    /// ~10% missing from the pool.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: usize,

    /// Also seed N invited users (invited-000001...): FORCE_CHANGE_PASSWORD, as created by an
    /// administrator and never signed in, each with an email and every other one a phone; only
    /// AdminCreateUser with MessageAction RESEND reaches them.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed_invited: usize,

    /// Seed users from a CSV or JSON file (by extension, else by content), added to --seed and
    /// --seed-invited; repeatable. CSV: a header with `username` (or `cognito:username`),
    /// optional `status` (default UNCONFIRMED), `email`, `phone_number`, `email_verified`,
    /// `phone_number_verified`, `created`, any other column an attribute. JSON: an array of
    /// `{"username", "status", "attributes": {...}}`. A username seeded twice, or any bad row,
    /// is an error naming the file and line (CSV) or index (JSON). See docs/emulator.md.
    #[arg(long = "users", value_name = "FILE")]
    users: Vec<PathBuf>,

    /// Write the pool's usernames (the demo pool's missing ones too, then --seed-invited's and
    /// --users') as CSV `username,email,status`.
    #[arg(long, value_name = "PATH")]
    csv_out: Option<PathBuf>,

    /// The app client id.
    #[arg(long, default_value = "democlient")]
    client_id: String,

    /// File holding the app client secret (calls must then carry a SecretHash).
    #[arg(long, value_name = "PATH")]
    client_secret_file: Option<PathBuf>,

    /// Answer unknown users with a simulated success, as Cognito's PreventUserExistenceErrors.
    #[arg(long)]
    prevent_user_existence_errors: bool,

    /// The user pool id AdminGetUser, ListUsers, DescribeUserPool and DescribeUserPoolClient
    /// accept.
    #[arg(long, default_value = cognito_emulator::DEFAULT_USER_POOL_ID)]
    user_pool_id: String,

    /// Requests per second before TooManyRequestsException (default: unlimited).
    #[arg(long, value_name = "RPS")]
    quota: Option<u32>,

    /// A quota that changes over time, offsets from the start: `0s=50,20s=20,40s=50` is 50/s,
    /// 20/s from 20 s, 50/s again from 40 s (`off`: unlimited). Before its first step --quota
    /// holds. Per-second accepted and throttled counts are at GET /_emulator/rates.
    #[arg(long, value_name = "SCHEDULE")]
    quota_schedule: Option<QuotaSchedule>,

    /// Requests per second of the UserCreation category (AdminCreateUser) before
    /// TooManyRequestsException, a budget apart from --quota's (default: unlimited).
    #[arg(long, value_name = "RPS")]
    user_creation_quota: Option<u32>,

    /// A UserCreation quota that changes over time, as --quota-schedule.
    #[arg(long, value_name = "SCHEDULE")]
    user_creation_quota_schedule: Option<QuotaSchedule>,

    /// Latency added to every request, e.g. 20ms.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    latency: Duration,

    /// Probability of answering InternalErrorException (HTTP 500), 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    error_rate: f64,

    /// Probability of closing the connection without answering, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    drop_rate: f64,

    /// Probability that a request is slow: held for --slow-latency before it is processed. A
    /// client that hangs up during the hold cancels it (no code is sent). 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    slow_rate: f64,

    /// Probability of answering InternalErrorException (HTTP 500) after the operation ran: the
    /// code is sent and recorded, the client is told it failed. 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    error_after_rate: f64,

    /// Probability of closing the connection unanswered after the operation ran (the code is
    /// sent and recorded, the answer lost). 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    drop_after_rate: f64,

    /// How long a slow request is held, e.g. 3s.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    slow_latency: Duration,

    /// Codes one user can receive before "Attempt limit exceeded" (default: unlimited).
    #[arg(long, value_name = "N")]
    attempt_limit: Option<u32>,

    /// Email codes the account can send before "Exceeded daily email limit" (SMS codes don't
    /// count). Default: unlimited, or 50 with --email-sending-account COGNITO_DEFAULT.
    #[arg(long, value_name = "N")]
    email_quota: Option<u64>,

    /// The user pool name DescribeUserPool reports.
    #[arg(long, default_value = "emulator")]
    user_pool_name: String,

    /// UsernameConfiguration.CaseSensitive: `false` matches usernames (and the email and
    /// preferred_username aliases) whatever their case. Unset by default (case-sensitive, and
    /// DescribeUserPool omits UsernameConfiguration).
    #[arg(long, value_name = "BOOL")]
    case_sensitive: Option<bool>,

    /// AliasAttributes, comma-separated: email, phone_number, preferred_username (email and
    /// phone_number only resolve once verified). Exclusive with --username-attributes.
    #[arg(long, value_name = "LIST", value_parser = list::<AliasAttribute>)]
    alias_attributes: Option<List<AliasAttribute>>,

    /// UsernameAttributes, comma-separated: email, phone_number. The demo users' usernames are
    /// kept (a real pool's would be UUIDs).
    #[arg(long, value_name = "LIST", value_parser = list::<UsernameAttribute>)]
    username_attributes: Option<List<UsernameAttribute>>,

    /// AutoVerifiedAttributes, comma-separated (`none` for none): codes go by SMS when
    /// phone_number is verified and the user has a phone, else by email.
    #[arg(long, value_name = "LIST", value_parser = list::<VerifiedAttribute>, default_value = "email,phone_number")]
    auto_verified_attributes: List<VerifiedAttribute>,

    /// EmailConfiguration.EmailSendingAccount: DEVELOPER or COGNITO_DEFAULT (50 emails a day).
    #[arg(long, value_name = "ACCOUNT", default_value = "DEVELOPER")]
    email_sending_account: EmailSendingAccount,

    /// EmailConfiguration.SourceArn (default: an SES identity for DEVELOPER, none otherwise).
    #[arg(long, value_name = "ARN")]
    email_source_arn: Option<String>,

    /// The ARN of a CustomMessage Lambda trigger, reported in LambdaConfig (never called).
    #[arg(long, value_name = "ARN")]
    custom_message_lambda: Option<String>,
}

/// A comma-separated list of Cognito wire names, as one flag value.
#[derive(Debug, Clone)]
struct List<T>(Vec<T>);

fn list<T: std::str::FromStr<Err = String>>(s: &str) -> Result<List<T>, String> {
    parse_list(s).map(List)
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not between 0.0 and 1.0"))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        // A usage error, like clap's own (exit 2): nothing was started.
        eprintln!(
            "cognito-emulator: refusing to listen on {}: the emulator is for local use, give a \
             loopback address such as 127.0.0.1:0",
            args.listen
        );
        return ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cognito-emulator: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cognito-emulator: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let seeded = seed_pool(
        args.seed,
        args.seed_invited,
        &args.users,
        args.case_sensitive,
    )?;
    if let Some(path) = &args.csv_out {
        seeded
            .write_csv(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut client = ClientSpec::new(args.client_id.clone())
        .with_prevent_user_existence_errors(args.prevent_user_existence_errors);
    if let Some(path) = &args.client_secret_file {
        // The secret's value is never printed, only where it came from.
        let secret = std::fs::read_to_string(path)
            .with_context(|| format!("reading the client secret file {}", path.display()))?;
        let secret = secret.trim_end_matches(['\r', '\n']);
        if secret.is_empty() {
            bail!("the client secret file {} is empty", path.display());
        }
        client = client.with_secret(secret);
    }
    let mut builder = Emulator::builder();
    if let Some(n) = args.email_quota {
        builder = builder.email_quota(Some(n));
    }
    let emulator = builder
        .user_pool_id(args.user_pool_id)
        .user_pool_name(args.user_pool_name)
        .case_sensitive(args.case_sensitive)
        .alias_attributes(args.alias_attributes.map(|l| l.0).unwrap_or_default())
        .username_attributes(args.username_attributes.map(|l| l.0).unwrap_or_default())
        .auto_verified_attributes(args.auto_verified_attributes.0)
        .email_sending_account(args.email_sending_account)
        .email_source_arn(args.email_source_arn)
        .custom_message_trigger(args.custom_message_lambda)
        .client(client)
        .users(seeded.users)
        .quota_rps(args.quota)
        .quota_schedule(args.quota_schedule)
        .user_creation_quota_rps(args.user_creation_quota)
        .user_creation_quota_schedule(args.user_creation_quota_schedule)
        .attempt_limit(args.attempt_limit)
        .faults(Faults {
            latency: args.latency,
            error_rate: args.error_rate,
            drop_rate: args.drop_rate,
            slow_rate: args.slow_rate,
            slow_latency: args.slow_latency,
            error_after_rate: args.error_after_rate,
            drop_after_rate: args.drop_after_rate,
        })
        // Full records are only reachable in-process; out of process, counts are enough and
        // memory stays flat however long a benchmark runs.
        .keep_send_records(false)
        .start(args.listen)
        .await
        .with_context(|| format!("starting the emulator on {}", args.listen))?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", emulator.endpoint())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")?;
    drop(stdout);

    wait_for_signal().await?;
    let stats = serde_json::to_string_pretty(&emulator.stats()).context("serializing stats")?;
    eprintln!("{stats}");
    emulator.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
