//! Whether an event's principal was vouched for by the Ordo that authenticated its caller.
//!
//! Anyone who may write to a pipeline's topic can set the `ordo-principal` header, so the
//! header alone proves nothing. Ingest (and `ordo load`) adds `ordo-principal-mac`: an
//! HMAC-SHA-256, under the secret `ORDO_PRINCIPAL_KEY`, of the principal bound to the event's
//! key and body. The apply side records the principal only when that signature checks;
//! anything else is recorded as what it is, a claim (`claimed` in the audit record).
//!
//! Engines that apply each other's events must share the secret. Without one, each process
//! draws its own, so only the events it produced itself are vouched for.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The Kafka header carrying the signature of the `ordo-principal` header.
pub const MAC_KAFKA_HEADER: &str = "ordo-principal-mac";
/// Longest claim an audit record repeats (a header anyone may write).
pub const MAX_CLAIM: usize = 256;

static SECRET: OnceLock<Vec<u8>> = OnceLock::new();

/// Sets the secret: `secret`, or a random one of this process when none is given. The first
/// call wins.
pub fn init(secret: Option<&str>) {
    let _ = SECRET.set(match secret {
        Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
        _ => random_secret(),
    });
}

fn random_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 32];
    // Without randomness the secret stays all zeros, which anyone can sign with: say so.
    if getrandom::fill(&mut secret).is_err() {
        tracing::warn!("No randomness for the principal key: signatures use a fixed key anyone can forge; set ORDO_PRINCIPAL_KEY.");
    }
    secret
}

/// The signature of `principal` on the event keyed `key` with body `body` (hex).
pub fn sign(principal: &str, key: &[u8], body: &[u8]) -> String {
    let secret = SECRET.get_or_init(random_secret);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(b"ordo-principal/v1\0");
    mac.update(principal.as_bytes());
    mac.update(b"\0");
    mac.update(key);
    mac.update(b"\0");
    mac.update(&Sha256::digest(body));
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `mac` is the signature of `principal` on this event.
pub fn vouched(principal: &str, key: &[u8], body: &[u8], mac: Option<&str>) -> bool {
    let Some(mac) = mac else {
        return false;
    };
    let expected = sign(principal, key, body);
    bool::from(expected.as_bytes().ct_eq(mac.as_bytes()))
}

/// A claim as an audit record may repeat it: at most [`MAX_CLAIM`] characters.
pub fn claim(text: &str) -> &str {
    text.char_indices()
        .nth(MAX_CLAIM)
        .map_or(text, |(end, _)| &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_principal_key_and_body_only() {
        init(Some("test secret"));
        let mac = sign("key:svc", b"1", b"{\"a\":1}");
        assert!(vouched("key:svc", b"1", b"{\"a\":1}", Some(&mac)));
        assert!(
            !vouched("key:other", b"1", b"{\"a\":1}", Some(&mac)),
            "another principal"
        );
        assert!(
            !vouched("key:svc", b"2", b"{\"a\":1}", Some(&mac)),
            "another key"
        );
        assert!(
            !vouched("key:svc", b"1", b"{\"a\":2}", Some(&mac)),
            "another body"
        );
        assert!(
            !vouched("key:svc", b"1", b"{\"a\":1}", None),
            "no signature"
        );
        assert!(
            !vouched("key:svc", b"1", b"{\"a\":1}", Some("00")),
            "a wrong one"
        );
        assert_eq!(claim(&"é".repeat(300)).chars().count(), MAX_CLAIM);
    }
}
