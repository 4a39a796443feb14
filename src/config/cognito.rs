//! `[cognito]`: which app clients and users a run is about, how Cognito is called, and what
//! every request carries. Three flag groups, since commands read different parts: `ledger
//! forget` only the app clients ([`ClientArgs`]), `discover` also the pool and the connection
//! ([`CognitoArgs`]), and only the commands that send the request defaults ([`RequestArgs`]).

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Deserializer, Serialize};

use super::value::{given, http_url, non_empty, positive_duration, some, text, unset};
use super::{ConfigError, Env, Group, SettingsArgs, show};
pub(crate) use crate::cognito::ClientSecret;

/// The environment variable that may hold the client secret itself (never a flag).
pub(crate) const CLIENT_SECRET_ENV: &str = "COGNITO_RESEND_CLIENT_SECRET";

/// The `[cognito]` table: its three flag groups, one table in the file.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CognitoSection {
    /// App clients and username case.
    #[command(flatten)]
    #[serde(flatten)]
    pub clients: ClientArgs,
    /// The pool and the connection.
    #[command(flatten)]
    #[serde(flatten)]
    pub call: CognitoArgs,
    /// What every request carries.
    #[command(flatten)]
    #[serde(flatten)]
    pub request: RequestArgs,
}

/// `[cognito]`: the app clients jobs may name, and how usernames compare.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "App clients")]
#[serde(default)]
pub struct ClientArgs {
    /// App client id. A job (CSV column or message field `client_id`) may carry its own.
    #[arg(long, env = "COGNITO_RESEND_COGNITO_CLIENT_ID", value_name = "ID")]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub client_id: Option<String>,

    /// Another app client id jobs may name (repeatable; env: comma-separated). A job naming a
    /// client id that is neither this nor --client-id is `invalid` and never called.
    #[arg(
        long = "allow-client-id",
        env = "COGNITO_RESEND_COGNITO_ALLOWED_CLIENT_IDS",
        value_delimiter = ',',
        value_name = "ID"
    )]
    #[serde(skip_serializing_if = "unset", rename = "allowed_client_ids")]
    pub allow_client_id: Vec<String>,

    /// The user pool tells usernames apart by case (`alice` and `Alice` are two users): ledger
    /// keys are then the username as written. Without it, usernames are folded to lower case
    /// for the key (a case-insensitive pool, the console's default). With --user-pool-id the
    /// pool's own setting decides, and this flag must agree with it.
    /// [env: COGNITO_RESEND_COGNITO_CASE_SENSITIVE_USERNAMES=true]
    #[arg(long)]
    #[serde(skip_serializing_if = "unset")]
    pub case_sensitive_usernames: bool,
}

/// `[cognito]`: the pool, the endpoint and the secret a call needs.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Cognito")]
#[serde(default)]
pub struct CognitoArgs {
    /// File holding the app client secret (or set env COGNITO_RESEND_CLIENT_SECRET). When set,
    /// each request carries SecretHash = Base64(HMAC-SHA256(secret, username + client_id)). The
    /// secret itself is never accepted as a flag value and never logged.
    #[arg(
        long,
        env = "COGNITO_RESEND_COGNITO_CLIENT_SECRET_FILE",
        value_name = "FILE"
    )]
    #[serde(skip_serializing_if = "unset")]
    pub client_secret_file: Option<PathBuf>,

    /// Cognito endpoint URL, for emulators and VPC endpoints (default: AWS's; the SDK also reads
    /// AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER, AWS_ENDPOINT_URL and the profile's
    /// endpoint_url, which this beats). --endpoint-url, as the AWS CLI spells it, is the same flag.
    #[arg(
        long,
        visible_alias = "endpoint-url",
        env = "COGNITO_RESEND_COGNITO_ENDPOINT",
        value_name = "URL"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "endpoint"
    )]
    pub cognito_endpoint: Option<String>,

    /// User pool id: read once at the start of every command (its profile: case sensitivity,
    /// aliases, media, clients), and for discover, backfill --from-pool, --precheck and the
    /// resolution of aliases. Needs IAM credentials.
    #[arg(long, env = "COGNITO_RESEND_COGNITO_USER_POOL_ID", value_name = "ID")]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub user_pool_id: Option<String>,

    /// Per-attempt timeout of a Cognito call [default: 10s].
    #[arg(
        long,
        env = "COGNITO_RESEND_COGNITO_ATTEMPT_TIMEOUT",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub attempt_timeout: Option<String>,

    /// Connect timeout of a Cognito call [default: 3s].
    #[arg(
        long,
        env = "COGNITO_RESEND_COGNITO_CONNECT_TIMEOUT",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub connect_timeout: Option<String>,
}

