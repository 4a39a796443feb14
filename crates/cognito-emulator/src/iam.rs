//! What AWS does to an IAM-authorised request before Cognito sees it: refuse one that carries no
//! signature, and refuse one the caller's policies do not allow.
//!
//! The emulator does not verify signatures (any `Authorization` header passes, as any
//! credentials do): it only tells a signed request from an unsigned one, which is the mistake a
//! client can make (calling an admin operation through a client configured without
//! credentials). Denial is a knob: [`IamAction`]s a test marks denied answer
//! `AccessDeniedException` in IAM's words.
//!
//! Sources: *Common Errors* of the AWS API references (`MissingAuthenticationToken`: "The request
//! must contain either a valid (registered) AWS access key ID or X.509 certificate", HTTP 403;
//! `AccessDeniedException`, HTTP 400), the message Cognito's SDK users quote for an unsigned admin
//! call ("Missing Authentication Token"), and IAM's denial as Cognito users quote it ("User:
//! arn:aws:iam::ACCOUNT:user/NAME is not authorized to perform: cognito-idp:ACTION on resource:
//! arn:aws:cognito-idp:REGION:ACCOUNT:userpool/ID because no identity-based policy allows the
//! cognito-idp:ACTION action", status code 400).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use serde::Deserialize;

use super::ops::ApiError;
use super::settings::{EMULATOR_ACCOUNT_ID, PoolSettings};
use super::state::{ErrorCode, Operation, Shared};

/// The message of `MissingAuthenticationTokenException` (HTTP 403).
pub(crate) const MISSING_TOKEN_MESSAGE: &str = "Missing Authentication Token";

/// The IAM principal AccessDenied messages name (the emulator has no real caller identity).
pub(crate) const PRINCIPAL: &str = "user/test";

/// An IAM-authorised operation the emulator implements: what [`crate::EmulatorBuilder::deny`]
/// takes. ResendConfirmationCode is not one (Cognito does not evaluate IAM policies for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IamAction {
    /// `cognito-idp:AdminCreateUser`.
    AdminCreateUser,
    /// `cognito-idp:AdminGetUser`.
    AdminGetUser,
    /// `cognito-idp:ListUsers`.
    ListUsers,
    /// `cognito-idp:DescribeUserPool`.
    DescribeUserPool,
    /// `cognito-idp:DescribeUserPoolClient`.
    DescribeUserPoolClient,
}

impl IamAction {
    /// Every IAM-authorised operation the emulator implements.
    pub const ALL: [IamAction; 5] = [
        Self::AdminCreateUser,
        Self::AdminGetUser,
        Self::ListUsers,
        Self::DescribeUserPool,
        Self::DescribeUserPoolClient,
    ];

    /// The operation name (`cognito-idp:<name>` is the IAM action).
    pub fn as_str(self) -> &'static str {
        self.operation().name()
    }

    fn operation(self) -> Operation {
        match self {
            Self::AdminCreateUser => Operation::AdminCreateUser,
            Self::AdminGetUser => Operation::AdminGetUser,
            Self::ListUsers => Operation::ListUsers,
            Self::DescribeUserPool => Operation::DescribeUserPool,
            Self::DescribeUserPoolClient => Operation::DescribeUserPoolClient,
        }
    }

    fn of(op: Operation) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.operation() == op)
    }
}

/// Which [`IamAction`]s are denied, readable without a lock.
#[derive(Debug, Default)]
pub(crate) struct Denied([AtomicBool; IamAction::ALL.len()]);

impl Denied {
    pub(crate) fn set(&self, action: IamAction, denied: bool) {
        self.0[action as usize].store(denied, Relaxed);
    }

    fn is_denied(&self, action: IamAction) -> bool {
        self.0[action as usize].load(Relaxed)
    }
}

/// Refuses `op` as AWS would before Cognito runs it: without a signature
/// (`MissingAuthenticationTokenException`), or when denied (`AccessDeniedException`).
///
/// Only AdminCreateUser requires a signature here: the emulator's other admin operations have
/// always answered unsigned requests, and its tests rely on it (see docs/emulator.md).
pub(crate) fn authorize(
    shared: &Shared,
    op: Operation,
    signed: bool,
    body: &[u8],
) -> Result<(), ApiError> {
    if op == Operation::AdminCreateUser && !signed {
        return Err(ApiError::new(
            ErrorCode::MissingAuthenticationToken,
            MISSING_TOKEN_MESSAGE,
        ));
    }
    let Some(action) = IamAction::of(op).filter(|a| shared.denied.is_denied(*a)) else {
        return Ok(());
    };
    // The resource is the pool the request names; a body that does not say is answered for
    // the emulator's own pool (the operation would fail validation anyway).
    #[derive(Deserialize)]
    struct PoolOnly {
        #[serde(rename = "UserPoolId")]
        user_pool_id: Option<String>,
    }
    let pool_id = serde_json::from_slice::<PoolOnly>(body)
        .ok()
        .and_then(|p| p.user_pool_id)
        .unwrap_or_else(|| shared.pool_id.clone());
    Err(ApiError::new(
        ErrorCode::AccessDenied,
        denial_message(action, &pool_id),
    ))
}

/// IAM's message for a denied action on a user pool.
pub(crate) fn denial_message(action: IamAction, pool_id: &str) -> String {
    let name = action.as_str();
    format!(
        "User: arn:aws:iam::{EMULATOR_ACCOUNT_ID}:{PRINCIPAL} is not authorized to perform: \
         cognito-idp:{name} on resource: {} because no identity-based policy allows the \
         cognito-idp:{name} action",
        PoolSettings::pool_arn(pool_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_names_the_action_and_the_pool() {
        assert_eq!(
            denial_message(IamAction::AdminCreateUser, "us-east-1_Emulator"),
            "User: arn:aws:iam::123456789012:user/test is not authorized to perform: \
             cognito-idp:AdminCreateUser on resource: \
             arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_Emulator because no \
             identity-based policy allows the cognito-idp:AdminCreateUser action"
        );
        let denied = Denied::default();
        denied.set(IamAction::ListUsers, true);
        assert!(denied.is_denied(IamAction::ListUsers));
        assert!(!denied.is_denied(IamAction::AdminCreateUser));
        assert_eq!(IamAction::of(Operation::ResendConfirmationCode), None);
        assert_eq!(
            IamAction::of(Operation::AdminCreateUser),
            Some(IamAction::AdminCreateUser)
        );
    }
}
