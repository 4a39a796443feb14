//! The worker's pool paths against moto's Cognito (cognito-idp), a second implementation next to
//! the bundled emulator: `discover`, `backfill --from-pool --dry-run`, `check`'s pool profile and
//! the secret check must agree with what moto holds, as read back through the AWS SDK.
//!
//! Each test starts its own moto server (`scripts/moto_server.py`, as tests/it/support/moto.rs
//! does for SQS) and creates its pools there through the AWS SDK for Rust, with a mix of users:
//! UNCONFIRMED (SignUp on a client without a secret), CONFIRMED (SignUp, then
//! AdminConfirmSignUp) and FORCE_CHANGE_PASSWORD (AdminCreateUser). The pools: one created with
//! `UsernameConfiguration.CaseSensitive = false`, one with no `UsernameConfiguration`, and one
//! with `UsernameAttributes = [email]` (users sign up with their email; the username is an id).
//!
//! moto 5.2.5 has no ResendConfirmationCode, so no code is sent here: a dry run that called it
//! would fail. It does implement AdminCreateUser with `MessageAction = RESEND`: the invitations
//! (action `invite`) are sent to it for real, signed. Where moto and AWS's documentation disagree (case-insensitive usernames, alias and
//! `sub` lookups, see docs/emulator.md, "Where moto and the emulator disagree"), the tests keep to
//! what both do the same way, and say so where it matters.

use crate::support;

use std::collections::BTreeSet;

use aws_sdk_cognitoidentityprovider as idp;
use idp::types::UsernameAttributeType;
use support::moto::{self, Moto, PoolSpec};
use support::*;

/// The filter the worker lists with (src/source/pool.rs), as AWS documents it.
const UNCONFIRMED: &str = "cognito:user_status = \"UNCONFIRMED\"";

/// The kinds of pool every test is run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `UsernameConfiguration.CaseSensitive = false`.
    CaseInsensitive,
    /// No `UsernameConfiguration` (through the API: case-sensitive, AWS's documented default).
    NoUsernameConfiguration,
    /// `UsernameAttributes = [email]`, case-insensitive as the console would create it.
    EmailAsUsername,
}

const KINDS: [Kind; 3] = [
    Kind::CaseInsensitive,
    Kind::NoUsernameConfiguration,
    Kind::EmailAsUsername,
];

impl Kind {
    fn spec(self) -> PoolSpec {
        match self {
            Kind::CaseInsensitive => PoolSpec {
                case_sensitive: Some(false),
                ..PoolSpec::default()
            },
            Kind::NoUsernameConfiguration => PoolSpec::default(),
            Kind::EmailAsUsername => PoolSpec {
                case_sensitive: Some(false),
                username_attributes: vec![UsernameAttributeType::Email],
                ..PoolSpec::default()
            },
        }
    }

    /// The usernames line `check` prints for this pool's profile.
    fn usernames_line(self) -> &'static str {
        match self {
            Kind::CaseInsensitive | Kind::EmailAsUsername => {
                "usernames: case-insensitive (ledger keys folded to lower case)"
            }
            Kind::NoUsernameConfiguration => {
                "usernames: case-sensitive (no UsernameConfiguration) (ledger keys as written)"
            }
        }
    }
}

/// A pool in moto with its app client (no secret) and who was made what.
struct Seeded {
    kind: Kind,
    pool_id: String,
    client_id: String,
    /// Usernames as the pool holds them (generated ids in an email-as-username pool).
    unconfirmed: BTreeSet<String>,
    confirmed: BTreeSet<String>,
    force_change: BTreeSet<String>,
}

