//! The retry *policy*: what a ResendConfirmationCode (or, for an invitation, an AdminCreateUser
//! RESEND) result means.
//!
//! Classification uses the SDK's typed error and its `code()`, never the HTTP status (Cognito
//! answers most client errors with 400). Messages are read only where Cognito uses one error
//! name for different situations: "already confirmed" and "auto verification off" among
//! InvalidParameterException, and the per-user attempt limit versus the exhausted account email
//! quota among LimitExceededException.
//!
//! A transient error is one of three kinds, because a retry after the last may send a second
//! code, and the first, before anything was ever answered, is a wrong endpoint rather than a
//! blip. [`CallError::Unreachable`]: no connection could be made (refused, a DNS lookup or a TLS
//! handshake that failed, a connect timeout), so nothing was sent. [`CallError::Transient`]: the
//! request cannot have reached Cognito otherwise (a request that could not be sent).
//! [`CallError::Ambiguous`]: Cognito may have acted (the attempt timed out after the request was
//! written, the connection closed before the answer, an answer we could not read,
//! InternalErrorException or another 5xx). The engine retries both, and reports a job with an
//! ambiguous attempt as in doubt. Throttling and every 4xx are answers: Cognito did not act.

use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentityprovider::operation::admin_create_user::AdminCreateUserError as I;
use aws_sdk_cognitoidentityprovider::operation::resend_confirmation_code::ResendConfirmationCodeError as E;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::retry::ErrorKind;

use crate::job::Reason;

/// A definitive answer about the user: the job ends here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The code was sent (or, with PreventUserExistenceErrors, Cognito pretended so).
    Sent(crate::job::Delivery),
    /// InvalidParameterException "User is already confirmed."
    AlreadyConfirmed,
    /// UserNotFoundException.
    NotFound,
    /// UnsupportedUserStateException to an invitation: the user is no longer
    /// `FORCE_CHANGE_PASSWORD` (they signed in since they were found).
    NotInvited,
}

/// A configuration problem: every further call would fail the same way, so the run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Misconfiguration {
    /// NotAuthorizedException: missing or wrong SecretHash (or the client forbids this flow).
    NotAuthorized,
    /// ResourceNotFoundException: the app client (or pool) does not exist in this region.
    UnknownClient,
    /// InvalidParameterException "Cannot resend codes. Auto verification not turned on."
    AutoVerifyOff,
    /// Invalid*RoleAccessPolicy / InvalidSmsRoleTrustRelationship: the pool's IAM roles.
    RolePolicy,
    /// ForbiddenException: AWS WAF blocked the request.
    Forbidden,
    /// OperationNotEnabledException.
    OperationNotEnabled,
    /// LimitExceededException "Exceeded daily email limit ...": the account's email quota is spent.
    EmailQuota,
    /// `--precheck`'s AdminGetUser was refused: credentials, IAM permissions or the pool id.
    PoolAccess,
    /// CodeDeliveryFailureException for user after user: the pool's email or SMS sending is
    /// broken (an SES identity, an SNS setup), not the users' addresses.
    DeliveryBroken,
    /// InvalidLambdaResponseException / UserLambdaValidationException for user after user: a
    /// Lambda trigger of the pool is broken.
    TriggerBroken,
    /// No connection to Cognito could be made (refused, DNS, TLS, connect timeout) for a few
    /// seconds, and no call of the run was ever answered: the endpoint, the region, a proxy or
    /// the network is wrong. Judged by time, not by a count (see `engine`, "Stopping").
    Unreachable,
    /// An invitation's AdminCreateUser was refused as IAM refuses (AccessDeniedException,
    /// NotAuthorizedException, an unsigned request) or the pool was not found: the run's
    /// credentials cannot send invitations to this pool.
    InviteAccess,
}

impl Misconfiguration {
    /// Every kind.
    pub const ALL: [Misconfiguration; 12] = [
        Self::NotAuthorized,
        Self::UnknownClient,
        Self::AutoVerifyOff,
        Self::RolePolicy,
        Self::Forbidden,
        Self::OperationNotEnabled,
        Self::EmailQuota,
        Self::PoolAccess,
        Self::DeliveryBroken,
        Self::TriggerBroken,
        Self::Unreachable,
        Self::InviteAccess,
    ];

