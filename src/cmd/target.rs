//! What a run will hit, said once at its start: the endpoint (AWS's, with the region, or an
//! override and where it came from), the region as the AWS config chain resolved it, the profile,
//! the pool and app clients, the ledger with its full path (or the DynamoDB table), the queue,
//! the rates and the spend caps. An operator reading a log, a terminal or (later) a report's
//! `run` record sees which environment a run was pointed at before it sends anything.
//!
//! [`Target`] is the one description: its `Display` is the log line (and `check`'s), its
//! `Serialize` form is for machines (a report's `run` record). It holds no secret and no
//! username: the client secret never appears, only the ids and URLs an operator configured (a
//! URL's user and password are redacted).

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::aws::{self, Service};
use crate::config::{LedgerOrigin, Settings};
use crate::ledger::StateSpec;

/// Which of the run's services a command calls: the target describes only those.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Uses {
    /// Cognito (a resend, an invitation, the pool's reads).
    pub(crate) cognito: bool,
    /// The queue (`--queue-url`).
    pub(crate) queue: bool,
    /// The send ledger (`--state`).
    pub(crate) ledger: bool,
}

impl Uses {
    /// A command that sends: Cognito and the ledger, and the queue when one is set.
    pub(crate) fn run(settings: &Settings) -> Self {
        Self {
            cognito: true,
            queue: settings.sqs.queue_url.is_some(),
            ledger: true,
        }
    }
}

/// What a run will hit. Fields a command does not use are `None` (or empty).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    /// Where Cognito calls go (`None`: the command makes none).
    pub(crate) cognito: Option<Endpoint>,
    /// The region: `--region`, else what the AWS config chain found (`AWS_REGION`, the profile,
    /// the instance metadata service). `None`: none was found, or the command needs none.
    pub(crate) region: Option<String>,
    /// `--profile` (`aws.profile`), when given; else the chain's (`AWS_PROFILE`, else
    /// `default`), which the SDK picks itself.
    pub(crate) profile: Option<String>,
    /// `--user-pool-id`.
    pub(crate) user_pool_id: Option<String>,
    /// `--client-id` first, then every `--allow-client-id`.
    pub(crate) client_ids: Vec<String>,
    /// The queue and where its calls go (`None`: the command uses no queue).
    pub(crate) queue: Option<Queue>,
    /// The send ledger (`None`: the command uses none).
    pub(crate) ledger: Option<LedgerTarget>,
    /// `--rate`, calls a second (`None`: no limit).
    pub(crate) rate: Option<f64>,
    /// `--invite-rate`, invitations a second (`None`: no limit).
    pub(crate) invite_rate: Option<f64>,
    /// `--fleet-rate`, the budget shared by the runs on the ledger.
    pub(crate) fleet_rate: Option<f64>,
    /// The spend caps (`None` each: no cap).
    pub(crate) caps: Caps,
    /// `--dry-run`: nothing is sent.
    pub(crate) dry_run: bool,
}

/// An endpoint a run calls, and why that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Endpoint {
    /// The URL (`None`: AWS's, but with no region to name it by).
    pub(crate) url: Option<String>,
    /// Where the URL came from.
    pub(crate) from: EndpointFrom,
}

/// Where an endpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EndpointFrom {
    /// AWS's own regional endpoint.
    Aws,
    /// Our setting, the flag named (`--cognito-endpoint`, ...).
    Setting(&'static str),
    /// The AWS configuration: `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL` or the profile's
    /// `endpoint_url`.
    AwsConfig(&'static str),
}

/// The queue of `consume`, `enqueue` and `discover --to-queue`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Queue {
    /// `--queue-url`.
    pub(crate) url: String,
    /// Where SQS calls go.
    pub(crate) endpoint: Endpoint,
}

/// The send ledger.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum LedgerTarget {
    /// A SQLite file.
    Sqlite {
        /// Its full path (a relative `--state` made absolute against the working directory).
        path: PathBuf,
        /// Whether it is the default (`ledger.db` in the data directory), not `--state`'s.
        default: bool,
    },
    /// A DynamoDB table.
    Dynamodb {
        /// The table.
        table: String,
        /// Where DynamoDB calls go.
        endpoint: Endpoint,
    },
    /// `--state none`: no cooldown, no claims.
    None,
}

