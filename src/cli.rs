//! The command line, parsed raw (ripgrep's `LowArgs`): nothing here is validated beyond its type.
//!
//! The settings' flags are declared by [`crate::config`]'s section structs
//! ([`SettingsArgs`]), each field a flag, its `COGNITO_RESEND_<SECTION>_<KEY>` environment
//! variable and its TOML key at once; this module adds the commands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::config::SettingsArgs;

/// Re-send Amazon Cognito sign-up confirmation codes to users who never confirmed, at scale and
/// safely.
///
/// Settings come from built-in defaults, then the TOML file named by --config, then environment
/// variables COGNITO_RESEND_<SECTION>_<KEY>, then flags (highest). Durations are written like
/// 250ms, 30s, 10m, 24h. Exit codes: 0 all jobs done and none failed or invalid; 3 finished with
/// some failed or invalid jobs (see --report); 2 usage or configuration error, nothing sent;
/// 1 fatal error or stopped early because the configuration is wrong; 4 stopped at a spend cap
/// (--max-sends, --max-*-per-day), jobs not attempted left for a later run; 130/143 stopped by
/// SIGINT/SIGTERM after draining in-flight calls.
#[derive(Debug, Parser)]
#[command(name = "cognito-resend", version, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// Every setting, shared by all commands.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// The commands of SPEC.md, and `ledger`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-shot: every row of the CSV (or stdin with `-`) gets an outcome, then the process exits.
    ///
    /// The CSV needs a header row with a `username` column (aliases `Username`,
    /// `cognito:username`); optional columns: client_id, client_metadata.<key>,
    /// analytics_endpoint_id, encoded_data, ip_address. Other columns are ignored.
    ///
    /// With --from-pool instead of a file, the jobs are the pool's UNCONFIRMED users
    /// (ListUsers, within --created-after/--created-before/--older-than), streamed straight into
    /// the run: the one command a scheduled job needs.
    Backfill {
        /// The CSV file to read, or `-` for standard input.
        #[arg(required_unless_present = "from_pool", conflicts_with = "from_pool")]
        input: Option<PathBuf>,
        /// Take the jobs from the user pool (--user-pool-id) instead of a CSV.
        #[arg(long)]
        from_pool: bool,
    },
    /// List the pool's UNCONFIRMED users (ListUsers, paginated) as backfill CSV — username,
    /// created, status, and --attributes — to stdout or --out, or send them to --queue-url.
    ///
    /// Needs --user-pool-id and IAM credentials (cognito-idp:ListUsers). Filter by creation
    /// with --created-after, --created-before and --older-than.
    Discover {
        /// Write the CSV here instead of stdout.
        #[arg(long, value_name = "FILE", conflicts_with = "to_queue")]
        out: Option<PathBuf>,
        /// Extra attribute columns, comma-separated (e.g. email,phone_number).
        #[arg(long, value_name = "NAMES", value_delimiter = ',')]
        attributes: Vec<String>,
        /// Send the users to --queue-url as jobs instead of writing CSV.
        #[arg(long)]
        to_queue: bool,
    },
    /// Long-running: jobs from --queue-url until SIGTERM/SIGINT, then drain and exit 0.
    ///
    /// Each message body is a JSON object with the CSV's fields: {"username": "...",
    /// "client_id": "...", "client_metadata": {"k": "v"}, ...}; only username is required.
    Consume,
    /// Send CSV rows (or stdin with `-`) to --queue-url as jobs, 10 per SendMessageBatch.
    ///
    /// For a FIFO queue (URL ending in .fifo) every message gets a MessageGroupId
    /// (--fifo-group-id, or one group per username) and a MessageDeduplicationId derived from
    /// its body.
    Enqueue {
        /// The CSV file to read, or `-` for standard input.
        input: PathBuf,
        /// MessageGroupId for every message (FIFO queues); default: one group per username, so
        /// different users run in parallel and one user's jobs in order.
        #[arg(long, value_name = "ID")]
        fifo_group_id: Option<String>,
    },
    /// Validate the configuration, print the effective settings with secrets redacted, exit 0 or 2.
    Check,
    /// Inspect the send ledger (--state): what was sent to whom, and when.
    Ledger {
        /// What to show.
        #[command(subcommand)]
        action: LedgerAction,
    },
}

/// `ledger` subcommands.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum LedgerAction {
    /// Totals: users, codes sent, users in cooldown, claims held and in doubt, recent runs.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every user row as JSON Lines on stdout (client_id, username, sends, last_sent_at,
    /// last_outcome, last_outcome_at, claimed_by). Contains usernames: personal data.
    Export,
    /// Create the ledger: the SQLite file, or the DynamoDB table (on-demand billing, partition
    /// key `pk`) for --state dynamodb://TABLE.
    Init,
}
