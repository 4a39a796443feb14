//! A faithful Amazon Cognito emulator for tests, the README demo and benchmarks.
//!
//! No public emulator implements `ResendConfirmationCode`, so the project ships one. It speaks
//! Cognito's real wire protocol (awsJson1_1: `POST /` with `X-Amz-Target:
//! AWSCognitoIdentityProviderService.<Operation>`; errors as HTTP 400, or 500 for
//! `InternalErrorException`, with `x-amzn-ErrorType` and `{"__type", "message"}`), so the AWS
//! SDK for Rust and boto3 parse its answers into their typed errors exactly as they would
//! Cognito's. It implements `ResendConfirmationCode`, `AdminGetUser`, `ListUsers`,
//! `DescribeUserPool`, `DescribeUserPoolClient` and `AdminCreateUser` with `MessageAction`
//! `RESEND` (creating users is not implemented: seed them).
//!
//! # Invited users
//!
//! Users an administrator created are FORCE_CHANGE_PASSWORD until their first sign-in
//! ([`demo_invited`] seeds some); AdminCreateUser `RESEND` sends them their invitation again. It
//! resolves `Username` as AdminGetUser does, refuses other statuses
//! (`UnsupportedUserStateException`) and requested mediums the user has no attribute for
//! (`DesiredDeliveryMediums`, default SMS), runs the CustomMessage trigger, spends the email
//! quota, and records the invitation as a [`SendRecord`] whose [`SendRecord::action`] is
//! [`SendAction::Invite`], counted apart from codes ([`Emulator::invitations_sent_to`],
//! [`Emulator::invite_counts`]). AdminCreateUser is IAM-authorised: unsigned it is
//! `MissingAuthenticationTokenException` (403), and [`EmulatorBuilder::deny`] makes IAM refuse
//! an [`IamAction`] (`AccessDeniedException`). It draws on its own quota
//! ([`QuotaCategory::UserCreation`], [`EmulatorBuilder::user_creation_quota_rps`]), so its
//! throttling and the resend's never touch each other.
//!
//! # The pool's settings, and who a `Username` names
//!
//! The builder sets what `DescribeUserPool` reports and the operations obey:
//! [`EmulatorBuilder::case_sensitive`] (`UsernameConfiguration.CaseSensitive`),
//! [`EmulatorBuilder::alias_attributes`], [`EmulatorBuilder::username_attributes`],
//! [`EmulatorBuilder::auto_verified_attributes`] (which medium a code goes by),
//! [`EmulatorBuilder::email_sending_account`] (`COGNITO_DEFAULT` allows
//! [`COGNITO_DEFAULT_DAILY_EMAILS`] email codes) and
//! [`EmulatorBuilder::custom_message_trigger`]. `ResendConfirmationCode` and `AdminGetUser`
//! resolve their `Username` as Cognito does: the canonical username (folded with
//! `str::to_lowercase` in a case-insensitive pool, as is ListUsers' `username` filter), the
//! user's `sub`, the email or phone number of a pool with those `UsernameAttributes`, and in a
//! pool with `AliasAttributes` a verified email or phone number or the `preferred_username`.
//! They answer with, and record sends against, the canonical user: [`SendRecord::username`] is
//! the person, [`SendRecord::requested_as`] the spelling the request used, and
//! [`Stats::users_sent_more_than_once`] counts persons. [`Emulator::codes_sent_to`] answers "how
//! many codes did this person get" by any of their names. A pool Cognito could not hold (two
//! usernames that fold together in a case-insensitive pool, an alias shared by two users, ...)
//! fails to start. `docs/emulator.md` says what is implemented and on which documentation.
//!
//! Beyond the protocol it is a test instrument: it injects latency, 500s, dropped connections
//! and slow requests ([`Faults`]) before the operation runs, and 500s and dropped connections
//! after it ran (the code is sent, the answer lost: the ambiguous attempts a client must report
//! in doubt), enforces a requests-per-second quota, per-user attempt limits
//! and an account email quota, and records every code it "sends" so tests can assert
//! exactly-once delivery. All knobs can be changed while it runs.
//!
//! A slow request is held before anything happens to it, as at an overloaded front end; a client
//! that gives up and closes the connection during the hold cancels it, and no code is sent (the
//! case a retrying client must not count as a send). And [`Emulator::go_down`] takes the whole
//! server down for a while, as a crash or restart: connects are refused, open connections and
//! the requests on them are dropped unanswered, then it serves again on the same address with
//! its state intact. Out of process, `POST /_emulator/down?for=2s` does the same.
//!
//! The quota can change over time, as the spare quota of an account whose live sign-ups surge
//! does: a [`QuotaSchedule`] (`0s=50,20s=20,40s=50`) given at start or set later, or a new quota
//! at any moment (`POST /_emulator/quota?rps=20` or `?schedule=...` out of process). Every
//! request that reaches the quota is counted per second, accepted or throttled
//! ([`Emulator::rates`], `GET /_emulator/rates`), so a benchmark judges a client by what the
//! server saw. The UserCreation quota has the same knobs per category
//! ([`Emulator::set_quota_rps_of`], [`Emulator::rates_of`], `?category=user_creation`).
//!
//! # Layout
//! - `settings`: the pool's settings (case sensitivity, aliases, username and auto-verified
//!   attributes, email account) with Cognito's wire names.
//! - `model`: the pool (clients, users, Username resolution) and Cognito's pure rules:
//!   SecretHash, masking, the code's medium, demo data.
//! - `seed`: users from CSV or JSON files (the binary's `--users`), and [`seed::seed_pool`],
//!   everything the binary seeds.
//! - `filter`: ListUsers' filter language.
//! - `state`: what changes at run time: knobs, counters, the rate bucket, the send ledger.
//! - `quota`: the quota over time (schedule, changes) and the per-second counts, per category.
//! - `iam`: what AWS refuses before Cognito sees a request (no signature, IAM denial).
//! - `ops`: the six operations, as functions from request body to JSON or Cognito error
//!   (`ops/admin_create_user.rs` for the invitation).
//! - `server`: hyper accept loop (serving, or down) and request pipeline (faults, then IAM,
//!   then the category's quota, before the operation).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use cognito_emulator::{ClientSpec, Emulator, UserSpec, UserStatus};
//! let emu = Emulator::builder()
//!     .client(ClientSpec::new("client1").with_secret("s3cret"))
//!     .user(UserSpec::new("alice", UserStatus::Unconfirmed))
//!     .quota_rps(Some(50))
//!     .start("127.0.0.1:0".parse().expect("valid address"))
//!     .await?;
//! println!("Cognito at {}", emu.endpoint());
//! // ... run the worker against emu.endpoint() ...
//! assert!(emu.stats().users_sent_more_than_once == 0);
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod delay;
mod filter;
mod iam;
mod model;
mod ops;
mod quota;
pub mod seed;
mod server;
mod settings;
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use iam::IamAction;
pub use model::{ClientSpec, UserSpec, UserStatus, demo_invited, demo_pool, secret_hash, sub_for};
pub use quota::{QuotaCategory, QuotaSchedule, QuotaScheduleError, SecondCount};
pub use settings::{
    AliasAttribute, COGNITO_DEFAULT_DAILY_EMAILS, EMULATOR_ACCOUNT_ID, EmailSendingAccount,
    UsernameAttribute, VerifiedAttribute, parse_list,
};
pub use state::{Faults, SendAction, SendRecord, Stats};

