use super::*;

async fn read(text: &[u8]) -> Result<Vec<Input>, CsvError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    std::fs::write(&path, text).unwrap();
    let mut src = CsvSource::open(path).await?;
    let mut out = Vec::new();
    while let Some(i) = src.next().await {
        out.push(i);
    }
    assert!(src.take_failure().is_none());
    Ok(out)
}

fn job(i: &Input) -> &Job {
    match i {
        Input::Job(j) => j,
        Input::Unreadable(u) => panic!("expected a job, got {u:?}"),
    }
}

fn unreadable(i: &Input) -> &Unreadable {
    match i {
        Input::Unreadable(u) => u,
        Input::Job(j) => panic!("expected unreadable, got {j:?}"),
    }
}

#[tokio::test]
async fn header_aliases_are_case_insensitive_and_bom_tolerated() {
    for header in [
        "username",
        "Username",
        "USERNAME",
        "cognito:username",
        "\u{feff}username",
    ] {
        let text = format!("email,{header},status\na@x,alice,UNCONFIRMED\n");
        let inputs = read(text.as_bytes()).await.unwrap();
        assert_eq!(inputs.len(), 1, "{header}");
        assert_eq!(job(&inputs[0]).request.username, "alice", "{header}");
        assert_eq!(job(&inputs[0]).origin, Origin::Csv { line: 2 });
    }
}

#[tokio::test]
async fn every_request_field_is_read() {
    let text = "Username,Client_ID,client_metadata.Campaign,client_metadata.src,analytics_endpoint_id,encoded_data,ip_address,email\n\
                bob,c1,spring,csv,ep-1,ENC==,192.0.2.1,b@x\n\
                carol,,,,,,,\n";
    let inputs = read(text.as_bytes()).await.unwrap();
    let bob = &job(&inputs[0]).request;
    assert_eq!(bob.username, "bob");
    assert_eq!(bob.client_id.as_deref(), Some("c1"));
    assert_eq!(
        bob.client_metadata.get("Campaign").map(String::as_str),
        Some("spring")
    );
    assert_eq!(
        bob.client_metadata.get("src").map(String::as_str),
        Some("csv")
    );
    assert_eq!(bob.analytics_endpoint_id.as_deref(), Some("ep-1"));
    assert_eq!(bob.encoded_data.as_deref(), Some("ENC=="));
    assert_eq!(bob.ip_address.as_deref(), Some("192.0.2.1"));
    let carol = &job(&inputs[1]).request;
    assert_eq!(
        carol.client_id, None,
        "empty cells are absent, not empty strings"
    );
    assert!(carol.client_metadata.is_empty());
}

