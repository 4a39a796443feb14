//! Reading the user pool: `ListUsers` (discovery) and `AdminGetUser` (`--precheck`); and the one
//! write an administrator makes, the invitation again (`AdminCreateUser` with `MessageAction =
//! RESEND`, [`PoolAdmin::resend_invitation`]).
//!
//! Unlike `ResendConfirmationCode`, these are authorised by IAM, so this client signs its
//! requests with the standard AWS credential chain (environment, profile, web identity / IRSA,
//! container and instance roles), and [`PoolAdmin::connect`] checks up front that the chain finds
//! credentials, so a missing role is a clear usage error before any work starts.
//!
//! Its SDK retries are off, like the resend client's: the caller retries through
//! [`crate::retry`], the one retry executor, with its own rate limit (ListUsers and
//! AdminGetUser have quotas of their own, lower than the resend's).

use std::time::SystemTime;

use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};

use super::classify::chain;
use crate::retry::{Quota, Verdict};

/// Why a pool call did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// TooManyRequestsException: slow down, retry.
    #[error("{0}")]
    Throttled(String),
    /// 5xx, timeouts, dropped connections: retry.
    #[error("{0}")]
    Transient(String),
    /// Credentials, permissions or the pool id are wrong: every call would fail.
    #[error("{0}")]
    Denied(String),
    /// Anything else (a bad filter, ...): this call fails for good.
    #[error("{0}")]
    Failed(String),
}

impl AdminError {
    /// Whether a retry may help.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Transient(_))
    }
}

/// Throttles and blips are retried; a denial or a refused call is an answer (it used quota)
/// that no retry changes.
impl crate::retry::Classify for AdminError {
    fn verdict(&self, _attempts: u32) -> Verdict {
        match self {
            Self::Throttled(_) => Verdict::Retry(Quota::Throttled),
            Self::Transient(_) => Verdict::Retry(Quota::Unknown),
            Self::Denied(_) | Self::Failed(_) => Verdict::Stop(Quota::Granted),
        }
    }
}

/// A user as ListUsers returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUser {
    /// Username.
    pub username: String,
    /// UserStatus (`UNCONFIRMED`, `CONFIRMED`, ...).
    pub status: String,
    /// UserCreateDate.
    pub created: Option<SystemTime>,
    /// The attributes asked for, as returned.
    pub attributes: Vec<(String, String)>,
}

/// What AdminGetUser says about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserState {
    /// No such user.
    Missing,
    /// The user: the canonical username (an alias or a `sub` asked for resolves to it), the
    /// status and the attributes (`created` is not read).
    Found(PoolUser),
}

/// A signed client for one user pool.
#[derive(Clone)]
pub struct PoolAdmin {
    client: Client,
    pool_id: String,
}

