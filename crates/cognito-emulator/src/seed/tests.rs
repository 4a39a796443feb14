//! Unit tests of seed files: both formats, good and bad, and what the binary seeds.

use super::*;

/// A file in a directory of this test process's own, holding `contents`.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cognito-emulator-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("temp file written");
    path
}

fn csv(text: &str) -> Result<Vec<SeedUser>, SeedError> {
    parse_csv(Path::new("users.csv"), text.as_bytes())
}

fn json(text: &str) -> Result<Vec<SeedUser>, SeedError> {
    parse_json(Path::new("users.json"), text.as_bytes())
}

fn attr<'a>(u: &'a UserSpec, name: &str) -> Option<&'a str> {
    u.attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The error's `Display`, which the binary prints.
fn error_of(r: Result<Vec<SeedUser>, SeedError>) -> String {
    r.expect_err("an error").to_string()
}

#[test]
fn csv_reads_usernames_statuses_contacts_and_attributes() {
    let users = csv(
        "username,status,email,phone_number,phone_number_verified,sub,custom:plan,\
                     Name,cognito:mfa_enabled,created\n\
         alice,,alice@example.org,,,,gold,Alice A,false,2024-01-02T03:04:05Z\n\
         paul,CONFIRMED,,+15555550100,true,0000-sub,,,,\n\
         ivy,force_change_password,ivy@example.org,+15555550101,,,,,,1704067200\n",
    )
    .expect("good CSV");
    assert_eq!(users.len(), 3);
    let alice = &users[0].user;
    assert_eq!(users[0].at, Location::Line(2));
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.status, UserStatus::Unconfirmed, "the default status");
    assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
    assert_eq!(alice.phone, None);
    assert_eq!(attr(alice, "custom:plan"), Some("gold"));
    assert_eq!(
        attr(alice, "name"),
        Some("Alice A"),
        "standard names lowercased"
    );
    assert_eq!(
        attr(alice, "cognito:mfa_enabled"),
        None,
        "cognito: columns ignored"
    );
    assert_eq!(
        alice.created,
        UNIX_EPOCH + Duration::from_secs(1_704_164_645)
    );
    let paul = &users[1].user;
    assert_eq!(users[1].at, Location::Line(3));
    assert_eq!(paul.status, UserStatus::Confirmed);
    assert_eq!(paul.email, None, "no email column value: no email at all");
    assert_eq!(paul.phone.as_deref(), Some("+15555550100"));
    assert_eq!(attr(paul, "phone_number_verified"), Some("true"));
    assert_eq!(attr(paul, "sub"), Some("0000-sub"));
    assert_eq!(
        attr(paul, "custom:plan"),
        None,
        "an empty cell is no attribute"
    );
    let ivy = &users[2].user;
    assert_eq!(ivy.status, UserStatus::ForceChangePassword);
    assert_eq!(ivy.created, UNIX_EPOCH + Duration::from_secs(1_704_067_200));
}

#[test]
fn csv_takes_cognito_export_headers_semicolons_bom_crlf_and_blank_rows() {
    // Cognito's import header names the username `cognito:username`; an export adds the status
    // as `cognito:user_status`. Excel in many locales writes `;`, CRLF and a byte order mark.
    let text = "\u{feff}cognito:username;cognito:user_status;email;email_verified\r\n\
                alice;UNCONFIRMED;alice@example.org;FALSE\r\n\
                ;;;\r\n\
                \r\n\
                bob;CONFIRMED;bob@example.org;True\r\n";
    let users = csv(text).expect("good CSV");
    let names: Vec<(&str, Location)> = users
        .iter()
        .map(|u| (u.user.username.as_str(), u.at))
        .collect();
    assert_eq!(
        names,
        [("alice", Location::Line(2)), ("bob", Location::Line(5))]
    );
    assert_eq!(attr(&users[0].user, "email_verified"), Some("false"));
    assert_eq!(attr(&users[1].user, "email_verified"), Some("true"));
    assert_eq!(users[1].user.status, UserStatus::Confirmed);

    let tabs = csv("username\tphone_number\ncarol\t+15555550102\n").expect("tabs");
    assert_eq!(tabs[0].user.phone.as_deref(), Some("+15555550102"));
}

