//! The settings' unit tests: layering, defaults, validation and `check`'s output, over the
//! sections together (as [`Settings::load`] sees them).

use std::time::Duration;

use clap::Parser;

use super::value::redact_url;
use super::*;

fn load_with(argv: &[&str], env_secret: Option<&str>) -> Result<Settings, ConfigError> {
    let vars: Vec<(&str, &str)> = env_secret
        .map(|s| (CLIENT_SECRET_ENV, s))
        .into_iter()
        .collect();
    load_env(argv, &vars)
}

/// [`load_with`], with these environment variables (and no others) for what
/// [`Settings::load`] reads itself.
fn load_env(argv: &[&str], vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    /// The settings flags alone, every group at once.
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        settings: SettingsArgs,
        /// The command, which settings do not depend on.
        command: Option<String>,
    }
    let cli = Flags::try_parse_from(argv).expect("argv parses");
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let var = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    Settings::layered(&cli.settings, &Env { var: &var })
}

/// The built-in defaults are each section's `defaults()`; `--help` says each as `[default: X]`.
/// They must say the same: a flag's help names the value its key gets from the defaults, and a
/// key without a default says `none` or nothing.
#[test]
fn every_default_in_help_is_the_default_the_settings_use() {
    use clap::CommandFactory;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        settings: SettingsArgs,
    }
    let defaults = serde_json::to_value(SettingsArgs::defaults()).unwrap();
    let mut checked = 0;
    for arg in Flags::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let Some(said) = help
            .split("[default: ")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
        else {
            continue;
        };
        // The key of this flag: what the flags serialize when only it is given.
        let flags = Flags::try_parse_from(["keys", &format!("--{long}"), "x"])
            .unwrap_or_else(|e| panic!("--{long} takes a value: {e}"));
        let given = serde_json::to_value(&flags.settings).unwrap();
        let (section, key) = given
            .as_object()
            .unwrap()
            .iter()
            .find_map(|(section, fields)| {
                let key = fields.as_object()?.keys().next()?;
                Some((section.clone(), key.clone()))
            })
            .unwrap_or_else(|| panic!("--{long} has no key"));
        let used = defaults[&section][&key].as_str();
        match (said, used) {
            ("none", None) => {}
            (said, Some(used)) => {
                let same = match (said.parse::<f64>(), used.parse::<f64>()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => said == used,
                };
                assert!(
                    same,
                    "--{long} says [default: {said}] but {section}.{key} defaults to {used}"
                );
            }
            (said, None) => {
                panic!("--{long} says [default: {said}] but {section}.{key} has no default")
            }
        }
        checked += 1;
    }
    assert!(checked > 20, "only {checked} defaults found in the help");
}

#[test]
fn durations_parse_like_the_spec_writes_them() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
    assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
    assert_eq!(
        parse_duration(" 1h 30m ").unwrap(),
        Duration::from_secs(5_400)
    );
    assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    assert!(parse_duration("ten seconds").is_err());
    assert!(parse_duration("").is_err());
    assert!(parse_duration("-5s").is_err());
}