    /// The `reason` of the `failed` outcome of the job that met it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotAuthorized => "not_authorized",
            Self::UnknownClient => "unknown_client",
            Self::AutoVerifyOff => "auto_verify_off",
            Self::RolePolicy => "role_policy",
            Self::Forbidden => "forbidden",
            Self::OperationNotEnabled => "operation_not_enabled",
            Self::EmailQuota => "email_quota",
            Self::PoolAccess => "pool_access",
            Self::DeliveryBroken => "delivery_broken",
            Self::TriggerBroken => "trigger_broken",
            Self::Unreachable => "unreachable",
            Self::InviteAccess => "invite_access",
        }
    }

    /// What the operator should do, for the message that ends the run.
    pub fn fix(self) -> &'static str {
        match self {
            Self::NotAuthorized => {
                "the SecretHash was missing or wrong: if the app client has a secret, give it with \
                 --client-secret-file or COGNITO_RESEND_CLIENT_SECRET, and check it belongs to this \
                 client id"
            }
            Self::UnknownClient => {
                "no such app client: check --client-id (or the jobs' client_id) and --region"
            }
            Self::AutoVerifyOff => {
                "the user pool does not verify email or phone automatically; turn on attribute \
                 verification (AutoVerifiedAttributes) for the pool"
            }
            Self::RolePolicy => {
                "the user pool's SMS or email role is misconfigured; fix its IAM role, trust \
                 relationship or policy"
            }
            Self::Forbidden => "AWS WAF blocked the requests; check the web ACL of the user pool",
            Self::OperationNotEnabled => "the operation is not enabled for this user pool",
            Self::EmailQuota => {
                "the account's daily email quota is spent; configure the user pool to send email \
                 through Amazon SES (EmailSendingAccount DEVELOPER), or wait for the quota to reset"
            }
            Self::PoolAccess => {
                "--precheck cannot read the pool: give the credentials cognito-idp:AdminGetUser on \
                 it, and check --user-pool-id and --region"
            }
            Self::DeliveryBroken => {
                "Cognito could not deliver codes to user after user: check the user pool's email \
                 configuration (SES identity, sending authorisation) or SMS role and spending limit"
            }
            Self::TriggerBroken => {
                "a Lambda trigger of the user pool fails for user after user (custom message, \
                 pre sign-up, ...): fix the trigger"
            }
            Self::Unreachable => {
                "check the endpoint (--cognito-endpoint), the region (--region), any proxy \
                 in between, and that the network lets this host reach it"
            }
            Self::InviteAccess => {
                "invitations (action invite) call AdminCreateUser, which IAM authorises: give \
                 the run's credentials cognito-idp:AdminCreateUser on the user pool, and check \
                 --user-pool-id and --region"
            }
        }
    }

    /// How many in a row (for one client id, with no success between) stop the run. The email
    /// quota message is unambiguous, so one suffices; the other configuration errors, a few. A
    /// delivery or trigger failure can be one user's own (an address that bounces, a trigger
    /// rejecting one user), so it takes [`STORM`] of them, across users, to call it broken.
    pub fn stop_after(self) -> u32 {
        match self {
            Self::EmailQuota => 1,
            Self::DeliveryBroken | Self::TriggerBroken => STORM,
            _ => 3,
        }
    }
}

/// Delivery or trigger failures in a row, across users of one client id, that stop the run
/// (`delivery_broken` / `trigger_broken`). Ten users in a row failing the same way, with no
/// success between, is a broken pool rather than ten bad addresses; a success resets the count.
pub(crate) const STORM: u32 = 10;

impl Misconfiguration {
    /// Whether this kind is a storm of per-user failures ([`STORM`]) rather than one error that
    /// is wrong for every call.
    pub fn is_storm(self) -> bool {
        matches!(self, Self::DeliveryBroken | Self::TriggerBroken)
    }
}