#[tokio::test]
async fn bad_rows_name_their_line_and_the_rest_goes_on() {
    let long = "x".repeat(129);
    let mut text = format!("username,email\n,blank@x\n{long},long@x\nok1,a@x\nextra,a@x,more\n");
    text.push_str("ok2,b@x\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"bad\xff\xfeutf8,c@x\nok3,c@x\n");
    let inputs = read(&bytes).await.unwrap();
    assert_eq!(inputs.len(), 7);
    let u = unreadable(&inputs[0]);
    assert_eq!(u.origin, Origin::Csv { line: 2 });
    assert!(
        u.reason.contains("line 2") && u.reason.contains("empty"),
        "{}",
        u.reason
    );
    let u = unreadable(&inputs[1]);
    assert!(
        u.reason.contains("line 3") && u.reason.contains("129"),
        "{}",
        u.reason
    );
    assert_eq!(job(&inputs[2]).request.username, "ok1");
    let u = unreadable(&inputs[3]);
    assert!(
        u.reason.contains("line 5") && u.reason.contains("field count"),
        "{}",
        u.reason
    );
    assert_eq!(job(&inputs[4]).request.username, "ok2");
    let u = unreadable(&inputs[5]);
    assert!(
        u.reason.contains("line 7") && u.reason.contains("UTF-8"),
        "{}",
        u.reason
    );
    assert_eq!(job(&inputs[6]).request.username, "ok3");
}

#[tokio::test]
async fn a_record_over_the_limit_is_invalid_by_line_and_the_rest_goes_on() {
    let long = "x".repeat(MAX_RECORD_BYTES + 1);
    let mut text = format!("username,email\nok1,a@x\n{long},b@x\nok2,c@x\n");
    // An unbalanced quote that closes four lines later, in a field over the limit.
    text.push_str(&format!(
        "\"{},d@x\nin1,e\nin2,f\nin3,g\n\",h\nok3,i@x\n",
        "y".repeat(MAX_RECORD_BYTES)
    ));
    text.push_str("ok4,j@x\n");
    let inputs = read(text.as_bytes()).await.unwrap();
    assert_eq!(inputs.len(), 6, "{inputs:?}");
    assert_eq!(job(&inputs[0]).request.username, "ok1");
    let u = unreadable(&inputs[1]);
    assert_eq!(u.origin, Origin::Csv { line: 3 });
    assert!(
        u.reason.starts_with("line 3: record is over 64 KiB"),
        "{}",
        u.reason
    );
    assert_eq!(job(&inputs[2]).request.username, "ok2");
    assert_eq!(job(&inputs[2]).origin, Origin::Csv { line: 4 });
    let u = unreadable(&inputs[3]);
    assert_eq!(u.origin, Origin::Csv { line: 5 });
    assert!(
        u.reason.contains("lines 5 to 9") && u.reason.contains("unbalanced quote"),
        "{}",
        u.reason
    );
    assert_eq!(job(&inputs[4]).request.username, "ok3");
    assert_eq!(job(&inputs[4]).origin, Origin::Csv { line: 10 });
    assert_eq!(job(&inputs[5]).origin, Origin::Csv { line: 11 });

    // A quote never closed: one outcome for the rest of the file, which is never held.
    let text = format!(
        "username\nok1\n\"{}\nrest1\nrest2\n",
        "z".repeat(MAX_RECORD_BYTES)
    );
    let inputs = read(text.as_bytes()).await.unwrap();
    assert_eq!(inputs.len(), 2);
    let u = unreadable(&inputs[1]);
    assert!(u.reason.contains("never closed"), "{}", u.reason);
}

#[tokio::test]
async fn client_ids_and_usernames_are_checked_like_cognito_does() {
    let text = "username,client_id\nok,c_1+x\nbad,c-1\nlong,".to_owned()
        + &"c".repeat(129)
        + "\nal\u{200B}ice,c1\n";
    let inputs = read(text.as_bytes()).await.unwrap();
    assert_eq!(job(&inputs[0]).request.client_id.as_deref(), Some("c_1+x"));
    let u = unreadable(&inputs[1]);
    assert!(
        u.reason.contains("line 3") && u.reason.contains("client_id"),
        "{}",
        u.reason
    );
    assert!(unreadable(&inputs[2]).reason.contains("129"));
    assert!(unreadable(&inputs[3]).reason.contains("U+200B"));
}

#[tokio::test]
async fn neutralised_usernames_read_back_as_written_by_discover() {
    let text = "username\n'+15551234567\n'-dash\n''=two\n'plain\n@at\n";
    let inputs = read(text.as_bytes()).await.unwrap();
    let names: Vec<_> = inputs
        .iter()
        .map(|i| job(i).request.username.clone())
        .collect();
    assert_eq!(names, ["+15551234567", "-dash", "'=two", "'plain", "@at"]);
}

#[test]
fn neutralise_guards_formulas_and_unneutralise_inverts_it() {
    assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
    for (cell, written) in [
        ("+15551234567", "'+15551234567"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'=x", "''=x"),
        ("alice", "alice"),
        ("'alice", "'alice"),
        ("", ""),
    ] {
        assert_eq!(neutralise(cell), written, "{cell:?}");
        assert_eq!(unneutralise(written), cell, "{written:?}");
    }
}

#[tokio::test]
async fn exactly_128_characters_is_fine() {
    let name = "é".repeat(128);
    let inputs = read(format!("username\n{name}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(job(&inputs[0]).request.username, name);
}

#[tokio::test]
async fn missing_username_column_or_header_is_a_usage_error() {
    let err = read(b"email,status\na@x,UNCONFIRMED\n")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("no username column"), "{err}");
    // What was found, and a hint for the usual mistakes.
    assert!(
        err.to_string()
            .contains("found 2 column(s): `email`, `status`. The `email` column"),
        "{err}"
    );
    let err = read(b"username;client_id\nalice;c\n").await.err().unwrap();
    assert!(
        err.to_string()
            .contains("found 1 column(s): `username;client_id`. The file looks separated by `;`"),
        "{err}"
    );
    // No header row: the first row is someone's name, and is not shown.
    let err = read(b"alice@example.com,x\nbob@example.com,y\n")
        .await
        .err()
        .unwrap();
    assert!(!err.to_string().contains("alice"), "{err}");
    assert!(err.to_string().contains("looks like data"), "{err}");
    let err = read(b"").await.err().unwrap();
    assert!(err.to_string().contains("header row is required"), "{err}");
}

#[test]
fn counting_matches_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    std::fs::write(&path, "username\na\nb\n\"c\nd\"\n").unwrap();
    assert_eq!(count_records(&path), Some(3));
}

mod properties {
    use super::*;
    use crate::job::check_username;
    use proptest::prelude::*;

    fn read_sync(bytes: &[u8]) -> Result<Vec<Input>, CsvError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        rt.block_on(read(bytes))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever the cells hold (quotes, commas, line breaks, any Unicode), a file written
        /// by a CSV writer reads back row for row: one input per record, in order, with the
        /// right line numbers and every readable username intact.
        #[test]
        fn written_rows_read_back(
            rows in proptest::collection::vec(
                ("\\PC{0,140}|", "\\PC{0,30}|", "\\PC{0,30}|"),
                0..40,
            )
        ) {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["username", "client_metadata.note", "email"]).unwrap();
            for (u, note, email) in &rows {
                w.write_record([u, note, email]).unwrap();
            }
            let bytes = w.into_inner().unwrap();
            let inputs = read_sync(&bytes).unwrap();
            // Three cells are never an empty line (the writer puts the commas), so every
            // record is read.
            let expected: Vec<_> = rows.iter().collect();
            prop_assert_eq!(inputs.len(), expected.len());
            let mut last_line = 1;
            for (input, (u, note, _)) in inputs.iter().zip(expected) {
                match input {
                    Input::Job(j) => {
                        // A `'` before a formula character is `discover`'s neutralising.
                        let u = unneutralise(u);
                        prop_assert_eq!(j.request.username.as_str(), u);
                        prop_assert!(check_username(u).is_ok());
                        prop_assert_eq!(
                            j.request.client_metadata.get("note").map(String::as_str),
                            (!note.is_empty()).then_some(note.as_str())
                        );
                        let Origin::Csv { line } = j.origin else { unreachable!() };
                        prop_assert!(line > last_line);
                        last_line = line;
                    }
                    Input::Unreadable(bad) => {
                        prop_assert!(check_username(unneutralise(u)).is_err());
                        prop_assert!(bad.reason.starts_with("line "));
                    }
                }
            }
        }

        /// Every cell survives `discover`'s neutralising and `backfill`'s reading back.
        #[test]
        fn neutralising_round_trips(cell in "['=+@\\-\t\rab]{0,6}|\\PC{0,20}") {
            let written = neutralise(&cell);
            prop_assert_eq!(unneutralise(&written), cell.as_str());
            prop_assert!(!written.starts_with(formula_start));
        }

        /// Arbitrary bytes after a valid header never panic and never stop the file early:
        /// each record is a job or a named problem.
        #[test]
        fn any_bytes_yield_named_inputs(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut bytes = b"username,email\n".to_vec();
            bytes.extend_from_slice(&body);
            let inputs = read_sync(&bytes).unwrap();
            for input in inputs {
                if let Input::Unreadable(bad) = input {
                    prop_assert!(bad.reason.starts_with("line "), "{}", bad.reason);
                }
            }
        }
    }
}
