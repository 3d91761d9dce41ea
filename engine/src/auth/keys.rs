//! API keys: the SHA-256 of the presented key is compared, in constant time, with every
//! configured hash (the keys themselves are never stored).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Principal;
use crate::config::auth::ApiKey;

/// The configured keys.
pub struct ApiKeys(Vec<ApiKey>);

impl ApiKeys {
    /// The keys of the configuration.
    pub fn new(keys: &[ApiKey]) -> Self {
        Self(keys.to_vec())
    }

    /// The principal whose key is `token`, or `None`. Every configured hash is compared, so
    /// the time taken does not tell which one matched, or how much of one.
    pub fn find(&self, token: &str) -> Option<Principal> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for key in &self.0 {
            if bool::from(key.sha256.ct_eq(&hash)) {
                found = Some(key);
            }
        }
        found.map(|key| Principal {
            name: format!("key:{}", key.name),
            scopes: key.scopes.iter().cloned().collect(),
        })
    }
}
