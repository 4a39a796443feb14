//! Unit tests of the pool model: SecretHash, masking, delivery, subs, resolution, seeding.

use super::*;

#[test]
fn demo_invited_users_wait_for_their_first_sign_in() {
    let users = demo_invited(4);
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(
        names,
        [
            "invited-000001",
            "invited-000002",
            "invited-000003",
            "invited-000004"
        ]
    );
    assert!(
        users
            .iter()
            .all(|u| u.status == UserStatus::ForceChangePassword && u.email.is_some())
    );
    assert_eq!(users[0].phone, None);
    assert_eq!(users[1].phone.as_deref(), Some("+15550000002"));
}

#[test]
fn secret_hash_matches_python_hmac() {
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"s3cret",
    //   b"alice"+b"client1",hashlib.sha256).digest()).decode())'
    assert_eq!(
        secret_hash("s3cret", "alice", "client1"),
        "OLH8A5YiDq5WyVbgkLVAtm0hdL7P1QQ+z61K3T8oAEk="
    );
}

#[test]
fn client_verifies_its_own_hashes_only() {
    let client = Client::new(ClientSpec::new("client1").with_secret("s3cret"));
    assert!(client.verify_secret_hash("alice", "OLH8A5YiDq5WyVbgkLVAtm0hdL7P1QQ+z61K3T8oAEk="));
    assert!(!client.verify_secret_hash("bob", "OLH8A5YiDq5WyVbgkLVAtm0hdL7P1QQ+z61K3T8oAEk="));
    assert!(!client.verify_secret_hash("alice", "garbage"));
    let other = Client::new(ClientSpec::new("client2").with_secret("s3cret"));
    assert!(!other.verify_secret_hash("alice", "OLH8A5YiDq5WyVbgkLVAtm0hdL7P1QQ+z61K3T8oAEk="));
}

#[test]
fn masks_like_cognito() {
    assert_eq!(mask_email("alice@example.com"), "a***@e***");
    assert_eq!(mask_email("x@y"), "x***@y***");
    assert_eq!(mask_email("no-at-sign"), "n***@***");
    assert_eq!(mask_phone("+15555550123"), "+*******0123");
    assert_eq!(mask_phone("123"), "123");
    assert_eq!(simulated_delivery("bob@corp.io").destination, "b***@c***");
    let fake = simulated_delivery("ghost");
    assert!(fake.destination.starts_with("g***@"), "{fake:?}");
    assert_eq!(fake, simulated_delivery("ghost"), "stable across calls");
}

#[test]
fn delivery_follows_auto_verified_attributes_sms_first() {
    let both = PoolSettings::default();
    let d = delivery_for(Some("a@b.c"), Some("+15555550123"), &both).expect("has both");
    assert_eq!(
        (d.delivery_medium, d.attribute_name),
        ("SMS", "phone_number"),
        "both verified: Cognito sends the code by SMS"
    );
    let d = delivery_for(Some("a@b.c"), None, &both).expect("has email");
    assert_eq!((d.delivery_medium, d.attribute_name), ("EMAIL", "email"));
    assert_eq!(delivery_for(None, None, &both), None);
    let email_only = PoolSettings {
        auto_verified: vec![VerifiedAttribute::Email],
        ..PoolSettings::default()
    };
    let d = delivery_for(Some("a@b.c"), Some("+15555550123"), &email_only).expect("email");
    assert_eq!(d.delivery_medium, "EMAIL");
    assert_eq!(delivery_for(None, Some("+15555550123"), &email_only), None);
    let body = Delivery::response_body(&delivery_for(Some("a@b.c"), None, &both).expect("email"));
    assert_eq!(
        &body[..],
        br#"{"CodeDeliveryDetails":{"Destination":"a***@b***","DeliveryMedium":"EMAIL","AttributeName":"email"}}"#
    );
}

#[test]
fn users_get_stable_subs_and_overridable_attributes() {
    let s = PoolSettings::default();
    let a = User::from_spec(UserSpec::new("alice", UserStatus::Unconfirmed), &s);
    let b = User::from_spec(
        UserSpec::new("alice", UserStatus::Confirmed).with_attribute("email", "x@y.z"),
        &s,
    );
    assert_eq!(a.attribute("sub"), b.attribute("sub"));
    let sub = a.attribute("sub").expect("sub is always set");
    assert_eq!(sub, sub_for("alice"));
    assert_eq!(sub.len(), 36);
    assert_eq!(&sub[14..15], "4");
    assert_eq!(a.attribute("email"), Some("alice@example.com"));
    assert_eq!(a.attribute("email_verified"), Some("false"));
    assert_eq!(b.attribute("email"), Some("x@y.z"));
    assert_eq!(b.attribute("email_verified"), Some("true"));
    let c = User::from_spec(
        UserSpec::new("carol", UserStatus::Unconfirmed).with_sub("my-sub"),
        &s,
    );
    assert_eq!(c.attribute("sub"), Some("my-sub"));
}

