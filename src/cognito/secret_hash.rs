//! SecretHash, which Cognito requires on every call for an app client that has a secret:
//! Base64(HMAC-SHA256(key = client secret, message = username + client id)).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Computes the SecretHash for one user.
pub(crate) fn secret_hash(secret: &str, username: &str, client_id: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts any key length");
    mac.update(username.as_bytes());
    mac.update(client_id.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_vector_computed_independently() {
        // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"s3cret",
        //   b"alice"+b"client1",hashlib.sha256).digest()).decode())'
        assert_eq!(
            secret_hash("s3cret", "alice", "client1"),
            "OLH8A5YiDq5WyVbgkLVAtm0hdL7P1QQ+z61K3T8oAEk="
        );
    }

    #[test]
    fn non_ascii_is_hashed_as_utf8() {
        assert_eq!(
            secret_hash("clé-secrète", "josé@example.com", "abc123"),
            "kImByIw1G3S2Fs58Xfrn2Fk0ha2fCRJvqiW5SKeHPZc="
        );
    }

    #[test]
    fn depends_on_every_input() {
        let base = secret_hash("s3cret", "alice", "client1");
        assert_ne!(base, secret_hash("s3cret!", "alice", "client1"));
        assert_ne!(base, secret_hash("s3cret", "alicf", "client1"));
        assert_ne!(base, secret_hash("s3cret", "alice", "client2"));
    }
}