use model::{Client, Pool};
use quota::RateQuota;
use settings::PoolSettings;
use state::{Counters, FaultKnobs, Ledger, Shared, lock};

/// The user pool id used when the builder is not given one.
pub const DEFAULT_USER_POOL_ID: &str = "us-east-1_Emulator";

/// The message of `LimitExceededException` when a user hit the per-user attempt limit.
pub const ATTEMPT_LIMIT_MESSAGE: &str = ops::ATTEMPT_LIMIT_MESSAGE;
/// The message of `LimitExceededException` when the account's email quota is spent.
pub const EMAIL_QUOTA_MESSAGE: &str = ops::EMAIL_QUOTA_MESSAGE;
/// The message of `MissingAuthenticationTokenException` (HTTP 403), the answer to an unsigned
/// AdminCreateUser.
pub const MISSING_AUTHENTICATION_TOKEN_MESSAGE: &str = iam::MISSING_TOKEN_MESSAGE;
/// The message of the `InvalidParameterException` AdminCreateUser answers for a `MessageAction`
/// other than `RESEND` (creating users is not implemented).
pub const CREATE_USER_NOT_IMPLEMENTED_MESSAGE: &str = ops::CREATE_NOT_IMPLEMENTED_MESSAGE;

/// The message of `AccessDeniedException` for `action` on the pool `pool_id`, as IAM words it
/// (see [`EmulatorBuilder::deny`]).
pub fn access_denied_message(action: IamAction, pool_id: &str) -> String {
    iam::denial_message(action, pool_id)
}

