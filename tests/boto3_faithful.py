#!/usr/bin/env python3
"""Checks that boto3 (a second, independent AWS SDK) reads the Cognito emulator as Cognito.

Run by tests/it/emulator_boto3.rs, which starts the emulators, passes their endpoints and fixture
names on the command line, and afterwards checks the emulators' ground truth (which sends were
recorded). Every error must arrive with Cognito's code (e.response["Error"]["Code"]) and message,
and every success must parse into boto3's output shapes. The SecretHash is computed here with
Python's hmac module, independently of both the worker and the emulator.

Exit status 0 means every check passed; any failed check raises and exits non-zero.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import sys

import boto3
import botocore.exceptions
from botocore.config import Config

ATTEMPT_LIMIT = "Attempt limit exceeded, please try after some time."
EMAIL_QUOTA = (
    "Exceeded daily email limit for the operation or the account. If a higher limit is "
    "required, please configure your user pool to use your own Amazon SES configuration for "
    "sending email."
)


def client(endpoint):
    # No retries: an error must reach us as the first answer, not be retried away.
    return boto3.client(
        "cognito-idp",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def secret_hash(secret, username, client_id):
    digest = hmac.new(
        secret.encode(), (username + client_id).encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def expect_error(what, code, message, call, status=400, **kwargs):
    """Calls `call(**kwargs)` and checks it fails with Cognito's code, message and status."""
    try:
        call(**kwargs)
    except botocore.exceptions.ClientError as e:
        err = e.response["Error"]
        got_status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert err["Code"] == code, f"{what}: code {err['Code']!r}, expected {code!r}"
        if message is not None:
            assert (
                err["Message"] == message
            ), f"{what}: message {err['Message']!r}, expected {message!r}"
        assert got_status == status, f"{what}: HTTP {got_status}, expected {status}"
        print(f"ok: {what}: {code}")
        return e
    raise AssertionError(f"{what}: expected {code}, but the call succeeded")


def check_delivery(what, resp, destination, medium, attribute):
    d = resp["CodeDeliveryDetails"]
    got = (d["Destination"], d["DeliveryMedium"], d["AttributeName"])
    assert got == (destination, medium, attribute), f"{what}: got {got}"
    print(f"ok: {what}: {medium} to {destination}")


