//! Unit tests of the run-time state: the rate bucket, the ledger, the fault knobs.

use super::*;

fn record() -> SendRecord {
    SendRecord {
        action: SendAction::Confirm,
        username: "u".into(),
        requested_as: "U".into(),
        delivery_medium: "EMAIL".into(),
        client_id: "c".into(),
        client_metadata: BTreeMap::new(),
        analytics_endpoint_id: None,
        encoded_data: None,
        ip_address: None,
        secret_hash_given: false,
        at: SystemTime::now(),
    }
}

#[test]
fn bucket_allows_a_burst_of_quota_then_refills() {
    let t0 = Instant::now();
    let mut b = Bucket::new(Some(3));
    assert!((0..3).all(|_| b.try_acquire(t0)));
    assert!(!b.try_acquire(t0), "bucket empty");
    assert!(
        !b.try_acquire(t0),
        "throttled calls take no token and get none"
    );
    assert!(
        b.try_acquire(t0 + Duration::from_millis(334)),
        "one token per 1/3 s"
    );
    assert!(!b.try_acquire(t0 + Duration::from_millis(340)));
    // Long idle refills only up to capacity.
    let later = t0 + Duration::from_secs(60);
    assert_eq!((0..10).filter(|_| b.try_acquire(later)).count(), 3);
    let mut off = Bucket::new(None);
    assert!((0..1000).all(|_| off.try_acquire(t0)));
}

#[test]
fn ledger_enforces_attempt_limit_before_email_quota() {
    let mut l = Ledger::new(3, Some(2), Some(3), true);
    assert_eq!(l.try_send(0, true, record), Ok(()));
    assert_eq!(l.try_send(0, true, record), Ok(()));
    assert_eq!(l.try_send(0, true, record), Err(SendRefused::AttemptLimit));
    assert_eq!(l.try_send(1, true, record), Ok(()));
    assert_eq!(l.try_send(1, true, record), Err(SendRefused::EmailQuota));
    assert_eq!(l.try_send(2, false, record), Ok(()), "SMS is not email");
    assert_eq!(
        (
            l.sends_total,
            l.emails_sent,
            l.distinct_users,
            l.repeated_users
        ),
        (4, 3, 3, 1)
    );
    assert_eq!(l.records.len(), 4);
    l.email_quota = None;
    assert_eq!(l.try_send(1, true, record), Ok(()));
}

#[test]
fn invitations_share_the_email_quota_but_not_the_attempt_limit() {
    let mut l = Ledger::new(2, Some(1), Some(2), true);
    assert_eq!(l.try_send(0, true, record), Ok(()));
    assert_eq!(l.try_invite(0, true, record), Ok(()), "no attempt limit");
    assert_eq!(l.try_invite(1, true, record), Err(SendRefused::EmailQuota));
    assert_eq!(l.try_send(1, true, record), Err(SendRefused::EmailQuota));
    assert_eq!(l.try_invite(1, false, record), Ok(()), "SMS is not email");
    assert_eq!(l.try_invite(1, false, record), Ok(()));
    assert_eq!(
        (
            l.sends_total,
            l.emails_sent,
            l.invitations_total,
            l.distinct_invited,
            l.repeated_invited
        ),
        (1, 2, 3, 2, 1)
    );
    assert_eq!(
        (l.per_user.clone(), l.invites_per_user.clone()),
        (vec![1, 0], vec![1, 2])
    );
}

#[test]
fn fault_knobs_round_trip_and_any_needs_a_slow_hold() {
    let knobs = FaultKnobs::default();
    assert!(!knobs.any());
    assert_eq!(knobs.get(), Faults::default());
    let slow = Faults {
        slow_rate: 0.25,
        slow_latency: Duration::from_millis(1500),
        ..Faults::default()
    };
    knobs.set(&slow);
    assert!(knobs.any());
    assert_eq!(knobs.get(), slow);
    // A slow rate with no hold, or a hold never drawn, injects nothing.
    knobs.set(&Faults {
        slow_rate: 1.0,
        ..Faults::default()
    });
    assert!(!knobs.any());
    knobs.set(&Faults {
        slow_latency: Duration::from_secs(1),
        ..Faults::default()
    });
    assert!(!knobs.any());
    knobs.set(&Faults {
        slow_rate: 7.0,
        slow_latency: Duration::from_secs(1),
        ..Faults::default()
    });
    assert_eq!(knobs.get().slow_rate, 1.0, "clamped");
}

#[test]
fn targets_map_to_operations() {
    let op = |t: &str| Operation::from_target(t.as_bytes());
    assert_eq!(
        op("AWSCognitoIdentityProviderService.ResendConfirmationCode"),
        Operation::ResendConfirmationCode
    );
    assert_eq!(
        op("AWSCognitoIdentityProviderService.ListUsers"),
        Operation::ListUsers
    );
    assert_eq!(
        op("AWSCognitoIdentityProviderService.DescribeUserPool"),
        Operation::DescribeUserPool
    );
    assert_eq!(
        op("AWSCognitoIdentityProviderService.DescribeUserPoolClient"),
        Operation::DescribeUserPoolClient
    );
    assert_eq!(
        op("AWSCognitoIdentityProviderService.SignUp"),
        Operation::Unknown
    );
    assert_eq!(op("ListUsers"), Operation::Unknown);
}
