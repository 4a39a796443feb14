//! The command line, parsed raw (ripgrep's `LowArgs`): nothing here is validated beyond its type.
//!
//! The settings' flags are declared by [`crate::config`]'s sections, in flag groups, each field
//! a flag, its `COGNITO_RESEND_<SECTION>_<KEY>` environment variable and its TOML key at once;
//! this module adds the commands, and says which groups each one takes: only those it reads, so
//! a flag a command would ignore is a usage error (`report --concurrency 5`), and its `--help`
//! lists what it reads. `--config`, `-v`, `-q` and the `[log]` flags are global. The settings
//! file and the environment may still hold every key: what a command does not read, it ignores.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::config::SettingsArgs;
use crate::config::{
    AwsArgs, ClientArgs, CognitoArgs, ConsumeArgs, DayCapsArgs, DiscoverArgs, FleetArgs,
    GlobalArgs, GraceArgs, Group, LambdaArgs, LedgerArgs, LimitsArgs, LogArgs, MetricsArgs,
    QueueArgs, ReportArgs, RequestArgs, RetryArgs, RunArgs,
};

/// A command's flag groups: `flags!(Name { field: Group, ... })` is a clap struct flattening
/// each group, and puts them in the raw settings.
macro_rules! flags {
    ($($(#[$meta:meta])* $name:ident { $($field:ident: $group:ty),* $(,)? })*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct $name {
            $(
                #[doc = concat!("The `", stringify!($group), "` flags.")]
                #[command(flatten)]
                pub $field: $group,
            )*
        }

        impl $name {
            /// Puts these flags in their place of the raw settings.
            fn put(&self, into: &mut SettingsArgs) {
                $(Group::put(self.$field.clone(), into);)*
            }
        }
    )*};
}

flags! {
    /// `backfill`: a run, from a CSV or the pool.
    BackfillFlags {
        clients: ClientArgs,
        cognito: CognitoArgs,
        request: RequestArgs,
        aws: AwsArgs,
        run: RunArgs,
        fleet: FleetArgs,
        retry: RetryArgs,
        report: ReportArgs,
        ledger: LedgerArgs,
        discover: DiscoverArgs,
        metrics: MetricsArgs,
        grace: GraceArgs,
        limits: LimitsArgs,
        day_caps: DayCapsArgs,
    }
    /// `plan`: what `backfill` reads to decide, and nothing that only sending needs (what
    /// requests carry, the report, metrics, the shutdown grace).
    PlanFlags {
        clients: ClientArgs,
        cognito: CognitoArgs,
        aws: AwsArgs,
        run: RunArgs,
        fleet: FleetArgs,
        retry: RetryArgs,
        ledger: LedgerArgs,
        discover: DiscoverArgs,
        limits: LimitsArgs,
        day_caps: DayCapsArgs,
    }
    /// `discover`: the pool, the window, and the queue for `--to-queue`.
    DiscoverFlags {
        clients: ClientArgs,
        cognito: CognitoArgs,
        aws: AwsArgs,
        retry: RetryArgs,
        discover: DiscoverArgs,
        queue: QueueArgs,
        metrics: MetricsArgs,
    }
    /// `consume`: a run, from the queue.
    ConsumeFlags {
        clients: ClientArgs,
        cognito: CognitoArgs,
        request: RequestArgs,
        aws: AwsArgs,
        run: RunArgs,
        fleet: FleetArgs,
        retry: RetryArgs,
        report: ReportArgs,
        ledger: LedgerArgs,
        metrics: MetricsArgs,
        queue: QueueArgs,
        consume: ConsumeArgs,
        grace: GraceArgs,
        limits: LimitsArgs,
        day_caps: DayCapsArgs,
    }
    /// `enqueue`: the queue.
    EnqueueFlags {
        aws: AwsArgs,
        queue: QueueArgs,
        metrics: MetricsArgs,
    }
    /// `check`: every setting of a run (and of the Lambda function), to validate them all.
    CheckFlags {
        clients: ClientArgs,
        cognito: CognitoArgs,
        request: RequestArgs,
        aws: AwsArgs,
        run: RunArgs,
        fleet: FleetArgs,
        retry: RetryArgs,
        report: ReportArgs,
        ledger: LedgerArgs,
        discover: DiscoverArgs,
        metrics: MetricsArgs,
        queue: QueueArgs,
        consume: ConsumeArgs,
        grace: GraceArgs,
        limits: LimitsArgs,
        day_caps: DayCapsArgs,
        lambda: LambdaArgs,
    }
    /// `ledger export|init|prune`: the ledger.
    LedgerFlags {
        ledger: LedgerArgs,
        aws: AwsArgs,
    }
    /// `ledger stats`: the ledger, and what its numbers are shown against (the fleet budget,
    /// the day caps).
    StatsFlags {
        ledger: LedgerArgs,
        aws: AwsArgs,
        fleet: FleetArgs,
        day_caps: DayCapsArgs,
    }
    /// `ledger forget`: the ledger, and the app clients users are keyed under.
    ForgetFlags {
        ledger: LedgerArgs,
        aws: AwsArgs,
        clients: ClientArgs,
    }
}

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

    /// `--config`, `-v`, `-q`: every command's.
    #[command(flatten)]
    pub global: GlobalArgs,

    /// The `[log]` flags: every command logs.
    #[command(flatten)]
    pub log: LogArgs,
}

