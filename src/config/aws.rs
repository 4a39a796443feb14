//! `[aws]`: the region and the profile every AWS client (Cognito, SQS, DynamoDB) uses, as the AWS
//! CLI takes them (`--region`, `--profile`). It has no typed form of its own: both are kept with
//! the Cognito settings, which every client is built from.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use clap::Args;
use serde::{Deserialize, Serialize};

use super::value::{non_empty, text, unset};
use super::{Group, SettingsArgs};

/// The `[aws]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "AWS")]
#[serde(deny_unknown_fields, default)]
pub struct AwsArgs {
    /// AWS region (default: the AWS config chain: AWS_REGION, profile, ...).
    #[arg(long, env = "COGNITO_RESEND_AWS_REGION", value_name = "REGION")]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub region: Option<String>,

    /// AWS credentials and config profile, as the AWS CLI's --profile (default: the AWS config
    /// chain: AWS_PROFILE, else `default`). Every AWS client uses it: credentials for the signed
    /// calls (the pool, SQS, DynamoDB), and the profile's region and endpoint_url when not given
    /// here.
    #[arg(long, env = "COGNITO_RESEND_AWS_PROFILE", value_name = "PROFILE")]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub profile: Option<String>,
}

impl AwsArgs {
    /// The built-in defaults: no region, no profile (the AWS config chain finds them).
    pub(super) fn defaults() -> Self {
        Self {
            region: None,
            profile: None,
        }
    }

    /// The region, if one was given.
    pub(super) fn region(&self) -> Option<String> {
        non_empty(self.region.clone())
    }

    /// The profile, if one was given.
    pub(super) fn profile(&self) -> Option<String> {
        non_empty(self.profile.clone())
    }
}

impl Group for AwsArgs {
    const SECTION: &'static str = "aws";
    fn put(self, into: &mut SettingsArgs) {
        into.aws = self;
    }
}
