use super::*;

#[test]
fn a_status_invites_only_in_a_run_that_invites_and_an_action_always_decides() {
    let row = |action, status_action| ResendRequest {
        username: "u".into(),
        action,
        status_action,
        ..ResendRequest::default()
    };
    let run = |invites, action| RequestDefaults {
        invites,
        action,
        ..RequestDefaults::default()
    };
    let took = |defaults: RequestDefaults, mut req: ResendRequest| {
        defaults.apply(&mut req);
        req.action()
    };
    let invited = || row(None, Some(Action::Invite));
    // A user export's FORCE_CHANGE_PASSWORD starts no invitation the run did not ask for.
    assert_eq!(took(run(false, None), invited()), Action::Confirm);
    assert_eq!(took(run(true, None), invited()), Action::Invite);
    // UNCONFIRMED says a code, whatever --action says for the rest.
    assert_eq!(
        took(
            run(true, Some(Action::Invite)),
            row(None, Some(Action::Confirm))
        ),
        Action::Confirm
    );
    // The row's own action wins over everything.
    assert_eq!(
        took(run(false, None), row(Some(Action::Invite), None)),
        Action::Invite
    );
    assert_eq!(
        took(run(false, Some(Action::Invite)), row(None, None)),
        Action::Invite
    );
}

#[test]
fn run_defaults_merge_under_the_jobs_own_values() {
    let defaults = RequestDefaults {
        client_metadata: BTreeMap::from([
            ("wave".into(), "day-3".into()),
            ("campaign".into(), "spring".into()),
        ]),
        analytics_endpoint_id: Some("run-endpoint".into()),
        action: None,
        invites: false,
    };
    let mut own = ResendRequest {
        username: "ana".into(),
        client_metadata: BTreeMap::from([("campaign".into(), "row".into())]),
        analytics_endpoint_id: Some("row-endpoint".into()),
        ..ResendRequest::default()
    };
    defaults.apply(&mut own);
    assert_eq!(
        own.client_metadata,
        BTreeMap::from([
            ("wave".into(), "day-3".into()),
            ("campaign".into(), "row".into()),
        ])
    );
    assert_eq!(own.analytics_endpoint_id.as_deref(), Some("row-endpoint"));
    let mut bare = ResendRequest {
        username: "bo".into(),
        ..ResendRequest::default()
    };
    defaults.apply(&mut bare);
    assert_eq!(bare.client_metadata, defaults.client_metadata);
    assert_eq!(bare.analytics_endpoint_id.as_deref(), Some("run-endpoint"));
}

#[test]
fn format_characters_are_refused_like_control_characters() {
    for bad in [
        "ali\u{200B}ce",
        "\u{202E}ecila",
        "bob\u{FEFF}",
        "a\u{2066}b",
        "soft\u{00AD}hyphen",
        "tag\u{E0041}",
    ] {
        let err = check_username(bad).unwrap_err().to_string();
        assert!(err.contains("format character"), "{bad:?}: {err}");
    }
    for bad in ["a b", "tab\there", "nl\n", "nul\0"] {
        assert!(check_username(bad).is_err(), "{bad:?}");
    }
    for good in [
        "alice",
        "+15551234567",
        "-dash",
        "josé",
        "名前",
        "a@b.c",
        "=x",
    ] {
        assert_eq!(check_username(good), Ok(()), "{good:?}");
    }
}

#[test]
fn client_ids_follow_cognitos_pattern() {
    for good in ["1example23456789", "abc_DEF+9", &"a".repeat(128)] {
        assert_eq!(check_client_id(good), Ok(()), "{good:?}");
    }
    let cases = [
        (String::new(), "empty"),
        ("a".repeat(129), "129 characters"),
        ("c1 ".into(), "' '"),
        ("c-1".into(), "'-'"),
        ("c\u{200B}1".into(), "U+200B"),
        ("clïent".into(), "U+00EF"),
        ("c/1".into(), "'/'"),
    ];
    for (bad, expected) in cases {
        let err = check_client_id(&bad).unwrap_err().to_string();
        assert!(err.contains(expected), "{bad:?}: {err}");
    }
}

#[test]
fn keys_fold_case_only_when_the_pool_ignores_it() {
    let ins = UserKey::new("c1", "Alice", UsernameCase::Insensitive);
    assert_eq!(ins, UserKey::new("c1", "aLICE", UsernameCase::Insensitive));
    assert_eq!(ins.username, "alice");
    // Non-ASCII letters fold too (Unicode's default mapping, no locale).
    assert_eq!(fold_username("ÉLODIE"), "élodie");
    assert_eq!(fold_username("İ"), "i\u{307}");
    let sens = UserKey::new("c1", "Alice", UsernameCase::Sensitive);
    assert_ne!(sens, UserKey::new("c1", "alice", UsernameCase::Sensitive));
    assert_eq!(sens.username, "Alice");
    // The client is part of the person's key: one user, two app clients, two keys.
    assert_ne!(ins, UserKey::new("c2", "alice", UsernameCase::Insensitive));
}