def check_main(a):
    c = client(a.main)
    resend = c.resend_confirmation_code

    expect_error(
        "unknown client",
        "ResourceNotFoundException",
        "User pool client nosuchclient does not exist.",
        resend,
        ClientId="nosuchclient",
        Username=a.user,
    )
    expect_error(
        "secret client without SecretHash",
        "NotAuthorizedException",
        f"Client {a.secret_client} is configured with secret but SECRET_HASH was not received",
        resend,
        ClientId=a.secret_client,
        Username=a.user,
    )
    expect_error(
        "wrong SecretHash",
        "NotAuthorizedException",
        f"Unable to verify secret hash for client {a.secret_client}",
        resend,
        ClientId=a.secret_client,
        Username=a.user,
        SecretHash=secret_hash(a.secret, a.user + "x", a.secret_client),
    )
    # The one send with every optional member: the Rust side checks they were recorded.
    ok = resend(
        ClientId=a.secret_client,
        Username=a.user,
        SecretHash=secret_hash(a.secret, a.user, a.secret_client),
        ClientMetadata={"campaign": "reminder-1", "lang": "en"},
        AnalyticsMetadata={"AnalyticsEndpointId": "endpoint-42"},
        UserContextData={"IpAddress": "192.0.2.10", "EncodedData": "ZW5jb2RlZA=="},
    )
    check_delivery("valid SecretHash (Python hmac)", ok, "a***@e***", "EMAIL", "email")
    assert ok["ResponseMetadata"]["RequestId"], "x-amzn-RequestId is parsed"

    expect_error(
        "auto verification off",
        "InvalidParameterException",
        "Cannot resend codes. Auto verification not turned on.",
        resend,
        ClientId=a.noverify_client,
        Username=a.user,
    )
    expect_error(
        "username over 128 characters",
        "InvalidParameterException",
        "1 validation error detected: Value at 'username' failed to satisfy constraint: "
        "Member must have length less than or equal to 128",
        resend,
        ClientId=a.plain_client,
        Username="u" * 129,
    )
    for status, username in json.loads(a.not_unconfirmed).items():
        expect_error(
            f"{status} user",
            "InvalidParameterException",
            "User is already confirmed.",
            resend,
            ClientId=a.plain_client,
            Username=username,
        )
    expect_error(
        "unknown user",
        "UserNotFoundException",
        "Username/client id combination not found.",
        resend,
        ClientId=a.plain_client,
        Username="nobody-here",
    )
    ok = resend(ClientId=a.private_client, Username="nobody-here")
    d = ok["CodeDeliveryDetails"]
    assert d["DeliveryMedium"] == "EMAIL" and "***" in d["Destination"], d
    print("ok: PreventUserExistenceErrors simulates a success")

    ok = resend(ClientId=a.plain_client, Username=a.sms_user)
    check_delivery("phone-only user", ok, "+*******0123", "SMS", "phone_number")

    for _ in range(a.attempt_limit):
        resend(ClientId=a.plain_client, Username=a.limited_user)
    expect_error(
        "per-user attempt limit",
        "LimitExceededException",
        ATTEMPT_LIMIT,
        resend,
        ClientId=a.plain_client,
        Username=a.limited_user,
    )

    # AdminGetUser
    got = c.admin_get_user(UserPoolId=a.pool, Username=a.user)
    assert got["Username"] == a.user and got["UserStatus"] == "UNCONFIRMED", got
    assert got["Enabled"] is True
    assert isinstance(got["UserCreateDate"], datetime.datetime), got["UserCreateDate"]
    attrs = {x["Name"]: x["Value"] for x in got["UserAttributes"]}
    assert attrs["email"].startswith(a.user + "@") and len(attrs["sub"]) == 36, attrs
    print("ok: AdminGetUser parses")
    expect_error(
        "AdminGetUser unknown user",
        "UserNotFoundException",
        "User does not exist.",
        c.admin_get_user,
        UserPoolId=a.pool,
        Username="nobody-here",
    )
    expect_error(
        "AdminGetUser unknown pool",
        "ResourceNotFoundException",
        "User pool us-east-1_Nope does not exist.",
        c.admin_get_user,
        UserPoolId="us-east-1_Nope",
        Username=a.user,
    )

    # ListUsers: manual pagination, then boto3's own paginator, must agree.
    expected = sorted(json.loads(a.listed))
    seen, kwargs, pages = [], {}, 0
    while True:
        page = c.list_users(
            UserPoolId=a.pool, Filter=f'username ^= "{a.list_prefix}"', Limit=3, **kwargs
        )
        pages += 1
        for u in page["Users"]:
            assert isinstance(u["UserCreateDate"], datetime.datetime)
            seen.append(u["Username"])
        if "PaginationToken" not in page:
            break
        kwargs = {"PaginationToken": page["PaginationToken"]}
    assert seen == expected, f"ListUsers pages: {seen} != {expected}"
    assert pages == (len(expected) + 2) // 3, pages
    paginator = c.get_paginator("list_users")
    via_paginator = [
        u["Username"]
        for page in paginator.paginate(
            UserPoolId=a.pool,
            Filter=f'username ^= "{a.list_prefix}"',
            PaginationConfig={"PageSize": 2},
        )
        for u in page["Users"]
    ]
    assert via_paginator == expected, via_paginator
    print(f"ok: ListUsers paginates ({pages} pages of 3; boto3 paginator agrees)")
    unconfirmed = c.list_users(
        UserPoolId=a.pool,
        Filter='cognito:user_status = "unconfirmed"',
        AttributesToGet=["email"],
    )
    assert unconfirmed["Users"], "some users are unconfirmed"
    for u in unconfirmed["Users"]:
        assert u["UserStatus"] == "UNCONFIRMED", u
        assert {x["Name"] for x in u["Attributes"]} <= {"email"}, u["Attributes"]
    print("ok: ListUsers status filter and AttributesToGet")
    expect_error(
        "malformed filter",
        "InvalidParameterException",
        "Error while parsing filter.",
        c.list_users,
        UserPoolId=a.pool,
        Filter="username = alice",
    )
    expect_error(
        "bad pagination token",
        "InvalidParameterException",
        None,
        c.list_users,
        UserPoolId=a.pool,
        PaginationToken="garbage-token",
    )
    expect_error(
        "ListUsers limit over 60",
        "InvalidParameterException",
        "1 validation error detected: Value '61' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 60",
        c.list_users,
        UserPoolId=a.pool,
        Limit=61,
    )