#[test]
fn csv_errors_name_the_file_and_the_line() {
    let cases = [
        (
            "username,status\nalice,UNCONFIRMED\nbob,DONE\n",
            "users.csv: line 3: unknown status \"DONE\" (one of UNCONFIRMED, CONFIRMED, ARCHIVED, \
             COMPROMISED, UNKNOWN, RESET_REQUIRED, FORCE_CHANGE_PASSWORD, EXTERNAL_PROVIDER)",
        ),
        (
            "username,email\nalice,a@example.org\n,b@example.org\n",
            "users.csv: line 3: missing username",
        ),
        (
            "username,phone_number\nalice,555-0100\n",
            "users.csv: line 2: phone_number \"555-0100\" is not in E.164 format (a + and \
             digits, such as +15555550100), as Cognito requires",
        ),
        (
            "username,email_verified\nalice,yes\n",
            "users.csv: line 2: email_verified is \"yes\", not true or false",
        ),
        (
            "username,email\nalice,a@example.org\nbob\n",
            "users.csv: line 3: 1 fields, but the header has 2",
        ),
        (
            "username,email\nalice,a@example.org\nbob,b@example.org\nalice,c@example.org\n",
            "users.csv: line 4: duplicate username \"alice\": already at line 2",
        ),
        (
            "username,status,UserStatus\nalice,CONFIRMED,UNCONFIRMED\n",
            "users.csv: line 2: status is given twice, as \"CONFIRMED\" and as \"UNCONFIRMED\" \
             (field \"UserStatus\")",
        ),
        (
            "username,created\nalice,yesterday\n",
            "users.csv: line 2: created \"yesterday\" is not a date (RFC 3339 such as \
             2024-01-01T00:00:00Z, or epoch seconds)",
        ),
        (
            "email;status\na@example.org;CONFIRMED\n",
            "users.csv: line 1: the header has no username column (expected \"username\" or \
             \"cognito:username\"); the header found: \"email\", \"status\"",
        ),
        (
            "",
            "users.csv: empty file: a header row with a username column is required",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error_of(csv(text)), expected, "for {text:?}");
    }
    let got = error_of(csv("username\nal ice\n"));
    assert_eq!(
        got,
        "users.csv: line 2: username \"al ice\" has whitespace (Cognito usernames cannot)"
    );
}

#[test]
fn json_reads_nested_top_level_and_cognito_attribute_lists() {
    let users = json(
        r#"[
          {"username": "paul", "status": "UNCONFIRMED",
           "attributes": {"phone_number": "+15555550100", "phone_number_verified": true,
                          "custom:plan": "gold"}},
          {"username": "alice", "email": "alice@example.org", "created": "2024-01-01T02:00:00+02:00"},
          {"Username": "bob", "UserStatus": "CONFIRMED", "Enabled": true,
           "UserCreateDate": 1704067200.5, "MFAOptions": [],
           "Attributes": [{"Name": "email", "Value": "bob@example.org"},
                          {"Name": "sub", "Value": "b0b"}]}
        ]"#,
    )
    .expect("good JSON");
    assert_eq!(users.len(), 3);
    let paul = &users[0].user;
    assert_eq!(users[0].at, Location::Index(0));
    assert_eq!(paul.email, None);
    assert_eq!(paul.phone.as_deref(), Some("+15555550100"));
    assert_eq!(attr(paul, "phone_number_verified"), Some("true"));
    assert_eq!(attr(paul, "custom:plan"), Some("gold"));
    let alice = &users[1].user;
    assert_eq!(alice.status, UserStatus::Unconfirmed);
    assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
    assert_eq!(
        alice.created,
        UNIX_EPOCH + Duration::from_secs(1_704_067_200)
    );
    let bob = &users[2].user;
    assert_eq!(bob.status, UserStatus::Confirmed);
    assert_eq!(bob.email.as_deref(), Some("bob@example.org"));
    assert_eq!(attr(bob, "sub"), Some("b0b"));
    assert_eq!(attr(bob, "Enabled"), None);
    assert_eq!(
        bob.created,
        UNIX_EPOCH + Duration::from_millis(1_704_067_200_500)
    );

    // What `aws cognito-idp list-users` prints.
    let listed = json(
        r#"{"Users": [{"Username": "erin", "UserStatus": "RESET_REQUIRED",
             "Attributes": [{"Name": "email", "Value": "erin@example.org"}]}]}"#,
    )
    .expect("list-users output");
    assert_eq!(listed[0].user.status, UserStatus::ResetRequired);
    assert!(json("[]").expect("no users").is_empty());
}

#[test]
fn json_errors_name_the_file_and_the_index() {
    let cases = [
        (
            r#"[{"username": "a"}, {"status": "CONFIRMED"}]"#,
            "users.json: index 1: missing username",
        ),
        (
            r#"[{"username": "a", "status": "SIGNED_UP"}]"#,
            "users.json: index 0: unknown status \"SIGNED_UP\" (one of UNCONFIRMED, CONFIRMED, \
             ARCHIVED, COMPROMISED, UNKNOWN, RESET_REQUIRED, FORCE_CHANGE_PASSWORD, \
             EXTERNAL_PROVIDER)",
        ),
        (
            r#"[{"username": "a"}, {"username": "b"}, {"username": "a"}]"#,
            "users.json: index 2: duplicate username \"a\": already at index 0",
        ),
        (
            r#"[{"username": "a"}, "b"]"#,
            "users.json: index 1: a user must be a JSON object, not a string",
        ),
        (
            r#"[{"username": "a", "email": "x@example.org",
                 "attributes": {"email": "y@example.org"}}]"#,
            "users.json: index 0: email is given twice, as \"y@example.org\" and as \
             \"x@example.org\" (field \"email\")",
        ),
        (
            r#"[{"username": "a", "attributes": {"name": ["A"]}}]"#,
            "users.json: index 0: \"name\" must be a string, not an array",
        ),
        (
            r#"[{"username": "a", "attributes": "email=x"}]"#,
            "users.json: index 0: \"attributes\" must be an object of name to value, or a list \
             of {\"Name\", \"Value\"}, not a string",
        ),
        (
            r#"{"username": "a"}"#,
            "users.json: expected an array of users, or an object with a \"Users\" array (as \
             `aws cognito-idp list-users` prints)",
        ),
        (
            "[{\"username\": \"a\"},\n {\"username\": }]",
            "users.json: not valid JSON: expected value at line 2 column 15",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error_of(json(text)), expected, "for {text}");
    }
}