fn pool(settings: PoolSettings, users: Vec<UserSpec>) -> Result<Pool, String> {
    Pool::new(users, settings)
}

#[test]
fn resolves_usernames_subs_and_aliases_as_cognito() {
    let ci = PoolSettings {
        case_sensitive: Some(false),
        alias_attributes: vec![AliasAttribute::Email, AliasAttribute::PreferredUsername],
        ..PoolSettings::default()
    };
    let p = pool(
        ci,
        vec![
            UserSpec::new("Alice", UserStatus::Unconfirmed)
                .with_email(Some("Alice@Example.com".into()))
                .with_email_verified(true)
                .with_preferred_username("Ally"),
            UserSpec::new("bob", UserStatus::Unconfirmed),
        ],
    )
    .expect("valid pool");
    let alice = p.resolve("Alice");
    assert!(alice.is_some());
    for name in [
        "alice",
        "ALICE",
        "alice@example.com",
        "ally",
        &sub_for("Alice"),
    ] {
        assert_eq!(p.resolve(name), alice, "{name}");
    }
    assert!(p.resolve("bob").is_some());
    assert_eq!(
        p.resolve("bob@example.com"),
        None,
        "unverified email is no alias"
    );
    assert_eq!(p.resolve("nobody"), None);

    let cs = pool(
        PoolSettings::default(),
        vec![UserSpec::new("Alice", UserStatus::Unconfirmed)],
    )
    .expect("valid pool");
    assert!(cs.resolve("Alice").is_some());
    assert_eq!(cs.resolve("alice"), None, "case-sensitive by default");
    assert_eq!(
        cs.resolve("Alice@example.com"),
        None,
        "no aliases by default"
    );
    assert!(
        cs.resolve(&sub_for("Alice")).is_some(),
        "sub always resolves"
    );

    let by_email = PoolSettings {
        username_attributes: vec![UsernameAttribute::Email],
        ..PoolSettings::default()
    };
    let uuid = sub_for("erin");
    let p = pool(
        by_email,
        vec![
            UserSpec::new(uuid.clone(), UserStatus::Unconfirmed)
                .with_sub(uuid.clone())
                .with_email(Some("erin@example.com".into())),
        ],
    )
    .expect("valid pool");
    assert_eq!(p.resolve("erin@example.com"), p.resolve(&uuid));
    assert!(
        p.resolve("erin@example.com").is_some(),
        "no verification needed"
    );
    assert_eq!(p.resolve("Erin@example.com"), None, "case-sensitive pool");
}

#[test]
fn seeding_errors() {
    let ci = || PoolSettings {
        case_sensitive: Some(false),
        ..PoolSettings::default()
    };
    let err = pool(
        ci(),
        vec![
            UserSpec::new("Alice", UserStatus::Unconfirmed),
            UserSpec::new("alice", UserStatus::Confirmed),
        ],
    )
    .err()
    .expect("fold together");
    assert!(err.contains("case-insensitive"), "{err}");
    assert!(
        pool(
            PoolSettings::default(),
            vec![
                UserSpec::new("Alice", UserStatus::Unconfirmed),
                UserSpec::new("alice", UserStatus::Confirmed),
            ],
        )
        .is_ok(),
        "distinct users in a case-sensitive pool"
    );
    let aliases = PoolSettings {
        alias_attributes: vec![AliasAttribute::Email],
        ..PoolSettings::default()
    };
    assert!(
        pool(
            aliases.clone(),
            vec![UserSpec::new("a@b.c", UserStatus::Unconfirmed)]
        )
        .is_err()
    );
    let shared = |n: &str| {
        UserSpec::new(n, UserStatus::Confirmed).with_email(Some("same@example.com".into()))
    };
    assert!(pool(aliases.clone(), vec![shared("x"), shared("y")]).is_err());
    let by_email = PoolSettings {
        username_attributes: vec![UsernameAttribute::Email],
        ..PoolSettings::default()
    };
    assert!(
        pool(
            by_email,
            vec![UserSpec::new("a@b.c", UserStatus::Unconfirmed)]
        )
        .is_err()
    );
    let both = PoolSettings {
        username_attributes: vec![UsernameAttribute::Email],
        ..aliases
    };
    assert!(pool(both, vec![]).is_err());
}

#[test]
fn demo_pool_has_the_documented_mix() {
    let (users, names) = demo_pool(1000);
    assert_eq!(names.len(), 1000);
    assert_eq!(names[0], "user-000001");
    assert_eq!(users.len(), 900);
    let unconfirmed = users
        .iter()
        .filter(|u| u.status == UserStatus::Unconfirmed)
        .count();
    assert_eq!(unconfirmed, 700);
    let (again, _) = demo_pool(1000);
    assert!(
        users
            .iter()
            .zip(&again)
            .all(|(a, b)| a.username == b.username && a.created == b.created)
    );
}