/// Configures and starts an [`Emulator`]. See [`Emulator::builder`].
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    pool_id: String,
    clients: Vec<ClientSpec>,
    users: Vec<UserSpec>,
    quota_rps: Option<u32>,
    quota_schedule: Option<QuotaSchedule>,
    user_creation_quota_rps: Option<u32>,
    user_creation_quota_schedule: Option<QuotaSchedule>,
    denied: Vec<IamAction>,
    attempt_limit: Option<u32>,
    /// `None`: not given, so it follows the email sending account.
    email_quota: Option<Option<u64>>,
    faults: Faults,
    keep_send_records: bool,
    settings: PoolSettings,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        Self {
            pool_id: DEFAULT_USER_POOL_ID.to_owned(),
            clients: Vec::new(),
            users: Vec::new(),
            quota_rps: None,
            quota_schedule: None,
            user_creation_quota_rps: None,
            user_creation_quota_schedule: None,
            denied: Vec::new(),
            attempt_limit: None,
            email_quota: None,
            faults: Faults::default(),
            keep_send_records: true,
            settings: PoolSettings::default(),
        }
    }
}

impl EmulatorBuilder {
    /// Adds an app client (a later one with the same id replaces it).
    pub fn client(mut self, c: ClientSpec) -> Self {
        self.clients.push(c);
        self
    }

    /// Sets the user pool id AdminGetUser, ListUsers, DescribeUserPool and
    /// DescribeUserPoolClient accept (default [`DEFAULT_USER_POOL_ID`]); any other is
    /// `ResourceNotFoundException` "User pool `ID` does not exist.".
    pub fn user_pool_id(mut self, id: impl Into<String>) -> Self {
        self.pool_id = id.into();
        self
    }

    /// Seeds a user (a later one with exactly the same username replaces it).
    pub fn user(mut self, u: UserSpec) -> Self {
        self.users.push(u);
        self
    }

    /// Seeds many users.
    pub fn users(mut self, it: impl IntoIterator<Item = UserSpec>) -> Self {
        self.users.extend(it);
        self
    }

    /// Requests per second across all operations but AdminCreateUser (the category
    /// ResendConfirmationCode draws on, [`QuotaCategory::Resend`]) before
    /// `TooManyRequestsException`; `None` (the default) means unlimited, `Some(0)` throttles
    /// everything.
    pub fn quota_rps(mut self, q: Option<u32>) -> Self {
        self.quota_rps = q;
        self
    }

    /// A quota that changes over time, its offsets counted from the start (see
    /// [`QuotaSchedule`]); before its first step [`EmulatorBuilder::quota_rps`] holds.
    pub fn quota_schedule(mut self, s: Option<QuotaSchedule>) -> Self {
        self.quota_schedule = s;
        self
    }

    /// Requests per second of the UserCreation category (AdminCreateUser) before
    /// `TooManyRequestsException` "Rate exceeded", a budget of its own: throttling here never
    /// touches [`EmulatorBuilder::quota_rps`]'s category, nor the other way round. `None` (the
    /// default) means unlimited.
    pub fn user_creation_quota_rps(mut self, q: Option<u32>) -> Self {
        self.user_creation_quota_rps = q;
        self
    }