/// Why a call did not produce an [`Answer`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// TooManyRequestsException: retry later, and slow down.
    #[error("{0}")]
    Throttled(String),
    /// No connection to Cognito could be made (refused, DNS, TLS, connect timeout): nothing was
    /// sent. Retried; but before any call of the run has been answered, the engine takes it for
    /// a wrong endpoint, region or network and stops (see `engine`, "Stopping"). The detail
    /// names the endpoint and the region.
    #[error("{0}")]
    Unreachable(String),
    /// A transient failure Cognito cannot have acted on (it never got the request, or refused
    /// it first): retry.
    #[error("{0}")]
    Transient(String),
    /// A transient failure Cognito may have acted on (a timeout after the request was written,
    /// a connection closed before the answer, a 5xx): retry, but the user may already hold a
    /// code, so the job is in doubt.
    #[error("{0}")]
    Ambiguous(String),
    /// UnexpectedLambdaException: retried, but only a few times.
    #[error("{0}")]
    LambdaUnavailable(String),
    /// LimitExceededException "Attempt limit exceeded": this user's resend limit; do not retry.
    #[error("{0}")]
    AttemptLimit(String),
    /// An error retrying cannot fix; the job fails with this reason.
    #[error("{detail}")]
    Permanent {
        /// Short machine-readable reason.
        reason: Reason,
        /// Code and message.
        detail: String,
    },
    /// A permanent failure for this user (CodeDeliveryFailureException, a Lambda trigger error)
    /// that, repeated across users, means the pool is broken: `kind` counts toward stopping.
    #[error("{detail}")]
    Broken {
        /// Short machine-readable reason of this job's `failed` outcome.
        reason: Reason,
        /// What a storm of them means.
        kind: Misconfiguration,
        /// Code and message.
        detail: String,
    },
    /// The configuration is wrong: the run stops.
    #[error("{detail}")]
    Misconfigured {
        /// Which problem.
        kind: Misconfiguration,
        /// Code and message.
        detail: String,
    },
}

const ALREADY_CONFIRMED: &str = "already confirmed";
const AUTO_VERIFY_OFF: &str = "auto verification not turned on";
const EMAIL_QUOTA: &str = "daily email limit";

fn detail(e: &impl ProvideErrorMetadata) -> String {
    format!(
        "{}: {}",
        e.code().unwrap_or("UnknownError"),
        e.message().unwrap_or("(no message)")
    )
}

fn message_has(e: &impl ProvideErrorMetadata, needle: &str) -> bool {
    e.message()
        .is_some_and(|m| m.to_ascii_lowercase().contains(needle))
}

/// Classifies a service error (an error response Cognito sent).
pub(crate) fn classify_service(err: &E, status: u16) -> Result<Answer, CallError> {
    let d = detail(err);
    let misconfigured = |kind| {
        Err(CallError::Misconfigured {
            kind,
            detail: d.clone(),
        })
    };
    let permanent = |reason| {
        Err(CallError::Permanent {
            reason,
            detail: d.clone(),
        })
    };
    match err {
        E::UserNotFoundException(_) => Ok(Answer::NotFound),
        E::InvalidParameterException(e) if message_has(e, ALREADY_CONFIRMED) => {
            Ok(Answer::AlreadyConfirmed)
        }
        E::InvalidParameterException(e) if message_has(e, AUTO_VERIFY_OFF) => {
            misconfigured(Misconfiguration::AutoVerifyOff)
        }
        E::InvalidParameterException(_) => permanent(Reason::InvalidParameter),
        E::TooManyRequestsException(_) => Err(CallError::Throttled(d)),
        // Cognito's own failure, possibly after it acted.
        E::InternalErrorException(_) => Err(CallError::Ambiguous(d)),
        E::UnexpectedLambdaException(_) => Err(CallError::LambdaUnavailable(d)),
        E::LimitExceededException(e) if message_has(e, EMAIL_QUOTA) => {
            misconfigured(Misconfiguration::EmailQuota)
        }
        // "Attempt limit exceeded, please try after some time." — and any other wording: a
        // limit is never a hot retry.
        E::LimitExceededException(_) => Err(CallError::AttemptLimit(d)),
        E::NotAuthorizedException(_) => misconfigured(Misconfiguration::NotAuthorized),
        E::ResourceNotFoundException(_) => misconfigured(Misconfiguration::UnknownClient),
        E::ForbiddenException(_) => misconfigured(Misconfiguration::Forbidden),
        E::OperationNotEnabledException(_) => misconfigured(Misconfiguration::OperationNotEnabled),
        E::InvalidEmailRoleAccessPolicyException(_)
        | E::InvalidSmsRoleAccessPolicyException(_)
        | E::InvalidSmsRoleTrustRelationshipException(_) => {
            misconfigured(Misconfiguration::RolePolicy)
        }
        E::CodeDeliveryFailureException(_) => Err(CallError::Broken {
            reason: Reason::CodeDeliveryFailure,
            kind: Misconfiguration::DeliveryBroken,
            detail: d,
        }),
        E::InvalidLambdaResponseException(_) | E::UserLambdaValidationException(_) => {
            Err(CallError::Broken {
                reason: Reason::LambdaError,
                kind: Misconfiguration::TriggerBroken,
                detail: d,
            })
        }
        // An error this SDK version does not model. Its name is all we have; a 5xx is the
        // service's own trouble, worth a retry, and may have come after it acted; anything else
        // is not retried.
        _ if status >= 500 => Err(CallError::Ambiguous(d)),
        _ => permanent(Reason::UnexpectedError),
    }
}