impl PoolAdmin {
    /// Builds the client and checks that the credential chain finds credentials.
    /// `pool_id` is `cognito.user_pool_id`; `why` names what needs the pool in the error when it
    /// is missing.
    pub async fn connect(
        conn: &super::Connection,
        pool_id: Option<&str>,
        why: &str,
    ) -> Result<Self, ConnectError> {
        let pool_id = pool_id
            .map(str::to_owned)
            .ok_or_else(|| ConnectError::Pool(why.to_owned()))?;
        let sdk = super::sdk_config(conn, true).await;
        if sdk.region().is_none() {
            return Err(ConnectError::Region);
        }
        let no_credentials = |detail: String| ConnectError::Credentials {
            why: why.to_owned(),
            detail,
        };
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| no_credentials("none".into()))?;
        if let Err(e) = provider.provide_credentials().await {
            return Err(no_credentials(e.to_string()));
        }
        Ok(Self {
            client: Client::new(&sdk),
            pool_id,
        })
    }

    /// AdminCreateUser with `MessageAction = RESEND`: the invitation again, with a new temporary
    /// password, to a user an administrator created who never signed in (`FORCE_CHANGE_PASSWORD`).
    /// `medium` (EMAIL or SMS), when known, is the one asked for (`DesiredDeliveryMediums`);
    /// without it Cognito uses its default (SMS). Classified like a resend
    /// ([`super::classify::classify_invite_service`]); Cognito's answer names no medium, so the
    /// one asked for is the one reported.
    pub(crate) async fn resend_invitation(
        &self,
        req: &crate::job::ResendRequest,
        medium: Option<&str>,
    ) -> Result<super::Answer, super::CallError> {
        use aws_sdk_cognitoidentityprovider::types::{DeliveryMediumType, MessageActionType};
        let call = self
            .client
            .admin_create_user()
            .user_pool_id(&self.pool_id)
            .username(&req.username)
            .message_action(MessageActionType::Resend)
            .set_desired_delivery_mediums(medium.map(|m| vec![DeliveryMediumType::from(m)]))
            .set_client_metadata(
                (!req.client_metadata.is_empty())
                    .then(|| req.client_metadata.clone().into_iter().collect()),
            );
        match call.send().await {
            Ok(_) => Ok(super::Answer::Sent(crate::job::Delivery {
                medium: medium.map(str::to_owned),
                destination: None,
                attribute: None,
            })),
            Err(e) => super::classify::classify_invite(e),
        }
    }

    /// The pool.
    pub fn pool_id(&self) -> &str {
        &self.pool_id
    }

    /// The SDK client, for the other pool reads of this module's siblings.
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// One page of ListUsers: `filter`, `attributes` (empty = all), after `token`.
    pub async fn list_page(
        &self,
        filter: &str,
        attributes: &[String],
        token: Option<String>,
    ) -> Result<(Vec<PoolUser>, Option<String>), AdminError> {
        let out = self
            .client
            .list_users()
            .user_pool_id(&self.pool_id)
            .filter(filter)
            .limit(60)
            .set_attributes_to_get((!attributes.is_empty()).then(|| attributes.to_vec()))
            .set_pagination_token(token)
            .send()
            .await
            .map_err(classify)?;
        let users = out
            .users()
            .iter()
            .map(|u| PoolUser {
                username: u.username().unwrap_or_default().to_owned(),
                status: u
                    .user_status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                created: u
                    .user_create_date()
                    .and_then(|d| SystemTime::try_from(*d).ok()),
                attributes: u
                    .attributes()
                    .iter()
                    .map(|a| {
                        (
                            a.name().to_owned(),
                            a.value().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
            })
            .collect();
        let next = out
            .pagination_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok((users, next))
    }

    /// AdminGetUser: the user (named by username, alias or `sub`), or that there is no such
    /// user.
    pub async fn user_state(&self, username: &str) -> Result<UserState, AdminError> {
        match self
            .client
            .admin_get_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await
        {
            Ok(out) => Ok(UserState::Found(PoolUser {
                username: out.username().to_owned(),
                status: out
                    .user_status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                created: None,
                attributes: out
                    .user_attributes()
                    .iter()
                    .map(|a| {
                        (
                            a.name().to_owned(),
                            a.value().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
            })),
            Err(e) if e.code() == Some("UserNotFoundException") => Ok(UserState::Missing),
            Err(e) => Err(classify(e)),
        }
    }
}

/// What is missing to read the pool: a usage error, before any work starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// No pool id given; the text names what needs it.
    #[error("{0} needs the user pool: --user-pool-id (cognito.user_pool_id)")]
    Pool(String),
    /// No region from the settings or the environment.
    #[error("no AWS region: set --region (aws.region) or AWS_REGION")]
    Region,
    /// The credential chain found nothing.
    #[error(
        "{why} reads the pool (DescribeUserPool, ListUsers, AdminGetUser), which IAM authorises, \
         but no AWS credentials were found (environment, profile, web identity, container or \
         instance role): {detail}"
    )]
    Credentials {
        /// What needs the pool.
        why: String,
        /// The credential chain's last word.
        detail: String,
    },
}

/// Classifies a pool call's error by the SDK's error code (never by HTTP status alone: Cognito
/// answers most client errors with 400).
pub(super) fn classify<E, R>(err: SdkError<E, R>) -> AdminError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let detail = format!(
                "{}: {}",
                e.code().unwrap_or("UnknownError"),
                e.message().unwrap_or("(no message)")
            );
            match e.code() {
                Some("TooManyRequestsException") => AdminError::Throttled(detail),
                Some("InternalErrorException") => AdminError::Transient(detail),
                Some(
                    "NotAuthorizedException"
                    | "AccessDeniedException"
                    | "ResourceNotFoundException"
                    | "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "ExpiredTokenException"
                    | "MissingAuthenticationTokenException",
                ) => AdminError::Denied(detail),
                _ if detail.starts_with("UnknownError") => AdminError::Transient(detail),
                _ => AdminError::Failed(detail),
            }
        }
        SdkError::ConstructionFailure(_) => {
            AdminError::Failed(format!("request could not be built: {}", chain(&err)))
        }
        _ => AdminError::Transient(chain(&err)),
    }
}
