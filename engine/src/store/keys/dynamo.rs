//! Idempotency-Keys in a DynamoDB table, shared by every engine and surviving restarts (see
//! the module above for the scheme).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveSpecification};
use aws_sdk_dynamodb::Client;
use futures::future::BoxFuture;
use sha2::Digest as _;
use tracing::warn;

use super::{Claim, Keys, Ticket, CLAIM_LEASE};
use crate::store::dynamo::DynamoStore;
use crate::store::StoreError;

/// The table's partition key: hex SHA-256 of (pipeline, caller, key).
const ID: &str = "id";
/// Hex SHA-256 of the body.
const BODY: &str = "body";
/// `pending` or `done`.
const STATE: &str = "state";
/// The 202 body, once `done`.
const ANSWER: &str = "answer";
/// The claim's random token: only its owner records the answer or releases it.
const CLAIM: &str = "claim";
/// When the claim was made, ms since the epoch.
const CLAIMED_AT: &str = "claimed_at";
/// When the key expires, s since the epoch: the table's TTL attribute.
const EXPIRES_AT: &str = "expires_at";

/// Keys remembered in a DynamoDB table, shared by every engine and surviving restarts.
pub struct DynamoKeys {
    client: Client,
    table: String,
    /// The pipeline, part of every key's id.
    pipeline: String,
    window: Duration,
}

/// A key's item as read.
struct Item {
    body: String,
    done: Option<String>,
    claim: String,
    claimed_at: u64,
}

/// What a conditional put found.
enum Claimed {
    /// The key is this request's now.
    Ours,
    /// Another request holds it.
    Taken(Item),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

impl DynamoKeys {
    /// Keys of `pipeline` in `table`, remembered for `window`.
    pub fn new(client: Client, table: &str, pipeline: &str, window: Duration) -> Self {
        Self {
            client,
            table: table.to_string(),
            pipeline: pipeline.to_string(),
            window,
        }
    }

