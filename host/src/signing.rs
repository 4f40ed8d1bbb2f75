//! Request signing the Standard Webhooks way (README: "The request"): `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`), one signature per
//! configured secret so that keys can be rotated. Webhook authors verify with any Standard
//! Webhooks library.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET_PREFIX: &str = "whsec_";

/// The keys requests are signed with. Never printed.
#[derive(Clone, Default)]
pub struct Signer {
    keys: Vec<Vec<u8>>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({} keys)", self.keys.len())
    }
}

impl Signer {
    /// Parses secrets written as Standard Webhooks does: `whsec_` and the base64 of the key.
    pub fn from_secrets(secrets: &[String]) -> Result<Signer, String> {
        let mut keys = Vec::new();
        for (i, secret) in secrets.iter().enumerate() {
            let encoded = secret
                .strip_prefix(SECRET_PREFIX)
                .ok_or_else(|| format!("secret {} does not start with `{SECRET_PREFIX}`", i + 1))?;
            let key = STANDARD
                .decode(encoded)
                .map_err(|e| format!("secret {} is not `{SECRET_PREFIX}` + base64: {e}", i + 1))?;
            if key.is_empty() {
                return Err(format!("secret {} is empty", i + 1));
            }
            keys.push(key);
        }
        Ok(Signer { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `webhook-signature` header value: one `v1,<base64>` per key, space-separated.
    pub fn signature(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut out = String::new();
        for key in &self.keys {
            // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { continue };
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("v1,");
            out.push_str(&STANDARD.encode(mac.finalize().into_bytes()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        // The example of the Standard Webhooks specification.
        let signer = Signer::from_secrets(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()]).expect("valid");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signer.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn one_signature_per_key_for_rotation() {
        let signer = Signer::from_secrets(&["whsec_AAAA".into(), "whsec_BBBB".into()]).expect("valid");
        let sig = signer.signature("id", 1, b"{}");
        assert_eq!(sig.split(' ').count(), 2);
        assert!(sig.split(' ').all(|s| s.starts_with("v1,")));
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert!(Signer::from_secrets(&["plain".into()]).is_err());
        assert!(Signer::from_secrets(&["whsec_***".into()]).is_err());
        assert!(format!("{:?}", Signer::from_secrets(&["whsec_AAAA".into()]).expect("ok")).contains("1 keys"));
    }
}