/// Creates a pool of `kind` in moto: 9 UNCONFIRMED users (mixed case, no two equal but for
/// case: moto would keep both, AWS would refuse the second in a case-insensitive pool),
/// 3 CONFIRMED, 2 FORCE_CHANGE_PASSWORD; all with an email.
async fn seed(client: &idp::Client, kind: Kind, tag: &str) -> Seeded {
    let pool_id = moto::create_user_pool(client, &format!("{tag}-{kind:?}"), &kind.spec()).await;
    let client_id = moto::create_app_client(client, &pool_id, "resender", false).await;
    let email_login = kind == Kind::EmailAsUsername;
    // In an email-as-username pool the name signed up with is the email; the pool names the
    // user by a generated id (its sub), which is what ListUsers and the worker see.
    let sign_up = |name: String| {
        let client_id = client_id.clone();
        async move {
            let email = format!("{}@example.com", name.to_lowercase());
            let login = if email_login {
                email.clone()
            } else {
                name.clone()
            };
            let sub = moto::sign_up(client, &client_id, &login, &email).await;
            if email_login { sub } else { name }
        }
    };
    let mut unconfirmed = BTreeSet::new();
    for i in 0..9 {
        let name = match i % 3 {
            0 => format!("pending-{i}"),
            1 => format!("Pending-Mixed-{i}"),
            _ => format!("PENDING.UPPER.{i}"),
        };
        unconfirmed.insert(sign_up(name).await);
    }
    let mut confirmed = BTreeSet::new();
    for i in 0..3 {
        let username = sign_up(format!("Confirmed-{i}")).await;
        moto::admin_confirm(client, &pool_id, &username).await;
        confirmed.insert(username);
    }
    let mut force_change = BTreeSet::new();
    for i in 0..2 {
        let name = format!("invited-{i}");
        let email = format!("{name}@example.com");
        let login = if email_login { &email } else { &name };
        force_change.insert(moto::admin_create(client, &pool_id, login, &email).await);
    }
    let seeded = Seeded {
        kind,
        pool_id,
        client_id,
        unconfirmed,
        confirmed,
        force_change,
    };
    seeded.agrees_with_list_users(client).await;
    seeded
}

impl Seeded {
    /// What moto holds, read back through the SDK, is what was made: the ground truth the
    /// worker is compared with is moto's own ListUsers, not only our bookkeeping.
    async fn agrees_with_list_users(&self, client: &idp::Client) {
        let all = moto::list_users(client, &self.pool_id, None).await;
        let with = |status: &str| -> BTreeSet<String> {
            all.iter()
                .filter(|(_, s)| s == status)
                .map(|(u, _)| u.clone())
                .collect()
        };
        assert_eq!(all.len(), 14, "{:?}: ListUsers returned {all:?}", self.kind);
        assert_eq!(with("UNCONFIRMED"), self.unconfirmed, "{:?}", self.kind);
        assert_eq!(with("CONFIRMED"), self.confirmed, "{:?}", self.kind);
        assert_eq!(
            with("FORCE_CHANGE_PASSWORD"),
            self.force_change,
            "{:?}",
            self.kind
        );
        let filtered = moto::list_users(client, &self.pool_id, Some(UNCONFIRMED)).await;
        assert_eq!(
            filtered
                .iter()
                .map(|(u, _)| u.clone())
                .collect::<BTreeSet<_>>(),
            self.unconfirmed,
            "{:?}: ListUsers with the worker's filter",
            self.kind
        );
    }

    /// The binary against moto, with this pool and client.
    fn cmd(&self, endpoint: &str, subcommand: &str) -> tokio::process::Command {
        let mut c = command(endpoint);
        c.arg(subcommand)
            .args(["--user-pool-id", &self.pool_id])
            .args(["--client-id", &self.client_id]);
        c
    }
}

/// The username column of a `discover` CSV.
fn csv_usernames(text: &str) -> Vec<String> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers = r.headers().expect("a header row").clone();
    assert_eq!(&headers[0], "username", "{text}");
    r.records()
        .map(|rec| rec.expect("a CSV record")[0].to_owned())
        .collect()
}