fn refused(argv: &[&str]) -> String {
    let mut full = vec!["cognito-resend"];
    full.extend_from_slice(argv);
    full.push("check");
    match load_with(&full, None) {
        Ok(_) => panic!("{argv:?} should be refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn settings_that_break_a_guarantee_are_refused_naming_the_limit() {
    let e = refused(&["--claim-lease", "200ms"]);
    assert!(
        e.contains("ledger.claim_lease") && e.contains("six heartbeats"),
        "{e}"
    );
    assert!(load_with(&["cognito-resend", "--claim-lease", "300ms", "check"], None).is_ok());

    let e = refused(&["--visibility-timeout", "5m", "--max-extension", "1m"]);
    assert!(
        e.contains("sqs.max_extension") && e.contains("visibility_timeout"),
        "{e}"
    );
    let e = refused(&["--max-extension", "0"]);
    assert!(e.contains("sqs.max_extension"), "{e}");

    let e = refused(&["--concurrency", "100000"]);
    assert!(e.contains("run.concurrency") && e.contains("1024"), "{e}");
    assert!(load_with(&["cognito-resend", "--concurrency", "1024", "check"], None).is_ok());

    // 1/rate would overflow a Duration (and any timer long before that).
    for (flag, key) in [
        ("--rate", "run.rate"),
        ("--precheck-rate", "run.precheck_rate"),
        ("--list-rate", "discover.list_rate"),
    ] {
        for tiny in ["1e-30", "0.0001"] {
            let e = refused(&[flag, tiny]);
            assert!(
                e.contains(key) && e.contains("smallest rate"),
                "{flag} {tiny}: {e}"
            );
        }
    }
    let s = load_with(&["cognito-resend", "--rate", "0.001", "check"], None).unwrap();
    assert_eq!(s.run.rate, Some(0.001));
    let s = load_with(&["cognito-resend", "--rate", "0", "check"], None).unwrap();
    assert_eq!(s.run.rate, None, "0 still means no limit");
}

#[test]
fn a_zero_cooldown_or_shutdown_grace_is_warned_about_loudly() {
    let s = load_with(&["cognito-resend", "check"], None).unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let s = load_with(
        &[
            "cognito-resend",
            "--cooldown",
            "0",
            "--shutdown-grace",
            "0s",
            "check",
        ],
        None,
    )
    .unwrap();
    assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("--cooldown") && s.warnings[1].contains("--shutdown-grace"));
    let shown = s.render_redacted();
    assert!(
        shown.starts_with("# WARNING: ledger.cooldown (--cooldown) is 0"),
        "{shown}"
    );
}

#[test]
fn pushgateway_credentials_never_show() {
    let s = load_with(
        &[
            "cognito-resend",
            "--pushgateway",
            "http://metrics:hunter2@127.0.0.1:9091/",
            "check",
        ],
        None,
    )
    .unwrap();
    let shown = s.render_redacted();
    assert!(
        !shown.contains("hunter2") && !shown.contains("metrics:"),
        "{shown}"
    );
    assert!(
        shown.contains("http://<redacted>@127.0.0.1:9091/"),
        "{shown}"
    );
    // Errors about the URL are redacted too, parsed or not.
    for bad in [
        "https://metrics:hunter2@127.0.0.1:9091/",
        "ftp://metrics:hunter2@127.0.0.1/",
        "http://metrics:hunter2@[::1/",
    ] {
        let e = refused(&["--pushgateway", bad]);
        assert!(
            !e.contains("hunter2") && e.contains("metrics.pushgateway"),
            "{e}"
        );
    }
    assert_eq!(
        redact_url("http://127.0.0.1:9091/a@b"),
        "http://127.0.0.1:9091/a@b"
    );
    assert_eq!(redact_url("http://u@h/"), "http://<redacted>@h/");
}

#[test]
fn check_output_is_a_config_file_that_loads_to_the_same_settings() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "topsecretvalue\n").unwrap();
    let s = load_with(
        &[
            "cognito-resend",
            "--client-id",
            "abc",
            "--client-secret-file",
            secret.to_str().unwrap(),
            "--region",
            "eu-west-1",
            "--state",
            "dynamodb://table-1",
            "--shutdown-grace",
            "5s",
            "--older-than",
            "1h",
            "--created-after",
            "2026-11-01",
            "--rate",
            "0",
            "--metrics-addr",
            "none",
            "--max-sms-per-day",
            "7",
            "--report",
            "r.jsonl",
            "check",
        ],
        None,
    )
    .unwrap();
    let shown = s.render_redacted();
    assert!(!shown.contains("topsecretvalue"), "{shown}");
    let file = dir.path().join("effective.toml");
    std::fs::write(&file, &shown).unwrap();
    let again = load_with(
        &[
            "cognito-resend",
            "--config",
            file.to_str().unwrap(),
            "check",
        ],
        None,
    )
    .unwrap_or_else(|e| panic!("check's output does not load: {e}\n{shown}"));
    assert_eq!(
        again.render_redacted().lines().skip(1).collect::<Vec<_>>(),
        shown.lines().skip(1).collect::<Vec<_>>()
    );
    assert_eq!(again.cognito.region.as_deref(), Some("eu-west-1"));
    assert_eq!(again.sqs.shutdown_grace, Duration::from_secs(5));
}