impl Cli {
    /// The settings as the command line gives them: the global flags and the command's own
    /// groups; every other key is left to the file, the environment (for the groups the
    /// command takes) and the defaults.
    pub fn settings(&self) -> SettingsArgs {
        let mut settings = SettingsArgs {
            global: self.global.clone(),
            ..SettingsArgs::default()
        };
        self.log.clone().put(&mut settings);
        match &self.command {
            Command::Backfill { flags, .. } => flags.put(&mut settings),
            Command::Plan { flags, .. } => flags.put(&mut settings),
            Command::Discover { flags, .. } => flags.put(&mut settings),
            Command::Consume { flags } => flags.put(&mut settings),
            Command::Enqueue { flags, .. } => flags.put(&mut settings),
            Command::Check { flags, .. } => flags.put(&mut settings),
            Command::Ledger { action } => match action {
                LedgerAction::Stats { flags, .. } => flags.put(&mut settings),
                LedgerAction::Forget { flags, .. } => flags.put(&mut settings),
                LedgerAction::Export { flags }
                | LedgerAction::Init { flags }
                | LedgerAction::Prune { flags, .. } => flags.put(&mut settings),
            },
            Command::Report { .. } => {}
        }
        settings
    }
}

/// The commands of the contract (docs/contract.md), and `ledger`.
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
        /// The settings it reads.
        #[command(flatten)]
        flags: BackfillFlags,
    },
    /// Dry run with a forecast: what `backfill` would do with the same input and settings, and
    /// how long it would take. Sends nothing: only reads (the ledger, and with --user-pool-id
    /// DescribeUserPool, DescribeUserPoolClient, AdminGetUser or ListUsers); never
    /// ResendConfirmationCode.
    ///
    /// Prints jobs by expected outcome (would send, already_confirmed, not_found, cooldown,
    /// capped, aliases and case variants merged, invalid), codes by medium, the spend cap that
    /// stops the run (after how many codes, and when), the wall time at --rate (with --rate 0,
    /// at Cognito's default quota), and with --sms-price the SMS cost. No usernames. Exit 0, or
    /// 2 on a bad setting.
    Plan {
        /// The CSV file to read, or `-` for standard input.
        #[arg(required_unless_present = "from_pool", conflicts_with = "from_pool")]
        input: Option<PathBuf>,
        /// Plan a run over the pool's UNCONFIRMED users (--user-pool-id) instead of a CSV.
        #[arg(long)]
        from_pool: bool,
        /// Print the forecast as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// USD per SMS message: the forecast adds the SMS codes' cost.
        #[arg(long, value_name = "USD", allow_negative_numbers = true)]
        sms_price: Option<f64>,
        /// The settings it reads.
        #[command(flatten)]
        flags: PlanFlags,
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
        /// The settings it reads.
        #[command(flatten)]
        flags: DiscoverFlags,
    },
    /// Long-running: jobs from --queue-url until SIGTERM/SIGINT, then drain and exit 0.
    ///
    /// Each message body is a JSON object with the CSV's fields: {"username": "...",
    /// "client_id": "...", "client_metadata": {"k": "v"}, ...}; only username is required.
    Consume {
        /// The settings it reads.
        #[command(flatten)]
        flags: ConsumeFlags,
    },
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
        /// The settings it reads.
        #[command(flatten)]
        flags: EnqueueFlags,
    },
    /// Check what a run will hit and validate the configuration: prints the target, one `ok` or
    /// `FAIL` line per check, and the effective settings with secrets redacted; exit 0, or 2 when
    /// a check fails.
    ///
    /// The checks: the settings themselves; the ledger's place; the region (as a run resolves it:
    /// --region, AWS_REGION, the profile, the instance metadata service); AWS credentials, when
    /// the settings make signed calls (--user-pool-id, --queue-url, a dynamodb:// ledger; the
    /// resend itself is unsigned); that each endpoint answers (a TCP connection, and a TLS
    /// handshake for https: no request is sent, so nothing can be sent to a user); and with
    /// --user-pool-id, the pool and app clients (DescribeUserPool, DescribeUserPoolClient). Takes
    /// every setting of every command (and of the Lambda function).
    Check {
        /// Check the settings alone, without the network: no credentials, endpoint or pool check
        /// (for a configuration file meant for another place, as in CI). The region is still
        /// required.
        #[arg(long)]
        offline: bool,
        /// Every setting.
        #[command(flatten)]
        flags: CheckFlags,
    },
    /// Inspect the send ledger (--state): what was sent to whom, and when.
    Ledger {
        /// What to show.
        #[command(subcommand)]
        action: LedgerAction,
    },
    /// Sum up one or more JSON Lines reports (--report) of any command: jobs per outcome and
    /// reason, codes per medium, waves, users in doubt, failures, wall time and rate, calls and
    /// latency.
    ///
    /// The summary names nobody; --list in-doubt prints the users in doubt (personal data) as
    /// CSV instead. --html writes one self-contained page (no script, nothing from the network)
    /// with the same tables and three pictures.
    Report {
        /// The report files (JSON Lines, as --report writes them).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print the summary as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also write the summary as a self-contained HTML page to this file.
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
        /// Print the jobs of this kind with their usernames, as CSV (with --json: inside the
        /// JSON). `in-doubt`: jobs whose user may hold a code the ledger cannot confirm.
        #[arg(long, value_name = "WHAT")]
        list: Option<ReportList>,
    },
}

