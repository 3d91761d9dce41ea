//! What every Kafka client of the engine runs with besides its properties: the SASL
//! `OAUTHBEARER` token for Amazon MSK's IAM access control, signed from the AWS credential
//! chain (environment, profile, web identity on EKS, instance role) and refreshed by
//! librdkafka before it expires.

use std::error::Error;
use std::sync::{Arc, Mutex};

#[cfg(test)]
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::config::SharedCredentialsProvider;
use rdkafka::client::OAuthToken;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

/// Signs MSK IAM tokens for one region.
#[derive(Debug, Clone)]
pub struct MskIam {
    /// The cluster's AWS region.
    region: String,
    /// Credentials to sign with instead of the chain's (tests).
    fixed: Option<SharedCredentialsProvider>,
}

/// The principal name librdkafka is given with a token: MSK takes the identity from the
/// signature, so this is only what librdkafka's logs show.
const PRINCIPAL: &str = "ordo";

impl MskIam {
    /// Tokens for clusters in `region`.
    pub fn new(region: &str) -> Self {
        Self {
            region: region.to_string(),
            fixed: None,
        }
    }

    /// Tokens signed with `credentials` rather than the chain's.
    #[cfg(test)]
    fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.fixed = Some(SharedCredentialsProvider::new(credentials));
        self
    }

    /// A fresh token: a presigned `kafka-cluster:Connect` request, valid 15 minutes.
    ///
    /// librdkafka asks from whatever thread polls the client (a Tokio task for consumers), so
    /// the signing runs on a thread of its own with its own runtime, and the credentials are
    /// looked up afresh each time (a refresh every 12 minutes or so): nothing is tied to a
    /// runtime that may be gone.
    pub fn token(&self) -> Result<OAuthToken, String> {
        let region = aws_config::Region::new(self.region.clone());
        let signed = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("a runtime to sign the MSK IAM token: {e}"))?;
                    let signing = async {
                        match &self.fixed {
                            Some(fixed) => {
                                aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
                                    region,
                                    fixed.clone(),
                                )
                                .await
                            }
                            None => aws_msk_iam_sasl_signer::generate_auth_token(region).await,
                        }
                    };
                    runtime
                        .block_on(signing)
                        .map_err(|e| format!("signing the MSK IAM token: {e}"))
                })
                .join()
                .map_err(|_| "the MSK IAM token signer panicked".to_string())?
        })?;
        let (token, lifetime_ms) = signed;
        Ok(OAuthToken {
            token,
            principal_name: PRINCIPAL.to_string(),
            lifetime_ms,
        })
    }
}

/// The context of the engine's producers, readers and admin clients (group members have
/// their own, which signs the same way).
#[derive(Debug, Clone, Default)]
pub struct OrdoContext {
    /// Set when `[kafka.aws_msk_iam]` is.
    pub(super) iam: Option<Arc<MskIam>>,
    /// The last reason a connection to a broker was refused at the TLS or SASL layer (a wrong
    /// CA, a wrong password), shared by every client of one configuration: librdkafka only
    /// retries these, so a request that times out is explained with it.
    refused: Arc<Mutex<Option<String>>>,
}

impl OrdoContext {
    /// Why the brokers last refused a connection (TLS or SASL), if they did.
    pub fn refusal(&self) -> Option<String> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }

    /// What every client does with an error librdkafka reports: logs it, and keeps its
    /// reason when it is a TLS or authentication failure.
    pub(super) fn report(&self, error: &KafkaError, reason: &str) {
        let security = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::SSL
                    | RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::GroupAuthorizationFailed
            )
        );
        if security {
            if let Ok(mut last) = self.refused.lock() {
                *last = Some(reason.to_string());
            }
        }
        tracing::error!(target: "librdkafka", %error, reason, "Kafka client error.");
    }

    /// A token for librdkafka, when this client signs for MSK IAM.
    pub(super) fn oauth_token(&self) -> Result<OAuthToken, Box<dyn Error>> {
        match &self.iam {
            Some(iam) => iam.token().map_err(|e| {
                tracing::warn!(error = %e, "No MSK IAM token: Kafka authentication will fail.");
                e.into()
            }),
            // `ordo validate` refuses OAUTHBEARER without [kafka.aws_msk_iam]; say so again.
            None => Err("sasl.mechanisms = OAUTHBEARER needs [kafka.aws_msk_iam]".into()),
        }
    }
}

impl ClientContext for OrdoContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn error(&self, error: KafkaError, reason: &str) {
        self.report(&error, reason);
    }

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        self.oauth_token()
    }
}

/// Readers (`ordo replay`, `tap`, the dead-letter redrive) use the context as it is.
impl rdkafka::consumer::ConsumerContext for OrdoContext {}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn a_token_is_a_presigned_connect_request_for_the_region() {
        let key = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let token = MskIam::new("eu-west-1")
            .with_credentials(key)
            .token()
            .expect("token");
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token.token)
            .expect("base64url");
        let url = String::from_utf8(url).expect("utf-8");
        assert!(
            url.starts_with(
                "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F",
            "%2Feu-west-1%2Fkafka-cluster%2Faws4_request",
            "X-Amz-Expires=900",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
        assert!(
            !url.contains("wJalrXUtnFEMI"),
            "the secret key never leaves"
        );
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let left = token.lifetime_ms - now_ms;
        assert!((800_000..=900_000).contains(&left), "expires in {left} ms");
    }

    #[test]
    fn without_msk_iam_an_oauth_request_fails_with_the_reason() {
        let error = OrdoContext::default().oauth_token().err().expect("error");
        assert!(error.to_string().contains("[kafka.aws_msk_iam]"));
    }
}