/// `[cognito]`: what every request carries under a job's own fields.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Request")]
#[serde(default)]
pub struct RequestArgs {
    /// A ClientMetadata key every request carries, for the pool's Lambda triggers (repeatable;
    /// env: comma-separated). A job's own key (CSV column client_metadata.KEY, message field
    /// client_metadata) wins. Flags add to or replace the keys of the file's
    /// [cognito.client_metadata] table.
    #[arg(
        long,
        env = "COGNITO_RESEND_COGNITO_CLIENT_METADATA",
        value_delimiter = ',',
        value_name = "KEY=VALUE",
        value_parser = key_value
    )]
    #[serde(
        skip_serializing_if = "no_pairs",
        serialize_with = "pairs_as_table",
        deserialize_with = "table_as_pairs"
    )]
    pub client_metadata: Vec<(String, String)>,

    /// AnalyticsMetadata.AnalyticsEndpointId for every request whose job carries none.
    #[arg(
        long,
        env = "COGNITO_RESEND_COGNITO_ANALYTICS_ENDPOINT_ID",
        value_name = "ID"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub analytics_endpoint_id: Option<String>,

    /// What jobs that do not say send: `confirm` (a new confirmation code, ResendConfirmationCode,
    /// for UNCONFIRMED sign-ups) or `invite` (the invitation again, AdminCreateUser with
    /// MessageAction RESEND, for FORCE_CHANGE_PASSWORD users an administrator created; needs
    /// --user-pool-id and cognito-idp:AdminCreateUser). A row's `action` or `status` column, a
    /// message's field, and with --from-pool or --precheck each user's status, decide for
    /// their own job. Without it, jobs that do not say get a confirmation code.
    #[arg(long, env = "COGNITO_RESEND_COGNITO_ACTION", value_name = "ACTION")]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub action: Option<String>,
}

impl CognitoSection {
    /// The built-in defaults: every key, `None` where there is none.
    pub(super) fn defaults() -> Self {
        Self {
            clients: ClientArgs {
                client_id: None,
                allow_client_id: Vec::new(),
                case_sensitive_usernames: false,
            },
            call: CognitoArgs {
                client_secret_file: None,
                cognito_endpoint: None,
                user_pool_id: None,
                attempt_timeout: some("10s"),
                connect_timeout: some("3s"),
            },
            request: RequestArgs {
                client_metadata: Vec::new(),
                analytics_endpoint_id: None,
                action: None,
            },
        }
    }

    /// Its boolean setting as the environment gives it (clap rejects an empty value for a flag).
    pub(super) fn read_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        self.clients.case_sensitive_usernames |=
            env.flag(key!(ClientArgs, case_sensitive_usernames))?;
        Ok(())
    }
}

impl Group for ClientArgs {
    const SECTION: &'static str = "cognito";
    fn put(self, into: &mut SettingsArgs) {
        into.cognito.clients = self;
    }
}

impl Group for CognitoArgs {
    const SECTION: &'static str = "cognito";
    fn put(self, into: &mut SettingsArgs) {
        into.cognito.call = self;
    }
}

impl Group for RequestArgs {
    const SECTION: &'static str = "cognito";
    fn put(self, into: &mut SettingsArgs) {
        into.cognito.request = self;
    }
}

/// Where the client secret came from, for `check` (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretSource {
    /// The file named by `--client-secret-file` / `cognito.client_secret_file`.
    File(PathBuf),
    /// The `COGNITO_RESEND_CLIENT_SECRET` environment variable.
    Env,
    /// AWS Secrets Manager (`lambda.client_secret_id`), read by the Lambda function.
    #[cfg_attr(not(feature = "lambda"), allow(dead_code))]
    SecretsManager(String),
}