/// What `report --list` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportList {
    /// The jobs in doubt.
    InDoubt,
}

/// The Lambda function's command line (`cognito-resend-lambda`, feature `lambda`): Lambda starts
/// it without arguments, so every setting comes from the environment
/// (`COGNITO_RESEND_<SECTION>_<KEY>`), read exactly as the commands read it.
#[derive(Debug, Parser)]
#[command(name = "cognito-resend-lambda", version, max_term_width = 100)]
pub struct LambdaCli {
    /// Every setting, as the commands take them.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// `ledger` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum LedgerAction {
    /// Totals: users, codes sent, users in cooldown, claims held and in doubt, recent runs.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The settings it reads.
        #[command(flatten)]
        flags: StatsFlags,
    },
    /// Every user row as JSON Lines on stdout (client_id, username, sends, last_sent_at,
    /// last_outcome, last_outcome_at, claimed_by). Contains usernames: personal data.
    Export {
        /// The settings it reads.
        #[command(flatten)]
        flags: LedgerFlags,
    },
    /// Create the ledger: the SQLite file, or the DynamoDB table (on-demand billing, partition
    /// key `pk`, TTL on `expires_at`) for --state dynamodb://TABLE.
    Init {
        /// The settings it reads.
        #[command(flatten)]
        flags: LedgerFlags,
    },
    /// Erase users (an erasure request): their sends, cooldown, claim, in-doubt mark and
    /// per-wave counts, under --client-id and every --allow-client-id, as written and folded to
    /// lower case (unless --case-sensitive-usernames). A user forgotten is a user the ledger
    /// no longer protects from a second code.
    Forget {
        /// The usernames to erase.
        #[arg(value_name = "USERNAME")]
        usernames: Vec<String>,
        /// Also every username of this file: a CSV with a `username` column, as backfill reads
        /// (`-` for standard input).
        #[arg(long = "from", value_name = "FILE")]
        from: Option<PathBuf>,
        /// The settings it reads.
        #[command(flatten)]
        flags: ForgetFlags,
    },
    /// Delete the rows of users with nothing written for a while (a retention policy): no send,
    /// outcome, claim or in-doubt mark since. Claimed rows are kept.
    Prune {
        /// How long a row must have been idle [default: --retention].
        #[arg(
            long,
            visible_alias = "inactive-for",
            value_name = "DURATION",
            allow_negative_numbers = true
        )]
        older_than: Option<String>,
        /// Prune even when that is shorter than --cooldown (rows of users in cooldown would
        /// go, and they could get a second code).
        #[arg(long)]
        force: bool,
        /// The settings it reads.
        #[command(flatten)]
        flags: LedgerFlags,
    },
}

/// The documentation and the settings describe the same things: every flag of every command's
/// `--help` is in the the Settings table of docs/contract.md and the reverse, and every key of
/// `config/example.toml` is a key the configuration reads and the reverse.
#[cfg(test)]
mod docs_agree {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    /// Every config key, `section.key`, as the configuration reads it.
    fn known_keys() -> BTreeSet<String> {
        crate::config::config_keys().into_iter().collect()
    }

