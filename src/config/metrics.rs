//! `[metrics]`: where a command serves `/metrics`, `/healthz` and `/readyz`, how long a one-shot
//! command keeps serving its final counts, and the Pushgateway it pushes them to.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::value::{duration, given, http_url, redact_url, some, text, unset};
use super::{ConfigError, Group, SettingsArgs, show};

/// The `[metrics]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Metrics")]
#[serde(deny_unknown_fields, default)]
pub struct MetricsArgs {
    /// Serve /metrics, /healthz and /readyz here; port 0 picks a free port and logs it; `none`
    /// serves nothing. Without it, `consume` serves on 127.0.0.1:9464 and the one-shot commands
    /// serve nothing (two backfills on one host need no port of their own).
    #[arg(long, env = "COGNITO_RESEND_METRICS_LISTEN", value_name = "ADDR")]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "listen"
    )]
    pub metrics_addr: Option<String>,

    /// After a one-shot command finishes, keep serving /metrics this long so a scraper sees the
    /// final counts (SIGINT/SIGTERM ends it sooner) [default: 0s].
    #[arg(
        long,
        env = "COGNITO_RESEND_METRICS_LINGER",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "linger"
    )]
    pub metrics_linger: Option<String>,

    /// When a one-shot command (backfill, enqueue, discover --to-queue) ends, push its final
    /// metrics to this Pushgateway (http://host:9091), under job="cognito-resend" and
    /// command=<command>.
    #[arg(long, env = "COGNITO_RESEND_METRICS_PUSHGATEWAY", value_name = "URL")]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub pushgateway: Option<String>,
}

impl MetricsArgs {
    /// The built-in defaults: serve on the loopback's port 9464, no lingering, no push.
    pub(super) fn defaults() -> Self {
        Self {
            metrics_addr: None,
            metrics_linger: some("0s"),
            pushgateway: None,
        }
    }
}

impl Group for MetricsArgs {
    const SECTION: &'static str = "metrics";
    fn put(self, into: &mut SettingsArgs) {
        into.metrics = self;
    }
}

/// `--metrics-addr` as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listen {
    /// Not given: the command's own default ([`Listen::for_command`]).
    Default,
    /// `none`.
    Off,
    /// An address (port 0: a free one, logged).
    At(SocketAddr),
}

/// Where a long-running command (`consume`) serves when `--metrics-addr` is not given.
pub(crate) const LONG_RUNNING_LISTEN: &str = "127.0.0.1:9464";

impl Listen {
    /// Not given.
    pub(crate) fn is_default(&self) -> bool {
        *self == Self::Default
    }

    /// Where the command serves: what was given, or without it a fixed port for a long-running
    /// command (the one Prometheus scrapes, and a probe asks) and nothing for a one-shot.
    pub(crate) fn for_command(self, long_running: bool) -> Option<SocketAddr> {
        match self {
            Self::At(addr) => Some(addr),
            Self::Off => None,
            Self::Default => {
                long_running.then(|| LONG_RUNNING_LISTEN.parse().expect("a valid socket address"))
            }
        }
    }
}

/// Where metrics are served.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MetricsSettings {
    /// Where to serve, as given (`check` leaves the key out when it was not: the file it prints
    /// loads back to the same per-command default).
    #[serde(
        serialize_with = "show::listen",
        skip_serializing_if = "Listen::is_default"
    )]
    pub listen: Listen,
    /// How long a finished one-shot run keeps serving its final metrics.
    #[serde(serialize_with = "show::duration")]
    pub linger: Duration,
    /// Where a one-shot run pushes its final metrics.
    #[serde(serialize_with = "show::url")]
    pub pushgateway: Option<url::Url>,
}

impl TryFrom<MetricsArgs> for MetricsSettings {
    type Error = ConfigError;

    fn try_from(raw: MetricsArgs) -> Result<Self, ConfigError> {
        let listen = raw
            .metrics_addr
            .as_deref()
            .map(str::trim)
            .unwrap_or_default();
        let listen = if listen.is_empty() {
            Listen::Default
        } else if listen.eq_ignore_ascii_case("none") {
            Listen::Off
        } else {
            Listen::At(listen.parse().map_err(|_| {
                ConfigError::at(
                    key!(MetricsArgs, metrics_addr),
                    format!("{listen:?} is not an address like 127.0.0.1:9464 (or `none`)"),
                )
            })?)
        };
        let pushgateway = match http_url(raw.pushgateway).map_err(at!(MetricsArgs, pushgateway))? {
            Some(u) if u.cannot_be_a_base() || u.host_str().is_none() => {
                return Err(ConfigError::at(
                    key!(MetricsArgs, pushgateway),
                    format!("{} has no host", redact_url(u.as_str())),
                ));
            }
            Some(u) if u.scheme() != "http" => {
                return Err(ConfigError::at(
                    key!(MetricsArgs, pushgateway),
                    "only http:// is supported (an in-cluster Pushgateway); put a TLS proxy in \
                     front for https",
                ));
            }
            u => u,
        };
        Ok(Self {
            listen,
            linger: duration(given(&raw.metrics_linger))
                .map_err(at!(MetricsArgs, metrics_linger))?,
            pushgateway,
        })
    }
}
