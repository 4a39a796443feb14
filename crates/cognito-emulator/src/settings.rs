//! The user pool's own settings, as `DescribeUserPool` reports them and as the operations obey
//! them: username case sensitivity, sign-in aliases, username attributes, auto-verified
//! attributes (which medium a code goes by), the email sending account (and its daily limit),
//! and a custom message trigger.
//!
//! Names and values are Cognito's wire names (`UserPoolType` in the API reference).

use std::fmt;
use std::str::FromStr;

/// Cognito's documented limit for a pool that sends with the default email account
/// (`EmailSendingAccount` `COGNITO_DEFAULT`): "Maximum number of email messages sent daily per
/// AWS account: 50" (Quotas in Amazon Cognito).
pub const COGNITO_DEFAULT_DAILY_EMAILS: u64 = 50;

/// The AWS account id in the ARNs the emulator reports (the documentation's example account).
pub const EMULATOR_ACCOUNT_ID: &str = "123456789012";

/// Implements `as_str`, `Display` and `FromStr` (exact wire name, ASCII case-insensitive) for a
/// fieldless enum of wire names.
macro_rules! wire_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $wire:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order Cognito's model lists them.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name Cognito puts on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $wire),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim();
                $ty::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| {
                        let names: Vec<&str> = $ty::ALL.iter().map(|v| v.as_str()).collect();
                        format!("{s:?} is not {} (one of {})", $what, names.join(", "))
                    })
            }
        }
    };
}

/// An attribute users can sign in with in place of their username (`AliasAttributes`).
///
/// Cognito: "Phone numbers and email addresses only become active aliases for a user after the
/// phone numbers and email addresses are verified"; a `preferred_username` is an alias as soon
/// as it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AliasAttribute {
    /// `phone_number` (only once `phone_number_verified` is `"true"`).
    PhoneNumber,
    /// `email` (only once `email_verified` is `"true"`).
    Email,
    /// `preferred_username`.
    PreferredUsername,
}

wire_enum!(AliasAttribute, "an alias attribute", {
    PhoneNumber => "phone_number",
    Email => "email",
    PreferredUsername => "preferred_username",
});

/// An attribute users sign up and sign in with as their username (`UsernameAttributes`); the
/// canonical username is then a UUID. Verification is not needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsernameAttribute {
    /// `phone_number`.
    PhoneNumber,
    /// `email`.
    Email,
}

wire_enum!(UsernameAttribute, "a username attribute", {
    PhoneNumber => "phone_number",
    Email => "email",
});

/// An attribute the pool verifies by sending a code (`AutoVerifiedAttributes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerifiedAttribute {
    /// `phone_number`: codes by SMS.
    PhoneNumber,
    /// `email`: codes by email.
    Email,
}

wire_enum!(VerifiedAttribute, "an auto-verified attribute", {
    PhoneNumber => "phone_number",
    Email => "email",
});

/// Who sends the pool's email (`EmailConfiguration.EmailSendingAccount`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EmailSendingAccount {
    /// `COGNITO_DEFAULT`: Cognito's built-in email, limited to
    /// [`COGNITO_DEFAULT_DAILY_EMAILS`] a day.
    CognitoDefault,
    /// `DEVELOPER`: the account's own Amazon SES identity (`SourceArn`); the emulator's
    /// default, with no email limit unless one is set.
    #[default]
    Developer,
}

wire_enum!(EmailSendingAccount, "an email sending account", {
    CognitoDefault => "COGNITO_DEFAULT",
    Developer => "DEVELOPER",
});

/// Parses a comma-separated list of wire names; empty or `none` is the empty list.
pub fn parse_list<T: FromStr<Err = String>>(s: &str) -> Result<Vec<T>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut out: Vec<T> = Vec::new();
    for part in s.split(',') {
        out.push(part.parse()?);
    }
    Ok(out)
}

/// The pool's settings, fixed when the emulator starts.
#[derive(Debug, Clone)]
pub(crate) struct PoolSettings {
    pub(crate) name: String,
    /// `UsernameConfiguration.CaseSensitive`; `None` leaves it unset (case-sensitive, and
    /// DescribeUserPool omits `UsernameConfiguration`).
    pub(crate) case_sensitive: Option<bool>,
    pub(crate) alias_attributes: Vec<AliasAttribute>,
    pub(crate) username_attributes: Vec<UsernameAttribute>,
    pub(crate) auto_verified: Vec<VerifiedAttribute>,
    pub(crate) email_account: EmailSendingAccount,
    pub(crate) email_source_arn: Option<String>,
    pub(crate) custom_message_arn: Option<String>,
    /// The CustomMessage trigger's function throws for a request whose `ClientMetadata` has
    /// this key and value (only with a trigger set).
    pub(crate) custom_message_fails_when: Option<(String, String)>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            name: "emulator".to_owned(),
            case_sensitive: None,
            alias_attributes: Vec::new(),
            username_attributes: Vec::new(),
            auto_verified: vec![VerifiedAttribute::Email, VerifiedAttribute::PhoneNumber],
            email_account: EmailSendingAccount::default(),
            email_source_arn: None,
            custom_message_arn: None,
            custom_message_fails_when: None,
        }
    }
}

