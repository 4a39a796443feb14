//! The one place that talks to Cognito.
//!
//! The SDK client is built with its own retries off (our engine is the one retry layer: the
//! SDK's standard retry treats LimitExceededException as throttling and would burn the user's
//! few resend attempts) but with a connect timeout and a per-attempt timeout, so a hung call
//! cannot hold a concurrency permit. ResendConfirmationCode is not authorised by IAM, so the
//! client carries no credentials: nothing is looked up, nothing is signed.

pub(crate) mod admin;
pub(crate) mod classify;
pub(crate) mod profile;
pub(crate) mod secret_hash;

use std::fmt;
use std::time::Duration;

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::types::{AnalyticsMetadataType, UserContextDataType};
use secrecy::{ExposeSecret, SecretString};

pub(crate) use classify::{Answer, CallError, Misconfiguration};

use crate::job::Delivery;
use crate::job::ResendRequest;

/// What the engine needs from Cognito: one ResendConfirmationCode call, classified.
///
/// [`Cognito`] is the one production implementation. The engine is generic over this trait so
/// that tests can run it in-process against fakes (a panicking call, a scripted error storm,
/// paused time) without a network, an emulator or a process.
pub trait Resend: Send + Sync + 'static {
    /// Calls ResendConfirmationCode for `req` as app client `client_id`, or for an invitation
    /// AdminCreateUser RESEND, asking for `medium` (`EMAIL`, `SMS`) when the engine knows it.
    fn resend(
        &self,
        req: &ResendRequest,
        client_id: &str,
        medium: Option<&'static str>,
    ) -> impl Future<Output = Result<Answer, CallError>> + Send;
}

impl Resend for Cognito {
    fn resend(
        &self,
        req: &ResendRequest,
        client_id: &str,
        medium: Option<&'static str>,
    ) -> impl Future<Output = Result<Answer, CallError>> + Send {
        Cognito::resend(self, req, client_id, medium)
    }
}

/// A ResendConfirmationCode caller, and with the pool's signed client an invitation sender.
#[derive(Clone)]
pub struct Cognito {
    client: Client,
    /// The signed pool client invitations go through (`None`: no `--user-pool-id`).
    invites: Option<admin::PoolAdmin>,
    /// Applied to every job: SecretHash is computed per username and client id.
    secret: Option<ClientSecret>,
    /// Where the calls go, for a connection that fails: the endpoint and the region.
    target: String,
}

/// The app client secret. Its `Debug` and `Display` never show the value.
#[derive(Clone)]
pub struct ClientSecret(SecretString);

impl ClientSecret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The secret, for computing a SecretHash. Never log what this returns.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// Where and how both Cognito clients connect: typed values, whoever read them.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The region (`None`: the AWS config chain decides).
    pub region: Option<String>,
    /// The AWS profile (`None`: the AWS config chain decides).
    pub profile: Option<String>,
    /// An endpoint override (emulators, VPC endpoints).
    pub endpoint: Option<url::Url>,
    /// Per-attempt timeout: a hung call cannot hold a concurrency permit.
    pub attempt_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// The SDK configuration both Cognito clients share: retries off (the engine is the one retry
/// layer), the attempt and connect timeouts, the region and endpoint overrides. `signed`: use the
/// standard credential chain (the pool reads); otherwise no credentials at all (the resend).
pub(crate) async fn sdk_config(conn: &Connection, signed: bool) -> aws_config::SdkConfig {
    crate::aws::sdk_config(crate::aws::SdkOptions {
        region: conn.region.as_deref(),
        profile: conn.profile.as_deref(),
        endpoint: conn.endpoint.as_ref(),
        connect_timeout: conn.connect_timeout,
        attempt_timeout: conn.attempt_timeout,
        sdk_retries: false,
        signed,
    })
    .await
}

impl Cognito {
    /// Builds the SDK client; `secret`, when given, signs every request with its SecretHash.
    pub async fn connect(conn: &Connection, secret: Option<ClientSecret>) -> Self {
        let sdk = sdk_config(conn, false).await;
        let client = Client::new(&sdk);
        let region = sdk.region().map(|r| r.to_string());
        let endpoint = match (sdk.endpoint_url(), &region) {
            (Some(url), _) => url.to_owned(),
            (None, Some(region)) => format!("https://cognito-idp.{region}.amazonaws.com"),
            (None, None) => "Cognito's regional endpoint".to_owned(),
        };
        let target = format!(
            "{endpoint} (region {})",
            region.as_deref().unwrap_or("not set")
        );
        Self {
            client,
            invites: None,
            secret,
            target,
        }
    }

    /// Sends invitations (jobs with [`crate::job::Action::Invite`]) through `admin`'s signed
    /// client, to its pool.
    pub(crate) fn with_invites(mut self, admin: admin::PoolAdmin) -> Self {
        self.invites = Some(admin);
        self
    }

    /// Whether the SDK found a region (from settings or the AWS config chain).
    pub fn region(&self) -> Option<String> {
        self.client.config().region().map(|r| r.to_string())
    }