#[test]
fn defaults_match_the_spec() {
    let s = load_with(&["cognito-resend", "check"], None).unwrap();
    assert_eq!(s.run.concurrency.get(), 16);
    assert_eq!(s.run.rate, Some(10.0));
    assert_eq!(s.retry.max_attempts.get(), 10);
    assert_eq!(s.retry.max_elapsed, Duration::from_secs(600));
    assert_eq!(s.retry.initial_backoff, Duration::from_millis(250));
    assert_eq!(s.retry.max_backoff, Duration::from_secs(30));
    assert_eq!(s.retry.multiplier, 2.0);
    assert_eq!(s.retry.jitter, 0.5);
    assert_eq!(
        s.metrics.listen.for_command(true),
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(
        s.metrics.listen.for_command(false),
        None,
        "a one-shot needs no port"
    );
    assert_eq!(s.sqs.shutdown_grace, Duration::from_secs(30));
    assert_eq!(s.ledger.cooldown, Duration::from_secs(86_400));
    assert_eq!(s.ledger.claim_lease, Duration::from_secs(30));
    assert_eq!(s.sqs.max_messages, None, "no limit");
}

#[test]
fn max_messages_is_a_count_and_zero_means_no_limit() {
    let s = load_with(&["cognito-resend", "--max-messages", "25", "check"], None).unwrap();
    assert_eq!(s.sqs.max_messages, Some(25));
    assert!(s.render_redacted().contains("max_messages = 25"));
    let s = load_with(&["cognito-resend", "--max-messages", "0", "check"], None).unwrap();
    assert_eq!(s.sqs.max_messages, None);
    let err = load_with(&["cognito-resend", "--max-messages", "many", "check"], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sqs.max_messages (--max-messages)"), "{err}");
}

#[test]
fn fleet_rate_needs_a_shared_ledger_and_shows_in_check() {
    let s = load_with(&["cognito-resend", "check"], None).unwrap();
    assert_eq!(s.run.fleet_rate, None, "no fleet budget by default");
    let s = load_with(&["cognito-resend", "--fleet-rate", "50", "check"], None).unwrap();
    assert_eq!(s.run.fleet_rate, Some(50.0));
    let shown = s.render_redacted();
    assert!(shown.contains("fleet_rate = 50.0\n"), "{shown}");
    let s = load_with(&["cognito-resend", "--fleet-rate", "0", "check"], None).unwrap();
    assert_eq!(s.run.fleet_rate, None, "0 means none");
    let err = load_with(
        &[
            "cognito-resend",
            "--fleet-rate",
            "50",
            "--state",
            "none",
            "check",
        ],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("run.fleet_rate (--fleet-rate)") && err.contains("--state none"),
        "{err}"
    );
    let err = load_with(&["cognito-resend", "--fleet-rate=-3", "check"], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("run.fleet_rate (--fleet-rate)"), "{err}");
}

#[test]
fn the_example_file_is_valid_and_spells_the_defaults() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let from_file = load_with(&["cognito-resend", "--config", example, "check"], None).unwrap();
    let defaults = load_with(&["cognito-resend", "check"], None).unwrap();
    assert_eq!(from_file.ledger.path, defaults.ledger.path);
    assert_eq!(from_file.ledger.cooldown, defaults.ledger.cooldown);
    assert_eq!(from_file.run.concurrency, defaults.run.concurrency);
    assert_eq!(
        from_file.sqs.visibility_timeout,
        defaults.sqs.visibility_timeout
    );
}

#[test]
fn allowed_client_ids_default_to_none_and_flags_repeat() {
    let s = load_with(&["cognito-resend", "check"], None).unwrap();
    assert!(s.cognito.allowed_client_ids.is_empty());
    let s = load_with(
        &[
            "cognito-resend",
            "--allow-client-id",
            "second",
            "--allow-client-id",
            "third",
            "--allow-client-id",
            "second",
            "check",
        ],
        None,
    )
    .unwrap();
    assert_eq!(s.cognito.allowed_client_ids, ["second", "third"]);
    assert!(
        s.render_redacted()
            .contains("allowed_client_ids = [\"second\", \"third\"]")
    );
    let e = load_with(
        &["cognito-resend", "--client-id", "has-dash", "check"],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("cognito.client_id (--client-id)") && e.contains("'-'"),
        "{e}"
    );
    let e = load_with(
        &["cognito-resend", "--allow-client-id", "a#b", "check"],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("(--allow-client-id): client_id contains"), "{e}");
    let e = load_with(&["cognito-resend", "--allow-client-id", " ", "check"], None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cognito.allowed_client_ids (--allow-client-id)"),
        "{e}"
    );
}

#[test]
fn state_takes_a_file_a_dynamodb_table_or_none() {
    let s = load_with(&["cognito-resend", "--state", "none", "check"], None).unwrap();
    assert_eq!(s.ledger.path, crate::ledger::StateSpec::None);
    let s = load_with(
        &["cognito-resend", "--state", "dynamodb://t-1", "check"],
        None,
    )
    .unwrap();
    assert_eq!(
        s.ledger.path,
        crate::ledger::StateSpec::Dynamo {
            table: "t-1".into()
        }
    );
    let e = load_with(&["cognito-resend", "--state", "redis://x", "check"], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ledger.path (--state)"), "{e}");
    let e = load_with(&["cognito-resend", "--cooldown", "soon", "check"], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ledger.cooldown (--cooldown)"), "{e}");
}

#[test]
fn spend_caps_come_from_the_file_and_flags_and_per_day_ones_need_a_ledger() {
    let defaults = load_with(&["cognito-resend", "check"], None).unwrap();
    assert_eq!(defaults.limits.max_sends, None);
    assert!(defaults.limits.day().is_empty());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[limits]\nmax_sends = 50\nmax_sends_per_day = 1000\nmax_sms_per_day = 10\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let s = load_with(
        &[
            "cognito-resend",
            "--config",
            f,
            "check",
            "--max-email-per-day",
            "20",
        ],
        None,
    )
    .unwrap();
    assert_eq!(s.limits.max_sends, Some(50));
    assert_eq!(
        s.limits.day(),
        crate::ledger::DayCaps {
            sends: Some(1000),
            sms: Some(10),
            email: Some(20)
        }
    );
    let shown = s.render_redacted();
    assert!(shown.contains("[limits]") && shown.contains("max_sms_per_day = 10"));
    let e = refused(&["--state", "none", "--max-sms-per-day", "5"]);
    assert!(
        e.contains("limits.max_sms_per_day (--max-sms-per-day)") && e.contains("need one"),
        "{e}"
    );
    let s = load_with(
        &[
            "cognito-resend",
            "check",
            "--state",
            "none",
            "--max-sends",
            "5",
        ],
        None,
    )
    .unwrap();
    assert_eq!(s.limits.max_sends, Some(5));
    let e = refused(&["--max-sends", "lots"]);
    assert!(e.contains("limits.max_sends"), "{e}");
}

#[test]
fn file_is_overridden_by_flags_and_bad_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[run]\nconcurrency = 4\nrate = 0\ndry_run = true\n[cognito]\nclient_id = \"fromfile\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let s = load_with(&["cognito-resend", "--config", f, "check"], None).unwrap();
    assert_eq!(s.run.concurrency.get(), 4);
    assert_eq!(s.run.rate, None, "rate 0 means no limit");
    assert!(s.run.dry_run);
    assert_eq!(s.cognito.client_id.as_deref(), Some("fromfile"));

    let s = load_with(
        &[
            "cognito-resend",
            "--config",
            f,
            "check",
            "--client-id",
            "flag",
            "--concurrency",
            "8",
        ],
        None,
    )
    .unwrap();
    assert_eq!(s.cognito.client_id.as_deref(), Some("flag"));
    assert_eq!(s.run.concurrency.get(), 8);
    assert!(
        s.run.dry_run,
        "an absent boolean flag keeps the file's true"
    );

    let err = load_with(&["cognito-resend", "--concurrency", "lots", "check"], None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("run.concurrency") && err.contains("--concurrency"),
        "{err}"
    );
    let err = load_with(&["cognito-resend", "--max-backoff", "soon", "check"], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("retry.max_backoff"), "{err}");

    std::fs::write(&file, "[run]\nconcurency = 4\n").unwrap();
    let err = load_with(&["cognito-resend", "--config", f, "check"], None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("concurency"),
        "a typo in the file is named: {err}"
    );
}

#[test]
fn secret_never_prints_and_comes_from_one_place_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "topsecretvalue\n").unwrap();
    let f = file.to_str().unwrap();
    let s = load_with(
        &["cognito-resend", "--client-secret-file", f, "check"],
        None,
    )
    .unwrap();
    let (secret, _) = s.cognito.secret.as_ref().unwrap();
    assert_eq!(
        secret.expose(),
        "topsecretvalue",
        "trailing newline trimmed"
    );
    assert!(!format!("{s:?}").contains("topsecretvalue"));
    assert!(!s.render_redacted().contains("topsecretvalue"));

    let err = load_with(
        &["cognito-resend", "--client-secret-file", f, "check"],
        Some("other"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("one way only"));

    let err = load_with(
        &[
            "cognito-resend",
            "--client-secret-file",
            "/nonexistent/secret",
            "check",
        ],
        None,
    )
    .unwrap_err()
    .to_string();
    // The name is not echoed either: it may have been the secret itself.
    assert!(
        err.contains("--client-secret-file") && !err.contains("/nonexistent/secret"),
        "{err}"
    );
}

#[test]
fn run_metadata_wave_and_cap_layer_are_checked_and_show_in_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("waves.toml");
    std::fs::write(
        &file,
        "[cognito]\nanalytics_endpoint_id = \"file-endpoint\"\n\n\
         [cognito.client_metadata]\nwave = \"file-wave\"\nsource = \"pool\"\n",
    )
    .unwrap();
    let s = load_with(
        &[
            "cognito-resend",
            "--config",
            file.to_str().unwrap(),
            "--client-metadata",
            "wave=day-3",
            "--client-metadata",
            "note=a=b",
            "--wave",
            "day-3",
            "--max-sends-per-user",
            "3",
            "check",
        ],
        None,
    )
    .unwrap();
    let expected: std::collections::BTreeMap<String, String> =
        [("note", "a=b"), ("source", "pool"), ("wave", "day-3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    assert_eq!(s.cognito.client_metadata, expected, "flags win key by key");
    assert_eq!(
        s.cognito.analytics_endpoint_id.as_deref(),
        Some("file-endpoint")
    );
    assert_eq!(s.run.wave.as_deref(), Some("day-3"));
    assert_eq!(s.ledger.max_sends_per_user, Some(3));
    // `check` prints them as a file that loads back to the same.
    let shown = s.render_redacted();
    let effective = dir.path().join("effective.toml");
    std::fs::write(&effective, &shown).unwrap();
    let again = load_with(
        &[
            "cognito-resend",
            "--config",
            effective.to_str().unwrap(),
            "check",
        ],
        None,
    )
    .unwrap_or_else(|e| panic!("check's output does not load: {e}\n{shown}"));
    assert_eq!(again.cognito.client_metadata, expected, "{shown}");
    assert_eq!(again.run.wave.as_deref(), Some("day-3"), "{shown}");
    assert_eq!(again.ledger.max_sends_per_user, Some(3), "{shown}");
    let defaults = load_with(&["cognito-resend", "check"], None).unwrap();
    assert!(defaults.cognito.client_metadata.is_empty());
    assert_eq!(
        (defaults.run.wave, defaults.ledger.max_sends_per_user),
        (None, None)
    );

    let e = refused(&["--client-metadata", "=orphan"]);
    assert!(
        e.contains("cognito.client_metadata (--client-metadata)") && e.contains("empty key"),
        "{e}"
    );
    let e = refused(&["--wave", "day 3"]);
    assert!(e.contains("run.wave (--wave)"), "{e}");
    let e = refused(&["--max-sends-per-user", "2", "--state", "none"]);
    assert!(e.contains("ledger.max_sends_per_user"), "{e}");
    let e = refused(&["--max-sends-per-user", "two"]);
    assert!(e.contains("ledger.max_sends_per_user"), "{e}");
}

#[test]
fn lambda_settings_default_validate_and_take_the_secret_one_way_only() {
    let s = load_with(&["cognito-resend", "check"], None).unwrap();
    assert_eq!(s.lambda.margin, Duration::from_secs(5));
    assert_eq!(s.lambda.timeout, None);
    assert_eq!(s.lambda.client_secret_id, None);

    let s = load_with(
        &[
            "cognito-resend",
            "--lambda-margin",
            "2s",
            "--lambda-timeout",
            "1m",
            "--lambda-client-secret-id",
            "cognito-resend/secret",
            "check",
        ],
        None,
    )
    .unwrap();
    assert_eq!(s.lambda.margin, Duration::from_secs(2));
    assert_eq!(s.lambda.timeout, Some(Duration::from_secs(60)));
    assert_eq!(
        s.lambda.client_secret_id.as_deref(),
        Some("cognito-resend/secret")
    );
    let shown = s.render_redacted();
    assert!(
        shown.contains("[lambda]") && shown.contains("timeout = \"1m\""),
        "{shown}"
    );

    let err = load_with(&["cognito-resend", "--lambda-margin", "0s", "check"], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("lambda.margin"), "{err}");
    let err = load_with(
        &["cognito-resend", "--lambda-client-secret-id", "x", "check"],
        Some("from-env"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("lambda.client_secret_id") && err.contains("one way only"),
        "{err}"
    );
}

/// Every label is derived from the declaration: the section, the serde key and the clap flag.
#[test]
fn keys_are_derived_from_the_section_the_serde_key_and_the_flag() {
    assert_eq!(
        key!(LedgerArgs, max_sends_per_user).to_string(),
        "ledger.max_sends_per_user (--max-sends-per-user)"
    );
    assert_eq!(
        key!(ClientArgs, allow_client_id).to_string(),
        "cognito.allowed_client_ids (--allow-client-id)"
    );
    assert_eq!(key!(LedgerArgs, state).to_string(), "ledger.path (--state)");
    assert_eq!(
        key!(LambdaArgs, margin).to_string(),
        "lambda.margin (--lambda-margin)"
    );
    assert_eq!(
        key!(RequestArgs, client_metadata).to_string(),
        "cognito.client_metadata (--client-metadata)"
    );
    assert_eq!(
        key!(RunArgs, dry_run).env_var(),
        "COGNITO_RESEND_RUN_DRY_RUN",
        "the environment variable clap would read"
    );
}

/// A configuration error names its setting in fields, not only in its text.
#[test]
fn errors_name_the_key_and_the_flag_as_fields() {
    let e = load_with(&["cognito-resend", "--concurrency", "0", "check"], None).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("run.concurrency"));
    assert_eq!(e.flag.as_deref(), Some("--concurrency"));
    assert_eq!(e.reason, "must be at least 1");
    assert_eq!(
        e.to_string(),
        "run.concurrency (--concurrency): must be at least 1"
    );
    let e = parse_duration("soon").unwrap_err();
    assert!(
        e.to_string().starts_with("\"soon\" is not a duration"),
        "{e}"
    );
}

/// A key no section has is named, with the file it came from, whichever section it is in
/// (those of several flag groups cannot have serde refuse it).
#[test]
fn an_unknown_key_in_the_file_is_named_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    for (text, key) in [
        ("[sqs]\nbatch = 4\n", "sqs.batch"),
        ("[retry]\nattempts = 4\n", "retry.attempts"),
        ("[nosuch]\nx = 1\n", "nosuch.x"),
    ] {
        std::fs::write(&file, text).unwrap();
        let e = load_with(
            &[
                "cognito-resend",
                "--config",
                file.to_str().unwrap(),
                "check",
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.to_string().contains("c.toml"), "{e}");
    }
}

/// `-v`, `-q` and `--config` are the command line's, not keys: they survive the layering.
#[test]
fn verbosity_and_the_file_come_from_the_command_line() {
    let s = load_with(&["cognito-resend", "check", "-vv"], None).unwrap();
    assert_eq!(s.log.verbosity, 2);
    let s = load_with(&["cognito-resend", "-q", "check"], None).unwrap();
    assert_eq!(s.log.verbosity, -1);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let s = load_with(&["cognito-resend", "--config", example, "check"], None).unwrap();
    assert_eq!(
        s.config_file.as_deref(),
        Some(std::path::Path::new(example))
    );
}

/// A negative number reaches the validation, which names the setting, instead of being taken
/// for a flag ("unexpected argument '-1'").
#[test]
fn a_negative_number_is_a_bad_value_of_its_setting_not_an_unknown_flag() {
    let err = load_with(&["cognito-resend", "--rate", "-1", "check"], None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("run.rate"));
    assert!(err.to_string().contains("-1 must be 0"), "{err}");
    let err = load_with(&["cognito-resend", "--concurrency", "-3", "check"], None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("run.concurrency"), "{err}");
}

/// `--client-secret-file` given the secret itself by mistake: the error says the file cannot be
/// read and never prints the value given.
#[test]
fn a_secret_given_as_the_files_name_is_never_echoed() {
    let err = load_with(
        &[
            "cognito-resend",
            "--client-secret-file",
            "hunter2-s3cret",
            "check",
        ],
        None,
    )
    .unwrap_err();
    let said = err.to_string();
    assert!(!said.contains("hunter2"), "{said}");
    assert!(said.contains("--client-secret-file"), "{said}");
}

/// Without `--state`, the ledger is `ledger.db` in the XDG data home (`XDG_DATA_HOME`, else
/// `~/.local/share`), whatever the working directory; with neither variable there is no default,
/// and a command that needs the ledger is told to give `--state` (one that does not runs).
#[test]
fn the_default_ledger_is_in_the_xdg_data_home() {
    use crate::ledger::StateSpec;
    let argv = ["cognito-resend", "check"];
    let s = load_env(&argv, &[("XDG_DATA_HOME", "/data"), ("HOME", "/home/u")]).unwrap();
    assert_eq!(
        s.ledger.path,
        StateSpec::Sqlite("/data/cognito-resend/ledger.db".into())
    );
    assert_eq!(s.ledger.origin, LedgerOrigin::DataHome);
    let s = load_env(&argv, &[("HOME", "/home/u")]).unwrap();
    assert_eq!(
        s.ledger.path,
        StateSpec::Sqlite("/home/u/.local/share/cognito-resend/ledger.db".into())
    );
    // A relative XDG_DATA_HOME is ignored, as the XDG rule says.
    let s = load_env(&argv, &[("XDG_DATA_HOME", "rel"), ("HOME", "/home/u")]).unwrap();
    assert_eq!(
        s.ledger.path,
        StateSpec::Sqlite("/home/u/.local/share/cognito-resend/ledger.db".into())
    );
    let s = load_env(&argv, &[]).unwrap();
    let err = s.ledger.usable().unwrap_err().to_string();
    assert!(
        err.contains("ledger.path (--state)") && err.contains("XDG_DATA_HOME"),
        "{err}"
    );
    // --state wins, and is kept as written.
    let s = load_env(
        &["cognito-resend", "--state", "here.db", "check"],
        &[("HOME", "/home/u")],
    )
    .unwrap();
    assert_eq!(s.ledger.path, StateSpec::Sqlite("here.db".into()));
    assert_eq!(s.ledger.origin, LedgerOrigin::Given);
    assert!(s.ledger.usable().is_ok());
}

/// `check` prints a duration as it was written (`24h`, not `1day`; `90s`, not `1m 30s`), and
/// what it prints still loads back to the same settings.
#[test]
fn check_prints_durations_as_written() {
    let s = load_with(
        &[
            "cognito-resend",
            "--cooldown",
            "24h",
            "--claim-lease",
            "90s",
            "--retention",
            "30d",
            "check",
        ],
        None,
    )
    .unwrap();
    let shown = s.render_redacted();
    assert!(shown.contains("cooldown = \"24h\"\n"), "{shown}");
    assert!(shown.contains("claim_lease = \"90s\"\n"), "{shown}");
    assert!(shown.contains("retention = \"30d\"\n"), "{shown}");
    assert!(!shown.contains("1day"), "{shown}");
    // The defaults are written too: as the defaults spell them.
    assert!(shown.contains("max_elapsed = \"10m\"\n"), "{shown}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shown.toml");
    std::fs::write(&file, &shown).unwrap();
    let again = load_with(
        &[
            "cognito-resend",
            "--config",
            file.to_str().unwrap(),
            "check",
        ],
        None,
    )
    .unwrap();
    assert_eq!(again.ledger.cooldown, Duration::from_secs(86_400));
    assert_eq!(again.ledger.claim_lease, Duration::from_secs(90));
}

/// `--profile` (and `COGNITO_RESEND_AWS_PROFILE`, `aws.profile`) is the `[aws]` section's key,
/// kept with the region, and `check` shows it there.
#[test]
fn the_profile_is_an_aws_setting_shown_by_check() {
    let s = load_with(&["cognito-resend", "--profile", "staging", "check"], None).unwrap();
    assert_eq!(s.cognito.profile.as_deref(), Some("staging"));
    assert_eq!(s.cognito.connection().profile.as_deref(), Some("staging"));
    let shown = s.render_redacted();
    assert!(shown.contains("[aws]\nprofile = \"staging\"\n"), "{shown}");
    let s = load_with(&["cognito-resend", "check"], None).unwrap();
    assert_eq!(s.cognito.profile, None, "the AWS config chain decides");
}