/// Classifies an error response to an invitation (AdminCreateUser, MessageAction RESEND). The
/// same kinds as a resend's where Cognito means the same; what differs: the user is no longer
/// invited (`UnsupportedUserStateException`, an answer), and a refusal by IAM or an unknown pool
/// is the run's credentials, not the app client.
pub(crate) fn classify_invite_service(err: &I, status: u16) -> Result<Answer, CallError> {
    let d = detail(err);
    let misconfigured = |kind| {
        Err(CallError::Misconfigured {
            kind,
            detail: d.clone(),
        })
    };
    // IAM's refusals are not in the operation's model: by their code.
    if matches!(
        err.code(),
        Some(
            "AccessDeniedException"
                | "MissingAuthenticationTokenException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException"
        )
    ) {
        return misconfigured(Misconfiguration::InviteAccess);
    }
    // Not in the operation's model either, but sent: the account's email quota (an invitation
    // by email counts toward it), or another limit, which is never a hot retry.
    if err.code() == Some("LimitExceededException") {
        if message_has(err, EMAIL_QUOTA) {
            return misconfigured(Misconfiguration::EmailQuota);
        }
        return Err(CallError::AttemptLimit(d));
    }
    match err {
        I::UserNotFoundException(_) => Ok(Answer::NotFound),
        I::UnsupportedUserStateException(_) => Ok(Answer::NotInvited),
        I::InvalidParameterException(_) => Err(CallError::Permanent {
            reason: Reason::InvalidParameter,
            detail: d,
        }),
        I::TooManyRequestsException(_) => Err(CallError::Throttled(d)),
        I::InternalErrorException(_) => Err(CallError::Ambiguous(d)),
        I::UnexpectedLambdaException(_) => Err(CallError::LambdaUnavailable(d)),
        I::NotAuthorizedException(_) | I::ResourceNotFoundException(_) => {
            misconfigured(Misconfiguration::InviteAccess)
        }
        I::InvalidSmsRoleAccessPolicyException(_)
        | I::InvalidSmsRoleTrustRelationshipException(_) => {
            misconfigured(Misconfiguration::RolePolicy)
        }
        I::CodeDeliveryFailureException(_) => Err(CallError::Broken {
            reason: Reason::CodeDeliveryFailure,
            kind: Misconfiguration::DeliveryBroken,
            detail: d,
        }),
        I::InvalidLambdaResponseException(_) | I::UserLambdaValidationException(_) => {
            Err(CallError::Broken {
                reason: Reason::LambdaError,
                kind: Misconfiguration::TriggerBroken,
                detail: d,
            })
        }
        _ if status >= 500 => Err(CallError::Ambiguous(d)),
        _ => Err(CallError::Permanent {
            reason: Reason::UnexpectedError,
            detail: d,
        }),
    }
}

/// Classifies anything the SDK returned as an error of a resend.
pub(crate) fn classify(err: SdkError<E, Response>) -> Result<Answer, CallError> {
    classify_with(err, classify_service)
}

/// Classifies anything the SDK returned as an error of an invitation.
pub(crate) fn classify_invite(err: SdkError<I, Response>) -> Result<Answer, CallError> {
    classify_with(err, classify_invite_service)
}

