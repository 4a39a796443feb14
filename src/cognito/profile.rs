//! The pool profile: what the user pool and its app clients will do with a resend, read once at
//! the start of every command given `--user-pool-id` (`DescribeUserPool`,
//! `DescribeUserPoolClient`, both read-only and IAM-signed like the other pool reads).
//!
//! Each field is here because a command acts on it:
//! - case sensitivity, alias and username attributes: who a row is (the ledger key, and whether
//!   a row must be resolved to the canonical username before its claim);
//! - the auto-verified attributes: the medium Cognito will use for each user, so the per-medium
//!   day caps reserve the right one before the call;
//! - the email sending account: the default account sends at most 50 emails a day, which
//!   becomes the email day cap;
//! - per client: a required secret (a run without one would fail every call), and
//!   PreventUserExistenceErrors (Cognito then answers unknown users with a simulated success);
//! - a CustomMessage trigger: whether `--client-metadata` reaches anything.

use std::fmt;

use aws_sdk_cognitoidentityprovider::types::{
    EmailSendingAccountType, PreventUserExistenceErrorTypes,
};

use super::admin::{AdminError, PoolAdmin, classify};
use crate::job::UsernameCase;
use crate::ledger::Medium;

/// Emails a day Cognito's default email account sends for an account and region (Cognito's
/// documented limit; an SES configuration raises it).
pub(crate) const DEFAULT_EMAIL_ACCOUNT_PER_DAY: u64 = 50;

/// What `DescribeUserPool` and `DescribeUserPoolClient` say, as far as a run acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolProfile {
    /// The pool id.
    pub pool_id: String,
    /// Its name.
    pub name: Option<String>,
    /// `UsernameConfiguration.CaseSensitive`; `None` when the pool has no
    /// `UsernameConfiguration` (created through the API without one: case-sensitive).
    pub case_sensitive: Option<bool>,
    /// `AliasAttributes`: `email`, `phone_number`, `preferred_username`.
    pub alias_attributes: Vec<String>,
    /// `UsernameAttributes`: `email`, `phone_number` (users sign up with these instead of a
    /// username; the username itself is then a generated id).
    pub username_attributes: Vec<String>,
    /// `AutoVerifiedAttributes`: where confirmation codes go.
    pub auto_verified: Vec<String>,
    /// `EmailConfiguration.EmailSendingAccount` is `COGNITO_DEFAULT` (or no email
    /// configuration at all, which is the same): at most 50 emails a day.
    pub default_email_account: bool,
    /// `LambdaConfig.CustomMessage` is set: `--client-metadata` reaches that trigger.
    pub custom_message_trigger: bool,
    /// The app clients the run may call, as described.
    pub clients: Vec<ClientProfile>,
}

/// One app client, as `DescribeUserPoolClient` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientProfile {
    /// The client id.
    pub client_id: String,
    /// Its name.
    pub name: Option<String>,
    /// It has a secret: every request needs a SecretHash.
    pub has_secret: bool,
    /// `PreventUserExistenceErrors = ENABLED`: unknown users get a simulated success.
    pub prevents_user_existence_errors: bool,
}

impl PoolProfile {
    /// How the pool compares usernames.
    pub fn case(&self) -> UsernameCase {
        match self.case_sensitive {
            Some(false) => UsernameCase::Insensitive,
            Some(true) | None => UsernameCase::Sensitive,
        }
    }

    /// Whether a row may name a user by something other than the username (an alias, or an
    /// email or phone number used as the username): such rows are resolved before the claim.
    pub fn has_aliases(&self) -> bool {
        !self.alias_attributes.is_empty() || !self.username_attributes.is_empty()
    }

    /// The medium Cognito sends a user's confirmation code by, from the pool's auto-verified
    /// attributes and the user's own: SMS when the phone number is auto-verified and the user
    /// has one (Cognito prefers it when both are), else email when email is auto-verified and
    /// the user has one; `None` when neither applies (Cognito would refuse the resend).
    pub fn medium_for(&self, attributes: &[(String, String)]) -> Option<Medium> {
        let has = |name: &str| attributes.iter().any(|(n, v)| n == name && !v.is_empty());
        let verifies = |name: &str| self.auto_verified.iter().any(|a| a == name);
        if verifies("phone_number") && has("phone_number") {
            Some(Medium::Sms)
        } else if verifies("email") && has("email") {
            Some(Medium::Email)
        } else {
            None
        }
    }

    /// The described client `client_id`, if it was described.
    pub fn client(&self, client_id: &str) -> Option<&ClientProfile> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }
}