    /// Every long flag of every command and subcommand (`--help` and `--version` aside).
    fn flags(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                if long != "help" && long != "version" {
                    out.insert(format!("--{long}"));
                }
            }
            // A renamed flag's old name, still accepted and shown.
            for alias in arg.get_visible_aliases().into_iter().flatten() {
                out.insert(format!("--{alias}"));
            }
        }
        for sub in cmd.get_subcommands() {
            flags(sub, out);
        }
    }

    fn read(rel: &str) -> String {
        std::fs::read_to_string(format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// The rows of the the Settings table of docs/contract.md: (flags column, keys column).
    fn contract_rows() -> Vec<(String, String)> {
        let contract = read("docs/contract.md");
        let start = contract
            .find("\n## Settings\n")
            .expect("a Settings section");
        let section = &contract[start + 1..];
        let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
        section[..end]
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[1].to_owned(), cells[2].to_owned())
            })
            .collect()
    }

    fn words<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = String> + 'a {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.*".contains(c)))
            .filter(move |w| w.starts_with(prefix))
            .map(|w| w.trim_end_matches('.').to_owned())
    }

    #[test]
    fn every_flag_in_help_is_in_the_contracts_settings_table_and_the_reverse() {
        let mut in_help = BTreeSet::new();
        flags(&super::Cli::command(), &mut in_help);
        let in_contract: BTreeSet<String> = contract_rows()
            .iter()
            .flat_map(|(f, _)| words(f, "--").collect::<Vec<_>>())
            .collect();
        let undocumented: Vec<_> = in_help.difference(&in_contract).collect();
        assert!(
            undocumented.is_empty(),
            "flags missing from the Settings table of docs/contract.md: {undocumented:?}"
        );
        let unknown: Vec<_> = in_contract.difference(&in_help).collect();
        assert!(
            unknown.is_empty(),
            "the Settings table of docs/contract.md names flags no command has: {unknown:?}"
        );
    }

    /// Each flag is declared once, with its key: given every setting flag, the section structs
    /// serialize exactly the config keys, so no flag lacks a key and no key lacks a flag.
    #[test]
    fn every_setting_flag_serializes_to_its_config_key_and_every_key_has_a_flag() {
        let cmd = super::Cli::command();
        let check = cmd.find_subcommand("check").expect("a check command");
        // The global flags before the command, the command's own after it.
        let mut argv = vec!["cognito-resend".to_owned()];
        let global = cmd.get_arguments().map(|a| (a, false));
        let own = check.get_arguments().map(|a| (a, true));
        for (arg, after) in global.chain(own) {
            if after && !argv.iter().any(|a| a == "check") {
                argv.push("check".to_owned());
            }
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version", "config", "verbose", "quiet"].contains(&long) {
                continue;
            }
            argv.push(format!("--{long}"));
            if arg.get_action().takes_values() {
                // A value every setting flag reads, `--client-metadata KEY=VALUE` included.
                argv.push("k=v".to_owned());
            }
        }
        let cli = <super::Cli as clap::Parser>::try_parse_from(&argv).expect("argv parses");
        let given = serde_json::to_value(cli.settings()).expect("the flags serialize");
        let mut from_flags = BTreeSet::new();
        for (section, fields) in given.as_object().into_iter().flatten() {
            for key in fields.as_object().into_iter().flatten().map(|(k, _)| k) {
                from_flags.insert(format!("{section}.{key}"));
            }
        }
        assert_eq!(from_flags, known_keys());
    }

    #[test]
    fn every_config_key_is_in_the_contracts_settings_table_and_the_reverse() {
        let known = known_keys();
        let in_contract: BTreeSet<String> = contract_rows()
            .iter()
            .flat_map(|(_, k)| words(k, "").filter(|w| w.contains('.')).collect::<Vec<_>>())
            .collect();
        for key in &in_contract {
            let covered = match key.strip_suffix(".*") {
                Some(section) => known.iter().any(|k| k.starts_with(&format!("{section}."))),
                None => known.contains(key),
            };
            assert!(
                covered,
                "the Settings table of docs/contract.md names unknown key {key}"
            );
        }
        for key in &known {
            let section = key.split('.').next().unwrap();
            assert!(
                in_contract.contains(key) || in_contract.contains(&format!("{section}.*")),
                "key {key} is missing from the Settings table of docs/contract.md"
            );
        }
    }

    #[test]
    fn every_key_in_the_example_file_is_known_and_the_reverse() {
        let example = read("config/example.toml");
        let mut section = String::new();
        let mut in_file = BTreeSet::new();
        for line in example.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            // A key set (`key = value`) or shown commented out (`# key = value`).
            let body = line.strip_prefix("# ").unwrap_or(line);
            if let Some((key, _)) = body.split_once(" = ") {
                if !section.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    in_file.insert(format!("{section}.{key}"));
                }
            }
        }
        let known = known_keys();
        let unknown: Vec<_> = in_file.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "example.toml has unknown keys: {unknown:?}"
        );
        let missing: Vec<_> = known.difference(&in_file).collect();
        assert!(missing.is_empty(), "example.toml lacks keys: {missing:?}");
    }
}