/// Starts moto with an SDK client for its Cognito.
async fn moto_cognito() -> (Moto, idp::Client) {
    let moto = Moto::start().await;
    let client = moto::cognito_client(&moto.endpoint).await;
    (moto, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_lists_exactly_the_users_moto_holds_unconfirmed() {
    let (moto, client) = moto_cognito().await;
    for kind in KINDS {
        let pool = seed(&client, kind, "discover").await;
        let ran = run(pool.cmd(&moto.endpoint, "discover")).await;
        assert_eq!(
            ran.code,
            0,
            "{kind:?}: discover failed\n{}\n--- moto ---\n{}",
            ran.stderr,
            moto.output()
        );
        let listed = csv_usernames(&ran.stdout);
        let set: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(
            listed.len(),
            set.len(),
            "{kind:?}: duplicates in {listed:?}"
        );
        // Compared with moto's ListUsers right now, not only with what was created.
        let now: BTreeSet<String> = moto::list_users(&client, &pool.pool_id, None)
            .await
            .into_iter()
            .filter(|(_, s)| s == "UNCONFIRMED")
            .map(|(u, _)| u)
            .collect();
        assert_eq!(set, now, "{kind:?}: discover vs ListUsers");
        assert_eq!(set, pool.unconfirmed, "{kind:?}");
        assert!(set.is_disjoint(&pool.confirmed) && set.is_disjoint(&pool.force_change));
        // Every row says UNCONFIRMED.
        assert!(
            ran.stdout
                .lines()
                .skip(1)
                .all(|l| l.contains("UNCONFIRMED")),
            "{kind:?}:\n{}",
            ran.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_from_the_pool_gives_exactly_the_unconfirmed_users_dry_run_and_sends_nothing() {
    let (moto, client) = moto_cognito().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    for kind in KINDS {
        let pool = seed(&client, kind, "dryrun").await;
        let report_path = dir.path().join(format!("{kind:?}.jsonl"));
        let mut cmd = pool.cmd(&moto.endpoint, "backfill");
        cmd.args(["--from-pool", "--dry-run", "--rate", "0"])
            .arg("--report")
            .arg(&report_path);
        let ran = run(cmd).await;
        // moto has no ResendConfirmationCode: had the dry run called it, that user would have
        // failed (moto answers it with an error) and the run would not exit 0.
        assert_eq!(
            ran.code,
            0,
            "{kind:?}: the dry run failed\n{}\n--- moto ---\n{}",
            ran.stderr,
            moto.output()
        );
        let lines = report(&report_path);
        assert_eq!(
            outcomes(&lines),
            [("dry_run".to_owned(), pool.unconfirmed.len())]
                .into_iter()
                .collect(),
            "{kind:?}: {lines:?}"
        );
        let dry: BTreeSet<String> = users_with(&lines, "dry_run").into_iter().collect();
        assert_eq!(dry, pool.unconfirmed, "{kind:?}");
        assert!(
            !moto.output().contains("resend_confirmation_code"),
            "{kind:?}: moto was asked to resend:\n{}",
            moto.output()
        );
        // Still nobody confirmed, nobody changed: the pool is as it was.
        pool.agrees_with_list_users(&client).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_the_pool_profile_moto_describes() {
    let (moto, client) = moto_cognito().await;
    for kind in KINDS {
        let pool = seed(&client, kind, "check").await;
        // A second client, with a secret, given to the run as allowed (so it is described);
        // the run is given a secret, so `check` accepts it.
        let secret_client = moto::create_app_client(&client, &pool.pool_id, "server", true).await;
        let dir = tempfile::tempdir().expect("a temp dir");
        let secret_file = write_file(dir.path(), "secret", "not-the-real-one");
        let mut cmd = pool.cmd(&moto.endpoint, "check");
        cmd.args(["--allow-client-id", &secret_client])
            .arg("--client-secret-file")
            .arg(&secret_file);
        let ran = run(cmd).await;
        assert_eq!(
            ran.code,
            0,
            "{kind:?}: check failed\n{}\n--- moto ---\n{}",
            ran.stderr,
            moto.output()
        );
        let profile: Vec<&str> = ran
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .collect();
        let has = |want: &str| {
            assert!(
                profile.iter().any(|l| l.trim() == want),
                "{kind:?}: no profile line {want:?} in\n{}",
                ran.stdout
            )
        };
        has(&format!("pool {} (check-{kind:?})", pool.pool_id));
        // moto, like AWS, leaves UsernameConfiguration out of DescribeUserPool for a pool
        // created without one; AWS documents CaseSensitive = true as that default.
        has(kind.usernames_line());
        has(match kind {
            Kind::EmailAsUsername => {
                "alias attributes: none; username attributes: email (rows are resolved to the \
                 username with AdminGetUser before the claim)"
            }
            _ => "alias attributes: none; username attributes: none",
        });
        has("auto-verified: email");
        has(
            "email: Cognito's default email account: at most 50 emails a day (the email day cap \
             unless --max-email-per-day is set)",
        );
        has(&format!(
            "client {} (resender): no secret, PreventUserExistenceErrors off",
            pool.client_id
        ));
        has(&format!(
            "client {secret_client} (server): has a secret, PreventUserExistenceErrors off"
        ));
        assert!(
            !ran.stdout.contains("not-the-real-one"),
            "the secret is redacted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_secret_and_no_secret_given_is_refused_before_any_call() {
    let (moto, client) = moto_cognito().await;
    let pool = seed(&client, Kind::CaseInsensitive, "secret").await;
    let secret_client = moto::create_app_client(&client, &pool.pool_id, "server", true).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let usernames: Vec<String> = pool.unconfirmed.iter().cloned().collect();
    let csv = usernames_csv(dir.path(), &usernames);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = command(&moto.endpoint);
    cmd.arg("backfill")
        .arg(&csv)
        .args(["--user-pool-id", &pool.pool_id])
        .args(["--client-id", &secret_client])
        .arg("--report")
        .arg(&report_path);
    let before = moto.stats().await.requests;
    let ran = run(cmd).await;
    let after = moto.stats().await.requests;
    assert_eq!(ran.code, 2, "a usage error\n{}", ran.stderr);
    assert!(
        ran.stderr
            .contains(&format!("app client {secret_client} has a secret")),
        "names the client:\n{}",
        ran.stderr
    );
    // The profile was read (DescribeUserPool, DescribeUserPoolClient) and nothing else: moto
    // has no ResendConfirmationCode, and no user was looked at either.
    assert_eq!(after - before, 2, "only the profile reads:\n{}", ran.stderr);
    let sent = std::fs::read_to_string(&report_path).unwrap_or_default();
    assert!(
        sent.lines().all(|l| l.trim().is_empty()),
        "no report lines: {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_by_email_resolve_through_moto_admin_get_user_in_an_email_as_username_pool() {
    let (moto, client) = moto_cognito().await;
    let pool = seed(&client, Kind::EmailAsUsername, "byemail").await;
    // The unconfirmed users by the email they signed up with: the worker resolves each row to
    // the generated username with AdminGetUser (the profile has username attributes), which
    // moto supports for UsernameAttributes (not for AliasAttributes: see docs/emulator.md).
    let mut emails = Vec::new();
    for username in &pool.unconfirmed {
        let user = client
            .admin_get_user()
            .user_pool_id(&pool.pool_id)
            .username(username)
            .send()
            .await
            .unwrap_or_else(|e| panic!("AdminGetUser {username}: {e:?}"));
        let email = user
            .user_attributes
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.name == "email")
            .and_then(|a| a.value)
            .unwrap_or_else(|| panic!("{username} has an email"));
        emails.push(email);
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let csv = usernames_csv(dir.path(), &emails);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = command(&moto.endpoint);
    cmd.arg("backfill")
        .arg(&csv)
        .args(["--user-pool-id", &pool.pool_id])
        .args(["--client-id", &pool.client_id])
        .args(["--dry-run", "--rate", "0"])
        .arg("--report")
        .arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(
        ran.code,
        0,
        "the dry run failed\n{}\n--- moto ---\n{}",
        ran.stderr,
        moto.output()
    );
    let lines = report(&report_path);
    assert_eq!(
        outcomes(&lines),
        [("dry_run".to_owned(), emails.len())].into_iter().collect(),
        "{lines:#?}"
    );
    // Each row keyed by the username moto resolved it to (generated ids, already lower case).
    let keys: BTreeSet<String> = lines
        .iter()
        .map(|l| l["user_key"].as_str().expect("a user_key").to_owned())
        .collect();
    assert_eq!(keys, pool.unconfirmed, "{lines:#?}");
}

/// The invitation's request as moto, an implementation written outside this project, takes it:
/// AdminCreateUser with `MessageAction = RESEND`, signed with the credential chain (moto checks
/// the signature's presence), for the users moto holds FORCE_CHANGE_PASSWORD, read first with
/// AdminGetUser for their contacts. Had the request lacked RESEND, moto would have answered
/// UsernameExistsException (the user exists) and the jobs would have failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_admin_create_user_resend_calls_that_moto_accepts() {
    let (moto, client) = moto_cognito().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    for kind in [Kind::CaseInsensitive, Kind::NoUsernameConfiguration] {
        let pool = seed(&client, kind, "invite").await;
        let rows: Vec<String> = std::iter::once("username,status".to_owned())
            .chain(
                pool.force_change
                    .iter()
                    .map(|u| format!("{u},FORCE_CHANGE_PASSWORD")),
            )
            .collect();
        let csv = write_file(dir.path(), &format!("{kind:?}.csv"), rows.join("\n"));
        let report_path = dir.path().join(format!("{kind:?}.jsonl"));
        let mut cmd = pool.cmd(&moto.endpoint, "backfill");
        cmd.arg(&csv)
            .args(["--rate", "0", "--invite-rate", "0"])
            .args(["--status", "FORCE_CHANGE_PASSWORD"])
            .arg("--report")
            .arg(&report_path);
        let ran = run(cmd).await;
        assert_eq!(
            ran.code,
            0,
            "{kind:?}\n{}\n--- moto ---\n{}",
            ran.stderr,
            moto.output()
        );
        let lines = report(&report_path);
        assert_eq!(lines.len(), pool.force_change.len(), "{lines:?}");
        for l in &lines {
            assert_eq!(l["action"], "invite", "{kind:?}: {l}");
            assert_eq!(l["outcome"], "sent", "{kind:?}: {l}");
            assert_eq!(l["delivery"]["medium"], "EMAIL", "{kind:?}: {l}");
        }
        // A resent invitation changes nobody's status: the pool is as it was.
        pool.agrees_with_list_users(&client).await;
    }
}