/// Classifies anything the SDK returned as an error: a service error by `service`, the rest
/// (connections, timeouts, unreadable answers) alike for every operation.
fn classify_with<X>(
    err: SdkError<X, Response>,
    service: fn(&X, u16) -> Result<Answer, CallError>,
) -> Result<Answer, CallError>
where
    X: std::error::Error + 'static,
{
    use CallError::{Ambiguous, Transient, Unreachable};
    let connecting = match &err {
        SdkError::DispatchFailure(_) => connect_failed(&err),
        _ => None,
    };
    let (what, kind): (_, fn(String) -> CallError) = match &err {
        SdkError::ServiceError(se) => {
            return service(se.err(), se.raw().status().as_u16());
        }
        // The whole attempt ran out of time; the request may well have been written and acted on.
        SdkError::TimeoutError(_) => ("attempt timed out", Ambiguous),
        // No connection was made: nothing was sent.
        SdkError::DispatchFailure(f) if f.is_timeout() => ("connect timeout", Unreachable),
        SdkError::DispatchFailure(_) if connecting.is_some() => {
            (connecting.unwrap_or_default(), Unreachable)
        }
        // hyper reports a connection closed before the answer as a transient "other" error (or
        // an I/O one, a reset). The request may have been written and carried out.
        SdkError::DispatchFailure(f)
            if f.is_io() || matches!(f.as_other(), Some(ErrorKind::TransientError)) =>
        {
            ("connection failed or dropped", Ambiguous)
        }
        SdkError::DispatchFailure(f) if f.is_user() => ("request could not be sent", Transient),
        SdkError::DispatchFailure(_) => ("request could not be sent", Ambiguous),
        // An answer we could not read (a truncated or garbled response): the connection's
        // trouble, not the user's, and Cognito answered, so it may have acted.
        SdkError::ResponseError(_) => ("unreadable response", Ambiguous),
        SdkError::ConstructionFailure(_) => {
            return Err(CallError::Permanent {
                reason: Reason::InvalidRequest,
                detail: format!("request could not be built: {}", chain(&err)),
            });
        }
        _ => ("unexpected SDK error", Ambiguous),
    };
    Err(kind(format!("{what}: {}", chain(&err))))
}

/// Whether a dispatch failure happened while connecting, so no byte of the request left, and
/// how: refused or unreachable (the operating system's refusal, an I/O error of that kind
/// somewhere in the chain of the HTTP client's errors), or any failure of the HTTP client's
/// connect step (a DNS lookup, a TLS handshake, a proxy's tunnel). Checked against a refused
/// connection and a failed handshake in `cognito::tests`.
fn connect_failed(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    if never_connected(err) {
        return Some("connection refused");
    }
    let mut connecting = false;
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect)
        {
            connecting = true;
        }
        // The TLS stack reports a failed handshake (garbage, a certificate refused) as invalid
        // data: a plain TCP connect never does.
        if connecting
            && e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return Some("TLS handshake failed");
        }
        cur = e.source();
    }
    connecting.then_some("could not connect")
}