    /// A UserCreation quota that changes over time, as [`EmulatorBuilder::quota_schedule`].
    pub fn user_creation_quota_schedule(mut self, s: Option<QuotaSchedule>) -> Self {
        self.user_creation_quota_schedule = s;
        self
    }

    /// Denies an IAM-authorised operation, as a policy that does not allow it:
    /// `AccessDeniedException` (HTTP 400) with IAM's message ([`access_denied_message`]), before
    /// the quota and the operation. [`Emulator::deny`] and [`Emulator::allow`] change it later.
    pub fn deny(mut self, action: IamAction) -> Self {
        self.denied.push(action);
        self
    }

    /// Codes one user can receive before `LimitExceededException` "Attempt limit exceeded";
    /// `None` (the default) means unlimited.
    pub fn attempt_limit(mut self, n: Option<u32>) -> Self {
        self.attempt_limit = n;
        self
    }

    /// Emails the whole account can send (confirmation codes and invitations alike) before
    /// `LimitExceededException` "Exceeded daily email limit" (SMS don't count); `None` means
    /// unlimited. When not called, it
    /// follows [`EmulatorBuilder::email_sending_account`]: unlimited for `DEVELOPER` (the
    /// default), [`COGNITO_DEFAULT_DAILY_EMAILS`] for `COGNITO_DEFAULT`.
    pub fn email_quota(mut self, n: Option<u64>) -> Self {
        self.email_quota = Some(n);
        self
    }

    /// The pool's name in DescribeUserPool (default `emulator`).
    pub fn user_pool_name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// `UsernameConfiguration.CaseSensitive`. `Some(false)` makes the pool case-insensitive:
    /// ResendConfirmationCode, AdminGetUser and ListUsers' `username` filter match usernames
    /// (and the email and preferred_username aliases) whatever their case, folded with
    /// `str::to_lowercase`, and answer with the stored username; seeding two users whose
    /// usernames fold together is then an error. `None` (the default) leaves it unset, as a
    /// pool created without it: case-sensitive, and DescribeUserPool omits
    /// `UsernameConfiguration`.
    pub fn case_sensitive(mut self, c: Option<bool>) -> Self {
        self.settings.case_sensitive = c;
        self
    }

    /// `AliasAttributes` (default none): users can be named by a verified email or phone
    /// number, or by their preferred_username. Exclusive with
    /// [`EmulatorBuilder::username_attributes`].
    pub fn alias_attributes(mut self, a: impl IntoIterator<Item = AliasAttribute>) -> Self {
        self.settings.alias_attributes = a.into_iter().collect();
        self
    }

    /// `UsernameAttributes` (default none): users sign up with their email or phone number,
    /// which then names them whether verified or not; their canonical username is a UUID (seed
    /// them with one, such as their [`sub_for`]).
    pub fn username_attributes(mut self, a: impl IntoIterator<Item = UsernameAttribute>) -> Self {
        self.settings.username_attributes = a.into_iter().collect();
        self
    }

    /// `AutoVerifiedAttributes` (default `email` and `phone_number`): where confirmation codes
    /// go. By SMS when phone_number is verified and the user has a phone, else by email when
    /// email is verified and the user has an email (so by default a user with only an email
    /// gets email, one with only a phone gets SMS, one with both gets SMS, as Cognito
    /// documents). Empty: `InvalidParameterException` "Cannot resend codes. Auto verification
    /// not turned on.", as for a client with [`ClientSpec::with_auto_verify`] false.
    pub fn auto_verified_attributes(
        mut self,
        a: impl IntoIterator<Item = VerifiedAttribute>,
    ) -> Self {
        self.settings.auto_verified = a.into_iter().collect();
        self
    }

    /// `EmailConfiguration.EmailSendingAccount` (default `DEVELOPER`). `COGNITO_DEFAULT` limits
    /// the account to [`COGNITO_DEFAULT_DAILY_EMAILS`] email codes unless
    /// [`EmulatorBuilder::email_quota`] says otherwise.
    pub fn email_sending_account(mut self, a: EmailSendingAccount) -> Self {
        self.settings.email_account = a;
        self
    }