def check_describe_main(a):
    """DescribeUserPool and DescribeUserPoolClient of a pool with the default settings."""
    c = client(a.main)
    pool = c.describe_user_pool(UserPoolId=a.pool)["UserPool"]
    assert pool["Id"] == a.pool, pool
    assert pool["Arn"].endswith(f":userpool/{a.pool}"), pool["Arn"]
    assert isinstance(pool["CreationDate"], datetime.datetime), pool["CreationDate"]
    assert isinstance(pool["LastModifiedDate"], datetime.datetime), pool["LastModifiedDate"]
    # Unset case sensitivity: no UsernameConfiguration at all (the API default, case-sensitive).
    assert "UsernameConfiguration" not in pool, pool
    assert "AliasAttributes" not in pool and "UsernameAttributes" not in pool, pool
    assert pool["AutoVerifiedAttributes"] == ["email", "phone_number"], pool
    email = pool["EmailConfiguration"]
    assert email["EmailSendingAccount"] == "DEVELOPER", email
    assert email["SourceArn"].startswith("arn:aws:ses:"), email
    assert pool["LambdaConfig"] == {}, pool["LambdaConfig"]
    assert isinstance(pool["EstimatedNumberOfUsers"], int) and pool["EstimatedNumberOfUsers"] > 0
    assert pool["MfaConfiguration"] == "OFF", pool
    print("ok: DescribeUserPool parses (default settings)")

    secret = c.describe_user_pool_client(UserPoolId=a.pool, ClientId=a.secret_client)[
        "UserPoolClient"
    ]
    assert secret["ClientId"] == a.secret_client and secret["UserPoolId"] == a.pool, secret
    assert secret["ClientSecret"] == a.secret, "ClientSecret of a client with a secret"
    assert secret["PreventUserExistenceErrors"] == "LEGACY", secret
    assert isinstance(secret["CreationDate"], datetime.datetime), secret
    plain = c.describe_user_pool_client(UserPoolId=a.pool, ClientId=a.plain_client)[
        "UserPoolClient"
    ]
    assert "ClientSecret" not in plain, plain
    assert plain["ClientName"] == a.plain_client, plain
    private = c.describe_user_pool_client(UserPoolId=a.pool, ClientId=a.private_client)[
        "UserPoolClient"
    ]
    assert private["PreventUserExistenceErrors"] == "ENABLED", private
    print("ok: DescribeUserPoolClient parses (secret only when there is one)")

    expect_error(
        "DescribeUserPool unknown pool",
        "ResourceNotFoundException",
        "User pool us-east-1_Nope does not exist.",
        c.describe_user_pool,
        UserPoolId="us-east-1_Nope",
    )
    expect_error(
        "DescribeUserPoolClient unknown client",
        "ResourceNotFoundException",
        "User pool client nosuchclient does not exist.",
        c.describe_user_pool_client,
        UserPoolId=a.pool,
        ClientId="nosuchclient",
    )
    expect_error(
        "ListUsers unknown pool",
        "ResourceNotFoundException",
        "User pool us-east-1_Nope does not exist.",
        c.list_users,
        UserPoolId="us-east-1_Nope",
    )