/// The spend caps a run keeps.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Caps {
    /// `--max-sends`: this run.
    pub(crate) max_sends: Option<u64>,
    /// `--max-sends-per-day`, across the runs on the ledger.
    pub(crate) max_sends_per_day: Option<u64>,
    /// `--max-sms-per-day`.
    pub(crate) max_sms_per_day: Option<u64>,
    /// `--max-email-per-day`.
    pub(crate) max_email_per_day: Option<u64>,
    /// `--max-sends-per-user`, over the ledger's life.
    pub(crate) max_sends_per_user: Option<u64>,
}

impl Target {
    /// The target of a command using `uses`, from its validated settings (the region resolved,
    /// if the command needs one: see [`Settings::resolve_region`]). Reads the AWS configuration
    /// (environment and profile files) for endpoint overrides; calls nothing.
    pub(crate) async fn of(settings: &Settings, uses: Uses) -> Self {
        let region = settings.cognito.region.clone();
        let cognito = match uses.cognito {
            true => Some(
                endpoint(
                    settings,
                    Service::Cognito,
                    settings.cognito.endpoint.as_ref(),
                )
                .await,
            ),
            false => None,
        };
        let queue = match (&settings.sqs.queue_url, uses.queue) {
            (Some(url), true) => Some(Queue {
                url: url.clone(),
                endpoint: endpoint(settings, Service::Sqs, settings.sqs.endpoint.as_ref()).await,
            }),
            _ => None,
        };
        let ledger = match uses.ledger {
            false => None,
            true => Some(match &settings.ledger.path {
                StateSpec::None => LedgerTarget::None,
                StateSpec::Sqlite(_) => LedgerTarget::Sqlite {
                    path: PathBuf::from(ledger_place(settings)),
                    default: settings.ledger.origin == LedgerOrigin::DataHome,
                },
                StateSpec::Dynamo { table } => LedgerTarget::Dynamodb {
                    table: table.clone(),
                    endpoint: endpoint(
                        settings,
                        Service::DynamoDb,
                        settings.ledger.dynamodb_endpoint.as_ref(),
                    )
                    .await,
                },
            }),
        };
        let sends = uses.cognito && uses.ledger;
        let mut client_ids: Vec<String> = settings.cognito.client_id.iter().cloned().collect();
        for id in &settings.cognito.allowed_client_ids {
            if !client_ids.contains(id) {
                client_ids.push(id.clone());
            }
        }
        Self {
            cognito,
            region: (uses.cognito
                || uses.queue
                || matches!(ledger, Some(LedgerTarget::Dynamodb { .. })))
            .then_some(region)
            .flatten(),
            profile: settings.cognito.profile.clone(),
            user_pool_id: settings.cognito.user_pool_id.clone(),
            client_ids: if uses.cognito { client_ids } else { Vec::new() },
            queue,
            ledger,
            rate: settings.run.rate.filter(|_| sends),
            invite_rate: settings.run.invite_rate.filter(|_| sends),
            fleet_rate: settings.run.fleet_rate.filter(|_| sends),
            caps: if sends {
                Caps {
                    max_sends: settings.limits.max_sends,
                    max_sends_per_day: settings.limits.max_sends_per_day,
                    max_sms_per_day: settings.limits.max_sms_per_day,
                    max_email_per_day: settings.limits.max_email_per_day,
                    max_sends_per_user: settings.ledger.max_sends_per_user,
                }
            } else {
                Caps::default()
            },
            dry_run: settings.run.dry_run && sends,
        }
    }

    /// Logs the target, one line (`target: ...`).
    pub(crate) fn log(&self) {
        tracing::info!("target: {self}");
    }
}