    /// Creates the table when missing (`create`; else only checks it exists), and turns on
    /// its TTL on `expires_at`.
    pub async fn prepare(&self, create: bool) -> Result<(), StoreError> {
        let table = DynamoStore::new(self.client.clone(), &self.table, ID);
        if create {
            table.ensure_table().await?;
        } else {
            table.require_table().await?;
        }
        let described = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.error("DescribeTimeToLive", &e))?;
        let on = described
            .time_to_live_description()
            .and_then(|d| d.attribute_name())
            == Some(EXPIRES_AT);
        if on || !create {
            if !on {
                warn!(table = %self.table, "The idempotency table has no TTL on `expires_at`: expired keys stay until removed (they no longer count either way).");
            }
            return Ok(());
        }
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(EXPIRES_AT)
            .enabled(true)
            .build()
            .map_err(|e| StoreError::Shape {
                table: self.table.clone(),
                reason: e.to_string(),
            })?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| self.error("UpdateTimeToLive", &e))?;
        Ok(())
    }

    fn error(&self, operation: &'static str, e: &dyn std::error::Error) -> StoreError {
        StoreError::Request {
            operation,
            table: self.table.clone(),
            reason: crate::error_chain(e),
        }
    }

    /// The item id of `caller`'s `key`.
    fn id(&self, caller: &str, key: &str) -> String {
        let mut hash = sha2::Sha256::new();
        for part in [self.pipeline.as_str(), caller, key] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        hex::encode(hash.finalize())
    }

    /// Claims `caller`'s `key` for `body`, taking over a claim older than [`CLAIM_LEASE`]
    /// (its engine died before recording an answer) unless another request just did.
    async fn claim_key(
        &self,
        caller: &str,
        key: &str,
        body: [u8; 32],
    ) -> Result<Claim, StoreError> {
        let id = self.id(caller, key);
        let body = hex::encode(body);
        let token = crate::random_id();
        let mut taken_over = false;
        loop {
            let found = match self.put_claim(&id, &body, &token, None).await? {
                Claimed::Ours => break,
                Claimed::Taken(found) => found,
            };
            if found.body != body {
                return Ok(Claim::OtherBody);
            }
            if let Some(answer) = found.done {
                return Ok(Claim::Answered(answer));
            }
            let stale = now_ms().saturating_sub(found.claimed_at) > CLAIM_LEASE.as_millis() as u64;
            if !stale || taken_over {
                return Ok(Claim::InProgress);
            }
            taken_over = true;
            match self
                .put_claim(&id, &body, &token, Some(&found.claim))
                .await?
            {
                Claimed::Ours => break,
                Claimed::Taken(_) => continue,
            }
        }
        Ok(Claim::Ours(Ticket { id, token }))
    }

    /// Claims `id` for `body` with `token`: when absent or expired, or (`over`) when its
    /// claim is still that token. Otherwise reads what holds it.
    async fn put_claim(
        &self,
        id: &str,
        body: &str,
        token: &str,
        over: Option<&str>,
    ) -> Result<Claimed, StoreError> {
        let now = now_ms();
        let expires = now / 1000 + self.window.as_secs();
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(ID, s(id))
            .item(BODY, s(body))
            .item(STATE, s("pending"))
            .item(CLAIM, s(token))
            .item(CLAIMED_AT, n(now))
            .item(EXPIRES_AT, n(expires))
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":now", n(now / 1000));
        let request = match over {
            None => request
                .condition_expression("attribute_not_exists(#i) OR #e <= :now")
                .expression_attribute_names("#i", ID),
            Some(old) => request
                .condition_expression("#c = :old AND #s = :pending AND #e > :now")
                .expression_attribute_names("#c", CLAIM)
                .expression_attribute_names("#s", STATE)
                .expression_attribute_values(":old", s(old))
                .expression_attribute_values(":pending", s("pending")),
        };
        match request.send().await {
            Ok(_) => Ok(Claimed::Ours),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                match self.read(id).await? {
                    Some(found) => Ok(Claimed::Taken(found)),
                    // Gone meanwhile (expired and removed): claim again.
                    None => Box::pin(self.put_claim(id, body, token, None)).await,
                }
            }
            Err(e) => Err(self.error("PutItem", &e)),
        }
    }

    /// The live item of `id`, read consistently.
    async fn read(&self, id: &str) -> Result<Option<Item>, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ID, s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?
            .item;
        let Some(item) = item else {
            return Ok(None);
        };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => String::new(),
        };
        let number = |name: &str| match item.get(name) {
            Some(AttributeValue::N(v)) => v.parse().unwrap_or(0),
            _ => 0,
        };
        if number(EXPIRES_AT) <= now_ms() / 1000 {
            return Ok(None);
        }
        Ok(Some(Item {
            body: text(BODY),
            done: (text(STATE) == "done").then(|| text(ANSWER)),
            claim: text(CLAIM),
            claimed_at: number(CLAIMED_AT),
        }))
    }

    /// Records `answer` on `id`, if the claim is still `token`'s.
    async fn put_answer(&self, id: &str, token: &str, answer: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(ID, s(id))
            .update_expression("SET #s = :done, #a = :answer")
            .condition_expression("#c = :token")
            .expression_attribute_names("#s", STATE)
            .expression_attribute_names("#a", ANSWER)
            .expression_attribute_names("#c", CLAIM)
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":answer", s(answer))
            .expression_attribute_values(":token", s(token))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("UpdateItem", &e))
    }

    /// Deletes the claim on `id` if it is still `token`'s, so the request may be retried.
    async fn delete_claim(&self, id: &str, token: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(ID, s(id))
            .condition_expression("#c = :token")
            .expression_attribute_names("#c", CLAIM)
            .expression_attribute_values(":token", s(token))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("DeleteItem", &e))
    }
}

impl Keys for DynamoKeys {
    fn claim<'a>(
        &'a self,
        caller: &'a str,
        key: &'a str,
        body: [u8; 32],
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(self.claim_key(caller, key, body))
    }

    fn record<'a>(
        &'a self,
        ticket: &'a Ticket,
        answer: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.put_answer(&ticket.id, &ticket.token, answer))
    }

    fn release<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.delete_claim(&ticket.id, &ticket.token))
    }
}

#[cfg(test)]
mod tests {
    //! The DynamoDB table is tested against the real API in `tests/idempotency.rs`.
    use super::*;

    #[test]
    fn an_id_separates_its_parts() {
        let keys = DynamoKeys {
            client: Client::from_conf(
                aws_sdk_dynamodb::Config::builder()
                    .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                    .build(),
            ),
            table: "t".into(),
            pipeline: "p".into(),
            window: super::super::DEFAULT_WINDOW,
        };
        assert_ne!(keys.id("ab", "c"), keys.id("a", "bc"));
        assert_eq!(keys.id("a", "b").len(), 64);
        assert!(!keys.id("alice", "order-1").contains("alice"));
    }
}