/// Whether the operating system refused the connection (or found no route to it).
fn never_connected(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            )
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The error and its sources, joined: the SDK's outer errors say little on their own.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cognitoidentityprovider::types::error as te;

    fn svc(err: E, status: u16) -> Result<Answer, CallError> {
        let raw = Response::new(
            status.try_into().expect("valid status"),
            aws_smithy_types::body::SdkBody::empty(),
        );
        classify(SdkError::service_error(err, raw))
    }

    macro_rules! err {
        // As the SDK's parser builds them: the message both in the shape and in the metadata.
        ($variant:ident, $msg:expr) => {
            E::$variant(
                te::$variant::builder()
                    .message($msg)
                    .meta(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code(stringify!($variant))
                            .message($msg)
                            .build(),
                    )
                    .build(),
            )
        };
    }

    fn misconf(r: Result<Answer, CallError>) -> Misconfiguration {
        match r {
            Err(CallError::Misconfigured { kind, .. }) => kind,
            other => panic!("expected a misconfiguration, got {other:?}"),
        }
    }

    fn permanent(r: Result<Answer, CallError>) -> String {
        match r {
            Err(CallError::Permanent { reason, .. }) => reason.to_string(),
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    fn broken(r: Result<Answer, CallError>) -> (Reason, Misconfiguration) {
        match r {
            Err(CallError::Broken { reason, kind, .. }) => (reason, kind),
            other => {
                panic!("expected a per-user failure that counts toward a storm, got {other:?}")
            }
        }
    }

    #[test]
    fn every_error_of_the_operation_model_is_classified() {
        use Misconfiguration as M;
        assert_eq!(
            svc(
                err!(
                    UserNotFoundException,
                    "Username/client id combination not found."
                ),
                400
            ),
            Ok(Answer::NotFound)
        );
        assert_eq!(
            svc(
                err!(InvalidParameterException, "User is already confirmed."),
                400
            ),
            Ok(Answer::AlreadyConfirmed)
        );
        assert_eq!(
            misconf(svc(
                err!(
                    InvalidParameterException,
                    "Cannot resend codes. Auto verification not turned on."
                ),
                400
            )),
            M::AutoVerifyOff
        );
        assert_eq!(
            permanent(svc(
                err!(
                    InvalidParameterException,
                    "1 validation error detected: Value at 'username' failed"
                ),
                400
            )),
            "invalid_parameter"
        );
        assert!(matches!(
            svc(err!(TooManyRequestsException, "Rate exceeded"), 400),
            Err(CallError::Throttled(m)) if m == "TooManyRequestsException: Rate exceeded"
        ));
        // Cognito's own failure may come after it acted.
        assert!(matches!(
            svc(err!(InternalErrorException, "Internal server error."), 500),
            Err(CallError::Ambiguous(_))
        ));
        assert!(matches!(
            svc(err!(UnexpectedLambdaException, "boom"), 400),
            Err(CallError::LambdaUnavailable(_))
        ));
        assert!(matches!(
            svc(
                err!(
                    LimitExceededException,
                    "Attempt limit exceeded, please try after some time."
                ),
                400
            ),
            Err(CallError::AttemptLimit(_))
        ));
        assert_eq!(
            misconf(svc(
                err!(
                    LimitExceededException,
                    "Exceeded daily email limit for the operation or the account. If a higher limit is required, please configure your user pool to use your own Amazon SES configuration for sending email."
                ),
                400
            )),
            M::EmailQuota
        );
        assert_eq!(
            misconf(svc(
                err!(
                    NotAuthorizedException,
                    "Unable to verify secret hash for client abc"
                ),
                400
            )),
            M::NotAuthorized
        );
        assert_eq!(
            misconf(svc(
                err!(
                    ResourceNotFoundException,
                    "User pool client abc does not exist."
                ),
                400
            )),
            M::UnknownClient
        );
        assert_eq!(
            misconf(svc(err!(ForbiddenException, "waf"), 403)),
            M::Forbidden
        );
        assert_eq!(
            misconf(svc(err!(OperationNotEnabledException, "no"), 400)),
            M::OperationNotEnabled
        );
        for e in [
            err!(InvalidEmailRoleAccessPolicyException, "x"),
            err!(InvalidSmsRoleAccessPolicyException, "x"),
            err!(InvalidSmsRoleTrustRelationshipException, "x"),
        ] {
            assert_eq!(misconf(svc(e, 400)), M::RolePolicy);
        }
        assert_eq!(
            broken(svc(err!(CodeDeliveryFailureException, "x"), 400)),
            (Reason::CodeDeliveryFailure, M::DeliveryBroken)
        );
        assert_eq!(
            broken(svc(err!(InvalidLambdaResponseException, "x"), 400)),
            (Reason::LambdaError, M::TriggerBroken)
        );
        assert_eq!(
            broken(svc(err!(UserLambdaValidationException, "x"), 400)),
            (Reason::LambdaError, M::TriggerBroken)
        );
    }

    #[test]
    fn unmodelled_errors_go_by_class_not_status_for_modelled_ones() {
        let unknown = || {
            E::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("SomethingNewException")
                    .message("new")
                    .build(),
            )
        };
        assert!(matches!(svc(unknown(), 503), Err(CallError::Ambiguous(_))));
        assert_eq!(permanent(svc(unknown(), 400)), "unexpected_error");
        // A modelled client error keeps its class whatever the status says.
        assert_eq!(
            svc(err!(UserNotFoundException, "x"), 500),
            Ok(Answer::NotFound)
        );
    }

    #[test]
    fn timeouts_and_dropped_connections_are_ambiguous_refusals_are_not() {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let t: SdkError<E, Response> = SdkError::timeout_error("slow");
        assert!(matches!(classify(t), Err(CallError::Ambiguous(_))));
        let d: SdkError<E, Response> =
            SdkError::dispatch_failure(ConnectorError::io("reset".into()));
        assert!(matches!(classify(d), Err(CallError::Ambiguous(m)) if m.contains("dropped")));
        let refused: SdkError<E, Response> = SdkError::dispatch_failure(ConnectorError::io(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        ));
        assert!(matches!(classify(refused), Err(CallError::Unreachable(_))));
        let connect_timeout: SdkError<E, Response> =
            SdkError::dispatch_failure(ConnectorError::timeout("connect".into()));
        assert!(matches!(
            classify(connect_timeout),
            Err(CallError::Unreachable(_))
        ));
    }
}
