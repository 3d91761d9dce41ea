//! What of an event may reach a log line. Record values never do; a key appears as a short
//! keyed hash (`k:3f9a…`), the same for the same key within one process (or across processes
//! that share `ORDO_LOG_KEY_SECRET`), so lines about one record can be found together without
//! the log naming the patient. `--log-keys` writes keys as they are, for a development stack.
//! Why an event was refused reaches a log line only as a code and a field name
//! ([`crate::pipeline::Reason`]): a plugin writes its own reasons.

use std::fmt;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How keys are written in logs, set once at start-up.
static KEYS: OnceLock<Keys> = OnceLock::new();

/// How keys are written.
enum Keys {
    /// As they are.
    Plain,
    /// As the first bytes of HMAC-SHA-256 under this secret.
    Hashed(Vec<u8>),
}

/// Hex digits of the hash shown: 48 bits, enough to tell keys apart in a log.
const SHOWN_BYTES: usize = 6;

/// Sets how keys are written: as they are (`plain`), else hashed under `secret`, or under a
/// random secret of this process when none is given. The first call wins.
pub fn init(plain: bool, secret: Option<&str>) {
    let keys = if plain {
        Keys::Plain
    } else {
        Keys::Hashed(match secret {
            Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
            _ => random_secret(),
        })
    };
    let _ = KEYS.set(keys);
}

fn random_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 32];
    // Without randomness the secret is fixed: hashes are then only as strong as a plain hash.
    let _ = getrandom::fill(&mut secret);
    secret
}

/// `key` as a log line may show it.
pub fn key(key: &str) -> LogKey<'_> {
    LogKey(key)
}

/// A key, displayed as [`init`] said.
pub struct LogKey<'a>(&'a str);

impl fmt::Display for LogKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = KEYS.get_or_init(|| Keys::Hashed(random_secret()));
        match keys {
            Keys::Plain => f.write_str(self.0),
            Keys::Hashed(secret) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                    return f.write_str("k:?");
                };
                mac.update(self.0.as_bytes());
                f.write_str("k:")?;
                for byte in &mac.finalize().into_bytes()[..SHOWN_BYTES] {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_shown_as_a_stable_short_hash() {
        let shown = key("patient-42").to_string();
        assert!(
            shown.starts_with("k:") && shown.len() == 2 + 2 * SHOWN_BYTES,
            "{shown}"
        );
        assert!(!shown.contains("patient-42"));
        assert_eq!(key("patient-42").to_string(), shown, "stable");
        assert_ne!(key("patient-43").to_string(), shown);
    }
}