    /// One call for `req`, classified: ResendConfirmationCode as app client `client_id`, or for
    /// an invitation AdminCreateUser RESEND to the pool, asking for `medium` when given.
    pub async fn resend(
        &self,
        req: &ResendRequest,
        client_id: &str,
        medium: Option<&'static str>,
    ) -> Result<Answer, CallError> {
        if req.action() == crate::job::Action::Invite {
            let Some(admin) = &self.invites else {
                return Err(CallError::Permanent {
                    reason: crate::job::Reason::InvalidRequest,
                    detail: "an invitation (action invite) is sent with AdminCreateUser to the \
                             pool: give --user-pool-id"
                        .into(),
                });
            };
            return admin
                .resend_invitation(req, medium)
                .await
                .map_err(|e| match e {
                    CallError::Unreachable(detail) => {
                        CallError::Unreachable(format!("{}: {detail}", self.target))
                    }
                    e => e,
                });
        }
        let mut call = self
            .client
            .resend_confirmation_code()
            .client_id(client_id)
            .username(&req.username)
            .set_client_metadata(
                (!req.client_metadata.is_empty())
                    .then(|| req.client_metadata.clone().into_iter().collect()),
            );
        if let Some(secret) = &self.secret {
            call = call.secret_hash(secret_hash::secret_hash(
                secret.expose(),
                &req.username,
                client_id,
            ));
        }
        if let Some(endpoint) = &req.analytics_endpoint_id {
            call = call.analytics_metadata(
                AnalyticsMetadataType::builder()
                    .analytics_endpoint_id(endpoint)
                    .build(),
            );
        }
        if req.encoded_data.is_some() || req.ip_address.is_some() {
            call = call.user_context_data(
                UserContextDataType::builder()
                    .set_encoded_data(req.encoded_data.clone())
                    .set_ip_address(req.ip_address.clone())
                    .build(),
            );
        }
        match call.send().await {
            Ok(out) => {
                let d = out.code_delivery_details();
                Ok(Answer::Sent(Delivery {
                    medium: d
                        .and_then(|d| d.delivery_medium())
                        .map(|m| m.as_str().to_owned()),
                    destination: d.and_then(|d| d.destination()).map(str::to_owned),
                    attribute: d.and_then(|d| d.attribute_name()).map(str::to_owned),
                }))
            }
            Err(e) => classify::classify(e).map_err(|e| match e {
                CallError::Unreachable(detail) => {
                    CallError::Unreachable(format!("{}: {detail}", self.target))
                }
                e => e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Classification against real sockets: what the SDK's typed errors look like for a refused
    //! connection, a dropped answer, a 500 and an attempt timeout, so that "could Cognito have
    //! acted?" is decided from what the client really sees.

    use std::time::Duration;

    use super::*;
    use cognito_emulator::{ClientSpec, Emulator, Faults, UserSpec, UserStatus};

    fn settings(endpoint: &str, attempt_timeout: Duration) -> Connection {
        Connection {
            endpoint: Some(endpoint.parse().unwrap()),
            region: Some("us-east-1".into()),
            profile: None,
            attempt_timeout,
            connect_timeout: Duration::from_secs(3),
        }
    }

    fn alice() -> ResendRequest {
        ResendRequest {
            username: "alice".into(),
            ..ResendRequest::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_connection_is_unreachable_but_a_lost_answer_or_a_500_is_ambiguous() {
        // Nothing listens: the request never left.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let cognito = Cognito::connect(
            &settings(&format!("http://{addr}"), Duration::from_secs(5)),
            None,
        )
        .await;
        let refused = cognito.resend(&alice(), "app", None).await;
        assert!(
            matches!(&refused, Err(CallError::Unreachable(d))
                if d.starts_with(&format!("http://{addr} (region us-east-1): connection refused"))),
            "{refused:?}"
        );

        // Something listens, but it is no TLS server: the handshake fails before a request is
        // written (it was once taken for a dropped connection, in doubt).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let garbage = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"SSH-2.0-OpenSSH_9.6 not TLS\r\n").await;
                let _ = socket.shutdown().await;
            }
        });
        let cognito = Cognito::connect(
            &settings(&format!("https://{addr}"), Duration::from_secs(5)),
            None,
        )
        .await;
        let tls = cognito.resend(&alice(), "app", None).await;
        assert!(
            matches!(&tls, Err(CallError::Unreachable(d)) if d.contains("TLS handshake failed")),
            "{tls:?}"
        );
        garbage.abort();

        let emu = Emulator::builder()
            .client(ClientSpec::new("app"))
            .user(UserSpec::new("alice", UserStatus::Unconfirmed))
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let cognito =
            Cognito::connect(&settings(&emu.endpoint(), Duration::from_millis(300)), None).await;
        for faults in [
            Faults {
                drop_after_rate: 1.0,
                ..Faults::default()
            },
            Faults {
                error_after_rate: 1.0,
                ..Faults::default()
            },
            // The answer comes after the attempt timeout: the client gave up on a request it
            // had written.
            Faults {
                latency: Duration::from_secs(2),
                ..Faults::default()
            },
        ] {
            emu.set_faults(faults.clone());
            let r = cognito.resend(&alice(), "app", None).await;
            assert!(
                matches!(&r, Err(CallError::Ambiguous(_))),
                "{faults:?}: {r:?}"
            );
        }
        // Throttling is an answer: Cognito did not act.
        emu.set_faults(Faults::default());
        emu.set_quota_rps(Some(0));
        let r = cognito.resend(&alice(), "app", None).await;
        assert!(matches!(&r, Err(CallError::Throttled(_))), "{r:?}");
        emu.shutdown().await;
    }
}