/// Everything about talking to Cognito.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CognitoSettings {
    /// Default app client id; a job may carry its own.
    pub client_id: Option<String>,
    /// Other app client ids a job may name (`client_id` is always allowed); a job naming any
    /// other is `invalid`, so a queue writer cannot point the run at a client of its choosing.
    pub allowed_client_ids: Vec<String>,
    /// The app client secret and where it came from; shown as the file it was read from.
    #[serde(
        rename = "client_secret_file",
        serialize_with = "show::secret_file",
        skip_serializing_if = "show::no_secret_file"
    )]
    pub secret: Option<(ClientSecret, SecretSource)>,
    /// Endpoint override (emulator, VPC endpoint).
    #[serde(serialize_with = "show::url")]
    pub endpoint: Option<url::Url>,
    /// The pool: its profile is read at the start of every command; discovery (`discover`,
    /// `backfill --from-pool`), `--precheck` and alias resolution read its users.
    pub user_pool_id: Option<String>,
    /// `--case-sensitive-usernames`: the pool tells `alice` from `Alice` (ledger keys as
    /// written). The pool profile, when read, decides instead, and must agree.
    pub case_sensitive_usernames: bool,
    /// Region (`aws.region`, shown there by `check`); `None` leaves it to the AWS config chain.
    #[serde(skip)]
    pub region: Option<String>,
    /// The AWS profile (`aws.profile`, `--profile`, shown there by `check`); `None` leaves it to
    /// the AWS config chain (`AWS_PROFILE`, else `default`).
    #[serde(skip)]
    pub profile: Option<String>,
    /// Bounds one HTTP attempt, so a hung call cannot hold a permit forever.
    #[serde(serialize_with = "show::duration")]
    pub attempt_timeout: Duration,
    /// Bounds connection setup.
    #[serde(serialize_with = "show::duration")]
    pub connect_timeout: Duration,
    /// AnalyticsMetadata.AnalyticsEndpointId for jobs that carry none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analytics_endpoint_id: Option<String>,
    /// `--action`: what jobs that do not say send (`None`: a confirmation code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<crate::job::Action>,
    /// ClientMetadata every request carries under the job's own keys (last: a TOML table).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub client_metadata: BTreeMap<String, String>,
}

impl CognitoSettings {
    /// Validates the `[cognito]` table; `aws` is the `[aws]` table (region and profile), kept
    /// here since every client reads it with the rest.
    pub(super) fn validate(
        raw: CognitoSection,
        aws: &super::AwsArgs,
        env: &Env,
    ) -> Result<Self, ConfigError> {
        let CognitoSection {
            clients,
            call,
            request,
        } = raw;
        let secret = match (&call.client_secret_file, env.secret()) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::at(
                    key!(CognitoArgs, client_secret_file),
                    format!(
                        "both it and {CLIENT_SECRET_ENV} are set: give the client secret one way \
                         only"
                    ),
                ));
            }
            (Some(path), None) => Some((read_secret_file(path)?, SecretSource::File(path.clone()))),
            (None, Some(value)) => Some((ClientSecret::new(value.trim()), SecretSource::Env)),
            (None, None) => None,
        };
        Ok(Self {
            endpoint: http_url(call.cognito_endpoint)
                .map_err(at!(CognitoArgs, cognito_endpoint))?,
            client_id: client_id(non_empty(clients.client_id))?,
            allowed_client_ids: allowed_client_ids(clients.allow_client_id)?,
            secret,
            user_pool_id: non_empty(call.user_pool_id),
            case_sensitive_usernames: clients.case_sensitive_usernames,
            region: aws.region(),
            profile: aws.profile(),
            attempt_timeout: positive_duration(given(&call.attempt_timeout))
                .map_err(at!(CognitoArgs, attempt_timeout))?,
            connect_timeout: positive_duration(given(&call.connect_timeout))
                .map_err(at!(CognitoArgs, connect_timeout))?,
            analytics_endpoint_id: analytics_endpoint_id(request.analytics_endpoint_id)?,
            action: action(request.action)?,
            client_metadata: client_metadata(request.client_metadata)?,
        })
    }

    /// Where and how the Cognito clients connect, as the client takes it.
    pub(crate) fn connection(&self) -> crate::cognito::Connection {
        crate::cognito::Connection {
            region: self.region.clone(),
            profile: self.profile.clone(),
            endpoint: self.endpoint.clone(),
            attempt_timeout: self.attempt_timeout,
            connect_timeout: self.connect_timeout,
        }
    }

    /// The client secret, if one was given.
    pub(crate) fn client_secret(&self) -> Option<ClientSecret> {
        self.secret.as_ref().map(|(s, _)| s.clone())
    }

    /// What the engine merges under every job's own request fields.
    pub(crate) fn request_defaults(&self) -> crate::job::RequestDefaults {
        crate::job::RequestDefaults {
            client_metadata: self.client_metadata.clone(),
            analytics_endpoint_id: self.analytics_endpoint_id.clone(),
            action: self.action,
            invites: self.action == Some(crate::job::Action::Invite),
        }
    }
}