def check_settings(a):
    """A case-insensitive pool with email and preferred_username aliases."""
    c = client(a.settings)
    pool = c.describe_user_pool(UserPoolId=a.pool)["UserPool"]
    assert pool["Name"] == "signups", pool
    assert pool["UsernameConfiguration"] == {"CaseSensitive": False}, pool
    assert pool["AliasAttributes"] == ["email", "preferred_username"], pool
    assert pool["AutoVerifiedAttributes"] == ["email"], pool
    assert pool["EmailConfiguration"] == {"EmailSendingAccount": "COGNITO_DEFAULT"}, pool
    assert pool["LambdaConfig"] == {"CustomMessage": a.trigger}, pool
    print("ok: DescribeUserPool parses (case-insensitive, aliases, COGNITO_DEFAULT, trigger)")

    username, email, preferred = json.loads(a.aliased)
    for name in (username.lower(), email.upper(), preferred.upper(), a.aliased_sub):
        got = c.admin_get_user(UserPoolId=a.pool, Username=name)
        assert got["Username"] == username, (name, got["Username"])
    print("ok: AdminGetUser resolves any case, the verified email, preferred_username, sub")
    # The Rust side checks these three sends were recorded against the one canonical user.
    for name in (username.upper(), email.upper(), preferred):
        ok = c.resend_confirmation_code(ClientId=a.plain_client, Username=name)
        assert ok["CodeDeliveryDetails"]["DeliveryMedium"] == "EMAIL", ok
    print("ok: ResendConfirmationCode resolves the same names")
    expect_error(
        "unverified email is no alias",
        "UserNotFoundException",
        "Username/client id combination not found.",
        c.resend_confirmation_code,
        ClientId=a.plain_client,
        Username="ursula@example.com",
    )


def check_email_quota(a):
    c = client(a.email_quota)
    users = json.loads(a.email_users)
    ok = c.resend_confirmation_code(ClientId=a.plain_client, Username=users[0])
    check_delivery("send within the email quota", ok, f"{users[0][0]}***@e***", "EMAIL", "email")
    expect_error(
        "account email quota",
        "LimitExceededException",
        EMAIL_QUOTA,
        c.resend_confirmation_code,
        ClientId=a.plain_client,
        Username=users[1],
    )


def check_throttle(a):
    c = client(a.throttle)
    users = json.loads(a.throttle_users)
    # The bucket holds one token and refills one per second: the first call passes, and back
    # to back calls after it find the bucket empty.
    c.resend_confirmation_code(ClientId=a.plain_client, Username=users[0])
    throttled = 0
    for u in users[1:]:
        try:
            c.resend_confirmation_code(ClientId=a.plain_client, Username=u)
        except botocore.exceptions.ClientError as e:
            err = e.response["Error"]
            assert err["Code"] == "TooManyRequestsException", err
            assert err["Message"] == "Rate exceeded", err
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            throttled += 1
    assert throttled >= 1, "no call was throttled"
    print(f"ok: TooManyRequestsException 'Rate exceeded' ({throttled} throttled)")


def check_errors(a):
    c = client(a.errors)
    expect_error(
        "injected internal error",
        "InternalErrorException",
        "Internal server error.",
        c.resend_confirmation_code,
        status=500,
        ClientId=a.plain_client,
        Username=a.user,
    )


def check_drops(a):
    c = client(a.drops)
    try:
        c.resend_confirmation_code(ClientId=a.plain_client, Username=a.user)
    except botocore.exceptions.ConnectionClosedError:
        print("ok: dropped connection is ConnectionClosedError")
        return
    except botocore.exceptions.ClientError as e:
        raise AssertionError(f"dropped connection answered with HTTP: {e.response}") from e
    raise AssertionError("dropped connection: the call succeeded")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    for endpoint in ("main", "email-quota", "throttle", "errors", "drops", "settings"):
        p.add_argument(f"--{endpoint}", required=True, help="emulator endpoint URL")
    for name in (
        "pool",
        "secret",
        "secret-client",
        "plain-client",
        "noverify-client",
        "private-client",
        "user",
        "sms-user",
        "limited-user",
        "list-prefix",
    ):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--attempt-limit", type=int, required=True)
    p.add_argument("--not-unconfirmed", required=True, help="JSON {status: username}")
    p.add_argument("--listed", required=True, help="JSON list of usernames under list-prefix")
    p.add_argument("--email-users", required=True, help="JSON list of two usernames")
    p.add_argument("--throttle-users", required=True, help="JSON list of usernames")
    p.add_argument(
        "--aliased",
        required=True,
        help="JSON [username, verified email, preferred_username] of the settings pool's user",
    )
    p.add_argument("--aliased-sub", required=True, help="that user's sub")
    p.add_argument("--trigger", required=True, help="the settings pool's CustomMessage ARN")
    a = p.parse_args()
    print(f"boto3 {boto3.__version__}, botocore {botocore.__version__}")
    check_main(a)
    check_describe_main(a)
    check_settings(a)
    check_email_quota(a)
    check_throttle(a)
    check_errors(a)
    check_drops(a)
    print("boto3: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