impl PoolSettings {
    /// Whether usernames (and the email and preferred_username aliases) match whatever their
    /// case: only when `CaseSensitive` is explicitly false.
    pub(crate) fn case_insensitive(&self) -> bool {
        self.case_sensitive == Some(false)
    }

    /// The lookup key for a username or alias: folded with `str::to_lowercase` in a
    /// case-insensitive pool.
    pub(crate) fn fold<'a>(&self, s: &'a str) -> std::borrow::Cow<'a, str> {
        if self.case_insensitive() {
            std::borrow::Cow::Owned(s.to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(s)
        }
    }

    pub(crate) fn alias(&self, a: AliasAttribute) -> bool {
        self.alias_attributes.contains(&a)
    }

    pub(crate) fn username_attribute(&self, a: UsernameAttribute) -> bool {
        self.username_attributes.contains(&a)
    }

    pub(crate) fn verifies(&self, a: VerifiedAttribute) -> bool {
        self.auto_verified.contains(&a)
    }

    /// Settings Cognito itself refuses.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !self.alias_attributes.is_empty() && !self.username_attributes.is_empty() {
            return Err(
                "AliasAttributes and UsernameAttributes can't both be set: a Cognito user \
                        pool has one or the other"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// `arn:aws:cognito-idp:REGION:ACCOUNT:userpool/ID`, the region being the pool id's prefix.
    pub(crate) fn pool_arn(pool_id: &str) -> String {
        let region = pool_id.split('_').next().unwrap_or("us-east-1");
        format!("arn:aws:cognito-idp:{region}:{EMULATOR_ACCOUNT_ID}:userpool/{pool_id}")
    }

    /// The `SourceArn` DescribeUserPool reports: the one given, or for `DEVELOPER` an SES
    /// identity in the pool's region.
    pub(crate) fn source_arn(&self, pool_id: &str) -> Option<String> {
        if let Some(arn) = &self.email_source_arn {
            return Some(arn.clone());
        }
        (self.email_account == EmailSendingAccount::Developer).then(|| {
            let region = pool_id.split('_').next().unwrap_or("us-east-1");
            format!("arn:aws:ses:{region}:{EMULATOR_ACCOUNT_ID}:identity/no-reply@example.com")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_parse_and_print() {
        assert_eq!("email".parse(), Ok(AliasAttribute::Email));
        assert_eq!(
            "PREFERRED_USERNAME".parse(),
            Ok(AliasAttribute::PreferredUsername)
        );
        assert!("preferred_username".parse::<UsernameAttribute>().is_err());
        assert_eq!(
            "cognito_default".parse(),
            Ok(EmailSendingAccount::CognitoDefault)
        );
        assert_eq!(EmailSendingAccount::Developer.to_string(), "DEVELOPER");
        assert_eq!(
            parse_list::<VerifiedAttribute>("email, phone_number"),
            Ok(vec![
                VerifiedAttribute::Email,
                VerifiedAttribute::PhoneNumber
            ])
        );
        assert_eq!(parse_list::<VerifiedAttribute>("none"), Ok(vec![]));
        assert_eq!(parse_list::<VerifiedAttribute>(""), Ok(vec![]));
        assert!(parse_list::<VerifiedAttribute>("email,sms").is_err());
    }

    #[test]
    fn arns_follow_the_pool_region() {
        assert_eq!(
            PoolSettings::pool_arn("eu-west-1_abc"),
            "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_abc"
        );
        let s = PoolSettings::default();
        assert_eq!(
            s.source_arn("eu-west-1_abc").as_deref(),
            Some("arn:aws:ses:eu-west-1:123456789012:identity/no-reply@example.com")
        );
        let s = PoolSettings {
            email_account: EmailSendingAccount::CognitoDefault,
            ..PoolSettings::default()
        };
        assert_eq!(s.source_arn("eu-west-1_abc"), None);
    }
}