fn read_secret_file(path: &Path) -> Result<ClientSecret, ConfigError> {
    let at = |reason: String| ConfigError::at(key!(CognitoArgs, client_secret_file), reason);
    // The value given is not shown: it may be the secret itself, given where its file's name
    // belongs.
    let text = std::fs::read_to_string(path).map_err(|e| {
        at(format!(
            "cannot read the file it names: {e} (the name is not shown, in case it is the \
             secret itself: a secret belongs in a file, or in {CLIENT_SECRET_ENV})"
        ))
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(at(format!("{} is empty", path.display())));
    }
    Ok(ClientSecret::new(value))
}

/// `cognito.client_id`: Cognito's own constraint (1-128 of `[\w+]`), so a typo is a usage error
/// (exit 2) rather than an early stop after the first calls.
fn client_id(id: Option<String>) -> Result<Option<String>, ConfigError> {
    if let Some(id) = &id {
        crate::job::check_client_id(id).map_err(at!(ClientArgs, client_id))?;
    }
    Ok(id)
}

/// `cognito.allowed_client_ids`: trimmed, no empty entry, no duplicates.
fn allowed_client_ids(raw: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let mut ids: Vec<String> = Vec::with_capacity(raw.len());
    for id in raw {
        let id = id.trim();
        if id.is_empty() {
            return Err(ConfigError::at(
                key!(ClientArgs, allow_client_id),
                "an empty client id",
            ));
        }
        crate::job::check_client_id(id).map_err(at!(ClientArgs, allow_client_id))?;
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

/// `cognito.client_metadata`: every key and value within Cognito's limit (its model's
/// `StringType`, at most [`crate::job::MAX_METADATA_CHARS`] characters), and no empty key (a
/// `--client-metadata =v` is a typo, not a key the trigger could read).
fn client_metadata(pairs: Vec<(String, String)>) -> Result<BTreeMap<String, String>, ConfigError> {
    use crate::job::MAX_METADATA_CHARS;
    let at = |reason: String| ConfigError::at(key!(RequestArgs, client_metadata), reason);
    let mut table = BTreeMap::new();
    for (k, v) in pairs {
        let name = k.trim();
        if name.is_empty() {
            return Err(at(format!("an empty key (`={v}`)")));
        }
        let shown: String = name.chars().take(40).collect();
        let chars = name.chars().count();
        if chars > MAX_METADATA_CHARS {
            return Err(at(format!(
                "the key `{shown}...` is {chars} characters long; Cognito allows at most \
                 {MAX_METADATA_CHARS}"
            )));
        }
        let chars = v.chars().count();
        if chars > MAX_METADATA_CHARS {
            return Err(at(format!(
                "the value of `{shown}` is {chars} characters long; Cognito allows at most \
                 {MAX_METADATA_CHARS}"
            )));
        }
        table.insert(name.to_owned(), v);
    }
    Ok(table)
}

/// `cognito.analytics_endpoint_id`: within Cognito's limit, like a ClientMetadata value.
fn action(text: Option<String>) -> Result<Option<crate::job::Action>, ConfigError> {
    use crate::job::Action;
    match non_empty(text) {
        None => Ok(None),
        Some(t) => match t.trim().to_ascii_lowercase().as_str() {
            "confirm" => Ok(Some(Action::Confirm)),
            "invite" => Ok(Some(Action::Invite)),
            _ => Err(ConfigError::at(
                key!(RequestArgs, action),
                format!("{t:?}: expected confirm or invite"),
            )),
        },
    }
}

fn analytics_endpoint_id(id: Option<String>) -> Result<Option<String>, ConfigError> {
    let id = non_empty(id);
    if let Some(chars) = id.as_ref().map(|i| i.chars().count())
        && chars > crate::job::MAX_METADATA_CHARS
    {
        return Err(ConfigError::at(
            key!(RequestArgs, analytics_endpoint_id),
            format!(
                "{chars} characters long; Cognito allows at most {}",
                crate::job::MAX_METADATA_CHARS
            ),
        ));
    }
    Ok(id)
}

/// `--client-metadata KEY=VALUE` that is not `KEY=VALUE`.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not KEY=VALUE (a value holding a comma goes in the settings file's \
     [cognito.client_metadata] table)"
)]
pub(crate) struct NotKeyValue(String);

/// `--client-metadata KEY=VALUE`: split at the first `=` (a value may hold more). An empty
/// text (an empty environment variable) is no pair at all: it counts as unset.
fn key_value(text: &str) -> Result<(String, String), NotKeyValue> {
    if text.is_empty() {
        return Ok((String::new(), String::new()));
    }
    match text.split_once('=') {
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err(NotKeyValue(text.to_owned())),
    }
}

/// Flags' `KEY=VALUE` pairs as the TOML table they stand for, so figment merges them into the
/// file's `[cognito.client_metadata]` key by key.
fn pairs_as_table<S: serde::Serializer>(
    pairs: &[(String, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().filter(|p| !is_no_pair(p)).map(|(k, v)| (k, v)))
}

/// What [`key_value`] makes of an empty text.
fn is_no_pair((k, v): &(String, String)) -> bool {
    k.is_empty() && v.is_empty()
}

/// No `--client-metadata` given (or only empty ones): the file's table decides.
fn no_pairs(pairs: &[(String, String)]) -> bool {
    pairs.iter().all(is_no_pair)
}

/// The merged table back as pairs, in key order.
fn table_as_pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    Ok(BTreeMap::<String, String>::deserialize(d)?
        .into_iter()
        .collect())
}
