//! A pool seeded from files, as the binary's `--users` seeds it ([`crate::seed::seed_pool`]),
//! through the real AWS SDK: a phone-only user gets its code by SMS to a masked number, an email
//! user by email, the statuses and attributes of the file are what AdminGetUser reads, and
//! `--csv-out` lists the file's users.

use aws_sdk_cognitoidentityprovider::types::DeliveryMediumType;

use super::*;
use crate::seed::seed_pool;

/// A file in a directory of this test process's own, holding `contents`.
fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cognito-emulator-seeding-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("temp file written");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_seeded_from_files_get_codes_by_their_medium() {
    let csv = temp_file(
        "users.csv",
        "username,status,email,phone_number,phone_number_verified,custom:plan\n\
         paul,UNCONFIRMED,,+15555550100,true,gold\n\
         erin,UNCONFIRMED,erin@example.org,,,\n\
         carl,CONFIRMED,carl@example.org,,,\n",
    );
    let json = temp_file(
        "users.json",
        r#"[{"username": "jude", "attributes": {"phone_number": "+15555550177",
             "phone_number_verified": "true"}},
            {"username": "ivan", "status": "FORCE_CHANGE_PASSWORD", "email": "ivan@example.org"}]"#,
    );
    let seeded = seed_pool(2, 0, &[csv, json], None).expect("seeded from the files");
    let csv_out = temp_file("out.csv", "");
    seeded.write_csv(&csv_out).expect("--csv-out written");
    assert_eq!(
        std::fs::read_to_string(&csv_out).expect("read back"),
        "username,email,status\n\
         user-000001,user-000001@example.com,UNCONFIRMED\n\
         user-000002,user-000002@example.com,UNCONFIRMED\n\
         paul,,UNCONFIRMED\n\
         erin,erin@example.org,UNCONFIRMED\n\
         carl,carl@example.org,CONFIRMED\n\
         jude,,UNCONFIRMED\n\
         ivan,ivan@example.org,FORCE_CHANGE_PASSWORD\n"
    );

    let emu = Emulator::builder()
        .client(ClientSpec::new("plain"))
        .users(seeded.users)
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts");
    let c = sdk(&emu);

    // Phone-only users, from either format: by SMS to the masked number.
    for (user, masked) in [("paul", "+*******0100"), ("jude", "+*******0177")] {
        let out = resend(&c, "plain", user).await.expect("code sent");
        let d = out.code_delivery_details().expect("CodeDeliveryDetails");
        assert_eq!(
            d.delivery_medium(),
            Some(&DeliveryMediumType::Sms),
            "{user}"
        );
        assert_eq!(d.attribute_name(), Some("phone_number"), "{user}");
        assert_eq!(d.destination(), Some(masked), "{user}");
    }
    // An email user by email.
    let out = resend(&c, "plain", "erin").await.expect("code sent");
    let d = out.code_delivery_details().expect("CodeDeliveryDetails");
    assert_eq!(d.delivery_medium(), Some(&DeliveryMediumType::Email));
    assert_eq!(d.attribute_name(), Some("email"));
    assert_eq!(d.destination(), Some("e***@e***"));
    // The file's statuses hold.
    let err = resend(&c, "plain", "carl").await.expect_err("confirmed");
    assert_eq!(code_and_message(err).1, "User is already confirmed.");
    // The demo users are there too.
    resend(&c, "plain", "user-000001")
        .await
        .expect("a --seed user");

    let paul = c
        .admin_get_user()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .username("paul")
        .send()
        .await
        .expect("paul");
    assert_eq!(paul.user_status().map(|s| s.as_str()), Some("UNCONFIRMED"));
    let attrs: HashMap<&str, &str> = paul
        .user_attributes()
        .iter()
        .map(|a| (a.name(), a.value().unwrap_or_default()))
        .collect();
    assert_eq!(attrs.get("phone_number"), Some(&"+15555550100"));
    assert_eq!(attrs.get("phone_number_verified"), Some(&"true"));
    assert_eq!(attrs.get("custom:plan"), Some(&"gold"));
    assert!(!attrs.contains_key("email"), "{attrs:?}");
    let ivan = c
        .admin_get_user()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .username("ivan")
        .send()
        .await
        .expect("ivan");
    assert_eq!(
        ivan.user_status().map(|s| s.as_str()),
        Some("FORCE_CHANGE_PASSWORD")
    );

    let sends = emu.sends();
    let by_user: HashMap<&str, &str> = sends
        .iter()
        .map(|s| (s.username.as_str(), s.delivery_medium.as_str()))
        .collect();
    assert_eq!(by_user.get("paul"), Some(&"SMS"));
    assert_eq!(by_user.get("jude"), Some(&"SMS"));
    assert_eq!(by_user.get("erin"), Some(&"EMAIL"));
    assert_eq!(
        emu.stats().emails_sent,
        2,
        "erin and user-000001; SMS don't count"
    );
    emu.shutdown().await;
}