/// The ledger as the summary repeats it: the SQLite file's full path, the DynamoDB table, or
/// `none`.
pub(crate) fn ledger_place(settings: &Settings) -> String {
    match &settings.ledger.path {
        StateSpec::Sqlite(path) => std::path::absolute(path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string(),
        other => other.to_string(),
    }
}

/// Where `service`'s calls go: `setting` (the `--*-endpoint` flag), else what the AWS
/// configuration says, else AWS's regional endpoint for the region.
async fn endpoint(settings: &Settings, service: Service, setting: Option<&url::Url>) -> Endpoint {
    let flag = match service {
        Service::Cognito => "--cognito-endpoint",
        Service::Sqs => "--sqs-endpoint",
        Service::DynamoDb => "--dynamodb-endpoint",
    };
    if let Some(url) = setting {
        return Endpoint {
            url: Some(crate::config::redact_url(url.as_str())),
            from: EndpointFrom::Setting(flag),
        };
    }
    // Without a region, loading the SDK's configuration would probe the chain for one (the
    // instance metadata service among others): say what is known instead.
    let Some(region) = settings.cognito.region.as_deref() else {
        return Endpoint {
            url: None,
            from: EndpointFrom::Aws,
        };
    };
    let sdk = aws::sdk_config(aws::SdkOptions {
        region: Some(region),
        profile: settings.cognito.profile.as_deref(),
        endpoint: None,
        connect_timeout: settings.cognito.connect_timeout,
        attempt_timeout: settings.cognito.attempt_timeout,
        sdk_retries: false,
        signed: false,
    })
    .await;
    if let Some((url, _)) = aws::configured_endpoint(&sdk, service) {
        return Endpoint {
            url: Some(crate::config::redact_url(&url)),
            from: EndpointFrom::AwsConfig(service.env_var()),
        };
    }
    Endpoint {
        url: aws::regional_endpoint(service, region).await,
        from: EndpointFrom::Aws,
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.url.as_deref().unwrap_or("(its regional endpoint)");
        match self.from {
            EndpointFrom::Aws => write!(f, "AWS {url}"),
            EndpointFrom::Setting(flag) => write!(f, "{url} ({flag})"),
            EndpointFrom::AwsConfig(var) => {
                write!(
                    f,
                    "{url} (AWS configuration: {var}, AWS_ENDPOINT_URL or the profile)"
                )
            }
        }
    }
}

impl fmt::Display for LedgerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { path, default } => {
                write!(f, "{}", path.display())?;
                if *default {
                    f.write_str(" (the default, in the data directory)")?;
                }
                Ok(())
            }
            Self::Dynamodb { table, endpoint } => {
                write!(f, "dynamodb://{table} at {endpoint}")
            }
            Self::None => f.write_str("none (no cooldown: a rerun sends again)"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(cognito) = &self.cognito {
            parts.push(format!("Cognito {cognito}"));
        }
        if let Some(q) = &self.queue {
            parts.push(format!("queue {} via {}", q.url, q.endpoint));
        }
        if self.cognito.is_some()
            || self.queue.is_some()
            || matches!(self.ledger, Some(LedgerTarget::Dynamodb { .. }))
        {
            parts.push(format!(
                "region {}",
                self.region.as_deref().unwrap_or("not found")
            ));
            parts.push(format!(
                "profile {}",
                self.profile
                    .as_deref()
                    .unwrap_or("from the AWS config chain")
            ));
        }
        if self.cognito.is_some() {
            parts.push(format!(
                "pool {}",
                self.user_pool_id.as_deref().unwrap_or("not given")
            ));
            parts.push(match self.client_ids.as_slice() {
                [] => "client id not given".to_owned(),
                [one] => format!("client id {one}"),
                many => format!("client ids {}", many.join(", ")),
            });
        }
        if let Some(ledger) = &self.ledger {
            parts.push(format!("ledger {ledger}"));
        }
        if self.cognito.is_some() && self.ledger.is_some() {
            let per_second = |r: Option<f64>| r.map_or("no limit".to_owned(), |r| format!("{r}/s"));
            parts.push(format!("rate {}", per_second(self.rate)));
            parts.push(format!("invite rate {}", per_second(self.invite_rate)));
            if let Some(r) = self.fleet_rate {
                parts.push(format!("fleet rate {r}/s"));
            }
            let caps: Vec<String> = [
                ("max-sends", self.caps.max_sends),
                ("max-sends-per-day", self.caps.max_sends_per_day),
                ("max-sms-per-day", self.caps.max_sms_per_day),
                ("max-email-per-day", self.caps.max_email_per_day),
                ("max-sends-per-user", self.caps.max_sends_per_user),
            ]
            .into_iter()
            .filter_map(|(name, cap)| cap.map(|c| format!("--{name} {c}")))
            .collect();
            parts.push(match caps.is_empty() {
                true => "no spend caps".to_owned(),
                false => format!("caps {}", caps.join(", ")),
            });
            if self.dry_run {
                parts.push("dry run (nothing is sent)".to_owned());
            }
        }
        f.write_str(&parts.join("; "))
    }
}