#[test]
fn the_format_follows_the_extension_else_the_content() {
    let as_json = parse(Path::new("users"), b" [{\"username\": \"a\"}]").expect("sniffed JSON");
    assert_eq!(as_json[0].at, Location::Index(0));
    let as_csv = parse(Path::new("users.txt"), b"username\na\n").expect("sniffed CSV");
    assert_eq!(as_csv[0].at, Location::Line(2));
    // The extension wins over the content.
    let err = parse(Path::new("users.CSV"), b"[{\"username\": \"a\"}]").expect_err("CSV");
    assert!(err.message.contains("no username column"), "{err}");
    let err = parse(Path::new("users.json"), b"username\na\n").expect_err("JSON");
    assert!(err.message.starts_with("not valid JSON"), "{err}");
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let err = load(Path::new("/nonexistent/users.csv")).expect_err("no such file");
    assert_eq!(err.at, None);
    let shown = err.to_string();
    assert!(
        shown.starts_with("/nonexistent/users.csv: cannot read the users file: "),
        "{shown}"
    );
}

#[test]
fn seed_pool_adds_file_users_to_the_demo_users_and_refuses_duplicates() {
    let a = temp_file("pool-a.csv", "username,phone_number\npaul,+15555550100\n");
    let b = temp_file(
        "pool-b.json",
        r#"[{"username": "Alice", "status": "CONFIRMED"}]"#,
    );
    let seeded = seed_pool(3, 1, &[a.clone(), b.clone()], None).expect("seeded");
    assert_eq!(
        seeded.usernames,
        [
            "user-000001",
            "user-000002",
            "user-000003",
            "invited-000001",
            "paul",
            "Alice"
        ]
    );
    let names: Vec<&str> = seeded.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(
        names,
        [
            "user-000001",
            "user-000002",
            "user-000003",
            "invited-000001",
            "paul",
            "Alice"
        ]
    );

    // Against the demo pool's names, missing ones included.
    let clash = temp_file("pool-clash.csv", "username\nzoe\nuser-000005\n");
    let err = seed_pool(10, 0, std::slice::from_ref(&clash), None).expect_err("--seed's");
    assert_eq!(err.path, clash);
    assert_eq!(err.at, Some(Location::Line(3)));
    assert_eq!(
        err.message,
        "duplicate username \"user-000005\": already seeded by --seed"
    );

    // Across files, by the pool's case rule.
    let c = temp_file("pool-c.csv", "username\nbob\nalice\n");
    assert!(seed_pool(0, 0, &[b.clone(), c.clone()], None).is_ok());
    let err = seed_pool(0, 0, &[b.clone(), c.clone()], Some(false)).expect_err("folded");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 3: duplicate username \"alice\": already seeded by {} index 0 (as \
             \"Alice\"; the pool is case-insensitive)",
            c.display(),
            b.display()
        )
    );
    let err = seed_pool(0, 0, &[a.clone(), a.clone()], None).expect_err("the same file twice");
    assert_eq!(err.at, Some(Location::Line(2)));
    assert!(err.message.contains("already seeded by"), "{err}");

    let err = seed_pool(0, 0, &[PathBuf::from("/nonexistent.json")], None).expect_err("none");
    assert!(
        err.to_string()
            .starts_with("/nonexistent.json: cannot read")
    );
}

#[test]
fn created_dates_take_rfc3339_offsets_dates_and_epoch_seconds() {
    let at = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(parse_time("2024-01-01T00:00:00Z"), at(1_704_067_200));
    assert_eq!(
        parse_time("2024-01-01T00:00:00.000000+00:00"),
        at(1_704_067_200)
    );
    assert_eq!(parse_time("2024-01-01T01:30:00+01:30"), at(1_704_067_200));
    assert_eq!(parse_time("2023-12-31T19:00:00-05:00"), at(1_704_067_200));
    assert_eq!(parse_time("2024-01-01 00:00:00"), at(1_704_067_200));
    assert_eq!(parse_time("2024-01-01"), at(1_704_067_200));
    assert_eq!(parse_time("1704067200"), at(1_704_067_200));
    assert_eq!(parse_time("soon"), None);
    assert_eq!(parse_time("-5"), None);
}