    /// `EmailConfiguration.SourceArn` (default: for `DEVELOPER`, an SES identity of the
    /// emulator's account in the pool's region; for `COGNITO_DEFAULT`, none).
    pub fn email_source_arn(mut self, arn: Option<String>) -> Self {
        self.settings.email_source_arn = arn;
        self
    }

    /// The ARN of a CustomMessage Lambda trigger, reported as `LambdaConfig.CustomMessage`
    /// (default none). The emulator does not call it.
    pub fn custom_message_trigger(mut self, arn: Option<String>) -> Self {
        self.settings.custom_message_arn = arn;
        self
    }

    /// Makes the CustomMessage trigger's function throw for every `ResendConfirmationCode` (and
    /// AdminCreateUser `RESEND`: trigger source `CustomMessage_AdminCreateUser`) whose
    /// `ClientMetadata` has `key` set to `value` (the trigger is given the request's
    /// ClientMetadata, so a function can fail on what one request carries). Cognito then sends
    /// no code and answers as it does for a trigger whose function throws:
    /// `UserLambdaValidationException`, "CustomMessage failed with error <the function's
    /// message>." Other requests are not affected. Only with a trigger set
    /// ([`EmulatorBuilder::custom_message_trigger`]): a pool without one runs no function.
    pub fn custom_message_fails_when(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.settings.custom_message_fails_when = Some((key.into(), value.into()));
        self
    }

    /// Initial fault injection (none by default).
    pub fn faults(mut self, f: Faults) -> Self {
        self.faults = f;
        self
    }

    /// Whether to keep every [`SendRecord`] (default true). Benchmarks sending millions of
    /// codes may turn it off to bound memory; counts and stats are kept either way.
    pub fn keep_send_records(mut self, keep: bool) -> Self {
        self.keep_send_records = keep;
        self
    }

    /// Binds `addr` (loopback only; port 0 picks a free port) and starts serving on the
    /// current tokio runtime.
    ///
    /// Fails with `InvalidInput` on a non-loopback address and on a pool Cognito could not
    /// hold: usernames that fold together in a case-insensitive pool, an alias or username
    /// attribute value (or sub) shared by two users, usernames shaped like the pool's email or
    /// phone alias or username attribute, or both alias and username attributes set.
    pub async fn start(self, addr: SocketAddr) -> std::io::Result<Emulator> {
        let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
        if !addr.ip().is_loopback() {
            return Err(invalid(format!(
                "the emulator only listens on loopback addresses, not {addr}"
            )));
        }
        let email_quota = self
            .email_quota
            .unwrap_or(match self.settings.email_account {
                EmailSendingAccount::CognitoDefault => Some(COGNITO_DEFAULT_DAILY_EMAILS),
                EmailSendingAccount::Developer => None,
            });
        let pool = Pool::new(self.users, self.settings)
            .map_err(|e| invalid(format!("cannot seed the user pool: {e}")))?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let ledger = Ledger::new(
            pool.users.len(),
            self.attempt_limit,
            email_quota,
            self.keep_send_records,
        );
        let faults = FaultKnobs::default();
        faults.set(&self.faults);
        let (down, down_requests) = mpsc::unbounded_channel();
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64 / 1000.0);
        let shared = Arc::new(Shared {
            pool_id: self.pool_id,
            created,
            pool,
            clients: self
                .clients
                .into_iter()
                .map(|c| (c.client_id.clone(), Client::new(c)))
                .collect(),
            faults,
            counters: Counters::default(),
            quota: RateQuota::new(self.quota_rps, self.quota_schedule, Instant::now()),
            user_creation_quota: RateQuota::new(
                self.user_creation_quota_rps,
                self.user_creation_quota_schedule,
                Instant::now(),
            ),
            denied: iam::Denied::default(),
            ledger: Mutex::new(ledger),
            delay: delay::PreciseDelay::start(),
            down,
        });
        for action in self.denied {
            shared.denied.set(action, true);
        }
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let accept = tokio::spawn(server::run(
            listener,
            addr,
            shared.clone(),
            down_requests,
            stop.clone(),
            tracker.clone(),
        ));
        Ok(Emulator {
            addr,
            shared,
            stop,
            tracker,
            accept: Some(accept),
        })
    }
}