impl fmt::Display for PoolProfile {
    /// The profile as `check` and the start of a run print it: one fact a line, each with what
    /// the run does about it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        writeln!(
            f,
            "pool {}{}",
            self.pool_id,
            self.name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        )?;
        writeln!(
            f,
            "  usernames: {} (ledger keys {})",
            match self.case_sensitive {
                Some(false) => "case-insensitive",
                Some(true) => "case-sensitive",
                None => "case-sensitive (no UsernameConfiguration)",
            },
            match self.case() {
                UsernameCase::Insensitive => "folded to lower case",
                UsernameCase::Sensitive => "as written",
            }
        )?;
        writeln!(
            f,
            "  alias attributes: {}; username attributes: {}{}",
            list(&self.alias_attributes),
            list(&self.username_attributes),
            if self.has_aliases() {
                " (rows are resolved to the username with AdminGetUser before the claim)"
            } else {
                ""
            }
        )?;
        writeln!(f, "  auto-verified: {}", list(&self.auto_verified))?;
        writeln!(
            f,
            "  email: {}",
            if self.default_email_account {
                "Cognito's default email account: at most 50 emails a day (the email day cap \
                 unless --max-email-per-day is set)"
            } else {
                "Amazon SES (the pool's own sending limits)"
            }
        )?;
        writeln!(
            f,
            "  CustomMessage trigger: {}",
            if self.custom_message_trigger {
                "yes (--client-metadata reaches it)"
            } else {
                "no (--client-metadata reaches no trigger)"
            }
        )?;
        for c in &self.clients {
            writeln!(
                f,
                "  client {}{}: {}, PreventUserExistenceErrors {}",
                c.client_id,
                c.name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                if c.has_secret {
                    "has a secret"
                } else {
                    "no secret"
                },
                if c.prevents_user_existence_errors {
                    "ENABLED (unknown users get a simulated success)"
                } else {
                    "off"
                }
            )?;
        }
        Ok(())
    }
}

impl PoolAdmin {
    /// Reads the pool's profile and that of each of `client_ids` (read-only calls).
    pub async fn profile(&self, client_ids: &[String]) -> Result<PoolProfile, AdminError> {
        let out = self
            .client()
            .describe_user_pool()
            .user_pool_id(self.pool_id())
            .send()
            .await
            .map_err(classify)?;
        let pool = out.user_pool().ok_or_else(|| {
            AdminError::Failed("DescribeUserPool answered without a UserPool".into())
        })?;
        let mut profile = PoolProfile {
            pool_id: self.pool_id().to_owned(),
            name: pool.name().map(str::to_owned),
            case_sensitive: pool.username_configuration().map(|u| u.case_sensitive()),
            alias_attributes: pool
                .alias_attributes()
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            username_attributes: pool
                .username_attributes()
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            auto_verified: pool
                .auto_verified_attributes()
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            default_email_account: !matches!(
                pool.email_configuration()
                    .and_then(|e| e.email_sending_account()),
                Some(EmailSendingAccountType::Developer)
            ),
            custom_message_trigger: pool
                .lambda_config()
                .and_then(|l| l.custom_message())
                .is_some_and(|arn| !arn.is_empty()),
            clients: Vec::new(),
        };
        for client_id in client_ids {
            let out = self
                .client()
                .describe_user_pool_client()
                .user_pool_id(self.pool_id())
                .client_id(client_id)
                .send()
                .await
                .map_err(classify)?;
            let c = out.user_pool_client().ok_or_else(|| {
                AdminError::Failed("DescribeUserPoolClient answered without a client".into())
            })?;
            profile.clients.push(ClientProfile {
                client_id: client_id.clone(),
                name: c.client_name().map(str::to_owned),
                has_secret: c.client_secret().is_some_and(|s| !s.is_empty()),
                prevents_user_existence_errors: matches!(
                    c.prevent_user_existence_errors(),
                    Some(PreventUserExistenceErrorTypes::Enabled)
                ),
            });
        }
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> PoolProfile {
        PoolProfile {
            pool_id: "eu-west-1_x".into(),
            name: None,
            case_sensitive: Some(false),
            alias_attributes: vec![],
            username_attributes: vec![],
            auto_verified: vec!["email".into()],
            default_email_account: true,
            custom_message_trigger: false,
            clients: vec![],
        }
    }

    fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_medium_follows_the_auto_verified_attributes_sms_first() {
        let mut p = profile();
        let both = attrs(&[("email", "a@example.com"), ("phone_number", "+15550100")]);
        assert_eq!(p.medium_for(&both), Some(Medium::Email));
        p.auto_verified = vec!["email".into(), "phone_number".into()];
        assert_eq!(p.medium_for(&both), Some(Medium::Sms));
        assert_eq!(
            p.medium_for(&attrs(&[("email", "a@example.com")])),
            Some(Medium::Email)
        );
        p.auto_verified.clear();
        assert_eq!(p.medium_for(&both), None);
    }

    #[test]
    fn a_pool_without_username_configuration_is_case_sensitive() {
        let mut p = profile();
        assert_eq!(p.case(), UsernameCase::Insensitive);
        p.case_sensitive = None;
        assert_eq!(p.case(), UsernameCase::Sensitive);
        p.case_sensitive = Some(true);
        assert_eq!(p.case(), UsernameCase::Sensitive);
    }
}