/// A running emulator. Dropping it stops the server (open connections finish their current
/// request); [`Emulator::shutdown`] also waits for that. [`Emulator::go_down`] takes it down for
/// a while without stopping it.
pub struct Emulator {
    /// The bound address (the real port when started on port 0).
    addr: SocketAddr,
    /// Shared with every connection task; read back by the accessors below.
    shared: Arc<Shared>,
    /// Cancelled on shutdown or drop: stops accepting and closes connections gracefully.
    stop: CancellationToken,
    /// The connection tasks, so shutdown can wait for them.
    tracker: TaskTracker,
    /// The accept loop (which also goes down and comes back up); taken by `shutdown`.
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Emulator {
    /// Starts configuring an emulator.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// The endpoint URL to give an AWS client, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The user pool id AdminGetUser, ListUsers and the Describe operations accept.
    pub fn user_pool_id(&self) -> &str {
        &self.shared.pool_id
    }

    /// Replaces the fault injection settings; takes effect for requests not yet past that step.
    pub fn set_faults(&self, f: Faults) {
        self.shared.faults.set(&f);
    }

    /// The current fault injection settings.
    pub fn faults(&self) -> Faults {
        self.shared.faults.get()
    }

    /// Changes the requests-per-second quota; the bucket restarts full, and what is left of a
    /// [`QuotaSchedule`] is dropped. `POST /_emulator/quota?rps=N` (or `rps=off`) does the same
    /// from outside.
    pub fn set_quota_rps(&self, q: Option<u32>) {
        self.shared.quota.set(q);
    }

    /// Replaces any quota schedule with `s`, its offsets counted from now. `POST
    /// /_emulator/quota?schedule=0s=50,20s=20` does the same from outside.
    pub fn set_quota_schedule(&self, s: QuotaSchedule) {
        self.shared.quota.set_schedule(s, Instant::now());
    }

    /// Requests accepted and throttled by the quota, per second since the start (the last
    /// hour; seconds without a request are absent). Also at `GET /_emulator/rates`.
    pub fn rates(&self) -> Vec<SecondCount> {
        self.shared.quota.seconds()
    }

    /// Changes the quota of `category` now (the bucket restarts full, any schedule is dropped):
    /// [`Emulator::set_quota_rps`] for [`QuotaCategory::Resend`]. `POST
    /// /_emulator/quota?rps=N&category=user_creation` does the same from outside.
    pub fn set_quota_rps_of(&self, category: QuotaCategory, q: Option<u32>) {
        self.shared.quota_of(category).set(q);
    }

    /// Replaces the quota schedule of `category`, offsets counted from now.
    pub fn set_quota_schedule_of(&self, category: QuotaCategory, s: QuotaSchedule) {
        self.shared
            .quota_of(category)
            .set_schedule(s, Instant::now());
    }

    /// The quota of `category` in force (`None`: unlimited).
    pub fn quota_rps_of(&self, category: QuotaCategory) -> Option<u32> {
        self.shared.quota_of(category).current()
    }

    /// Requests of `category` its quota accepted and throttled, per second since the start
    /// ([`Emulator::rates`] for [`QuotaCategory::Resend`]). Also at `GET
    /// /_emulator/rates?category=user_creation`.
    pub fn rates_of(&self, category: QuotaCategory) -> Vec<SecondCount> {
        self.shared.quota_of(category).seconds()
    }

    /// Denies `action` from now on (see [`EmulatorBuilder::deny`]).
    pub fn deny(&self, action: IamAction) {
        self.shared.denied.set(action, true);
    }

    /// Allows `action` again.
    pub fn allow(&self, action: IamAction) {
        self.shared.denied.set(action, false);
    }

    /// Changes the account email quota (total emails, codes and invitations, counting those
    /// already sent).
    pub fn set_email_quota(&self, n: Option<u64>) {
        lock(&self.shared.ledger).email_quota = n;
    }

    /// Changes the per-user attempt limit (counting codes already sent).
    pub fn set_attempt_limit(&self, n: Option<u32>) {
        lock(&self.shared.ledger).attempt_limit = n;
    }

    /// Every recorded send, confirmation codes and invitations ([`SendRecord::action`]), in the
    /// order they were accepted (empty when records are off).
    pub fn sends(&self) -> Vec<SendRecord> {
        self.shared.sends()
    }

    /// Confirmation codes sent per canonical username (users with none are absent): per person,
    /// however the requests spelled them. Invitations are apart ([`Emulator::invite_counts`]).
    pub fn send_counts(&self) -> HashMap<String, usize> {
        self.shared.send_counts(SendAction::Confirm)
    }

    /// Invitations sent (AdminCreateUser `RESEND`) per canonical username (users with none are
    /// absent). Also at `GET /_emulator/invitations`.
    pub fn invite_counts(&self) -> HashMap<String, usize> {
        self.shared.send_counts(SendAction::Invite)
    }

    /// Invitations sent to the user `name` names (resolved as in [`Emulator::codes_sent_to`]);
    /// `None` when it names no user.
    pub fn invitations_sent_to(&self, name: &str) -> Option<usize> {
        let position = self.shared.pool.resolve(name)?;
        Some(self.shared.sends_to(position, SendAction::Invite))
    }

    /// Confirmation codes sent to the user `name` names, resolved as ResendConfirmationCode resolves a
    /// `Username` (canonical username, another case in a case-insensitive pool, sub, active
    /// alias or username attribute); `None` when it names no user.
    pub fn codes_sent_to(&self, name: &str) -> Option<usize> {
        let position = self.shared.pool.resolve(name)?;
        Some(self.shared.sends_to(position, SendAction::Confirm))
    }

    /// The canonical username of the user `name` names (resolved as in
    /// [`Emulator::codes_sent_to`]).
    pub fn canonical_username(&self, name: &str) -> Option<&str> {
        let position = self.shared.pool.resolve(name)?;
        Some(&self.shared.pool.users[position].username)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Takes the emulator down for `for_`, as a crashed or restarting server: it stops
    /// listening, so a connect is refused (`ECONNREFUSED`); it closes every open connection,
    /// dropping the requests being handled on them without an answer (an operation that already
    /// ran stays recorded, as on a real server that crashed before answering); and when `for_`
    /// has passed it listens again on the same address and serves as before. Users, sends,
    /// counters, knobs and quotas are all kept. [`Stats::downs`] counts the times it went down.
    ///
    /// Returns once it is down: the listener is closed and so is every connection. The window
    /// counts from the moment the listener closed. Called while already down, it extends the
    /// window to end no earlier than `for_` from now (it never shortens it). Windows are capped
    /// at a year. [`Emulator::shutdown`] works while down, and it stays down then.
    ///
    /// Coming back up binds the same port again; if something else took the port meanwhile
    /// (the port was free, so an outgoing connection may be given it as its source port), it
    /// retries every 50 ms until the port is free again.
    pub async fn go_down(&self, for_: Duration) {
        let (closed, connections_closed) = oneshot::channel();
        let request = server::GoDown {
            for_,
            listener_closed: None,
            connections_closed: Some(closed),
        };
        // Either fails only if the accept loop has ended, which before `shutdown` means it
        // panicked: nothing listens then anyway.
        if self.shared.down.send(request).is_ok() {
            let _ = connections_closed.await;
        }
    }

    /// Stops accepting, lets open connections finish their current request (up to a few
    /// seconds), and waits for all of it.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(accept) = self.accept.take() {
            // The accept loop only ends by cancellation; a join error would mean it panicked,
            // and there is nothing left to clean up in that case.
            let _ = accept.await;
        }
        self.tracker.close();
        // Each connection bounds its own grace period; this is a backstop.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.tracker.wait()).await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests;
