//! DynamoDB implementation of [`Store`]: consistent reads, conditional puts.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use tracing::{info, Instrument as _};

use super::item::{from_item, to_item};
use super::table::TableOptions;
use super::{
    Precondition, PutOutcome, Record, Store, StoreError, META_ATTRIBUTE, META_REVISION,
    THROTTLING_CODES,
};
use crate::metrics::StoreMetrics;

/// How long start-up waits for a table it created to become active.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one DynamoDB request may take: connect 3 s, one attempt 5 s, all of the SDK's
/// retries 15 s. Without them a DynamoDB that accepts connections but never answers would hold
/// a key's worker forever; with them the call fails, and the engine retries with backoff.
pub fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(15))
        .build()
}

/// A DynamoDB client from the standard AWS configuration chain, with [`timeouts`].
pub async fn client() -> Client {
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts())
        .load()
        .await;
    Client::new(&aws)
}

/// One pipeline's table.
#[derive(Clone)]
pub struct DynamoStore {
    /// Shared SDK client (cheap to clone, pools connections).
    client: Client,
    /// The table name.
    table: String,
    /// The partition key attribute, a string.
    key_field: String,
    /// Seconds per conditional write.
    metrics: StoreMetrics,
    /// How the table is created when missing.
    options: TableOptions,
}

impl DynamoStore {
    /// A store for `table`, keyed by `key_field`; writes are conditioned on the revision in
    /// [`META_ATTRIBUTE`].
    pub fn new(client: Client, table: &str, key_field: &str) -> Self {
        Self {
            client,
            table: table.to_string(),
            key_field: key_field.to_string(),
            metrics: StoreMetrics::default(),
            options: TableOptions::default(),
        }
    }

    /// Creates the table, when missing, with `options`.
    pub fn with_table_options(mut self, options: TableOptions) -> Self {
        self.options = options;
        self
    }

    /// Counts conditional-write latency into `metrics` instead of a registry of its own.
    pub fn with_metrics(mut self, metrics: StoreMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The error of a failed request; [`StoreError::Throttled`] when DynamoDB said to slow
    /// down.
    fn request_error<E, R>(&self, operation: &'static str, e: SdkError<E, R>) -> StoreError
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        let (table, reason) = (self.table.clone(), crate::error_chain(&e));
        match e.code() {
            Some(code) if THROTTLING_CODES.contains(&code) => StoreError::Throttled {
                operation,
                table,
                reason,
            },
            _ => StoreError::Request {
                operation,
                table,
                reason,
            },
        }
    }

    /// Creates the table when missing (on-demand billing, `key_field` as string partition
    /// key) and checks that an existing one has that key schema.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        if self.inspect().await? {
            return Ok(());
        }
        self.create_table().await?;
        self.client
            .wait_until_table_exists()
            .table_name(&self.table)
            .wait(TABLE_ACTIVE_TIMEOUT)
            .await
            .map_err(|e| StoreError::Request {
                operation: "DescribeTable (waiting for ACTIVE)",
                table: self.table.clone(),
                reason: crate::error_chain(&e),
            })?;
        self.options
            .after_creation(&self.client, &self.table)
            .await
            .map_err(|reason| StoreError::Request {
                operation: "UpdateContinuousBackups",
                table: self.table.clone(),
                reason,
            })
    }

    /// Checks that the table exists with the pipeline's key schema, creating nothing: what
    /// `create_tables = false` asks (only `DescribeTable` is needed).
    pub async fn require_table(&self) -> Result<(), StoreError> {
        if self.inspect().await? {
            Ok(())
        } else {
            Err(StoreError::Missing {
                table: self.table.clone(),
                key: self.key_field.clone(),
            })
        }
    }

    /// Whether the table exists; an error when it exists with a key schema other than the
    /// pipeline's, or when DynamoDB does not answer. Changes nothing.
    pub async fn inspect(&self) -> Result<bool, StoreError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        let table = match described {
            Ok(out) => out.table,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(self.request_error("DescribeTable", e)),
        };
        let keys = table
            .map(|t| t.key_schema.unwrap_or_default())
            .unwrap_or_default();
        let matches = keys.len() == 1
            && keys[0].attribute_name == self.key_field
            && keys[0].key_type == KeyType::Hash;
        if !matches {
            let found = keys
                .iter()
                .map(|k| format!("{} ({})", k.attribute_name, k.key_type.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(StoreError::KeySchema {
                table: self.table.clone(),
                expected: self.key_field.clone(),
                found: format!("[{found}]"),
            });
        }
        Ok(true)
    }

    async fn create_table(&self) -> Result<(), StoreError> {
        let shape = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Shape {
            table: self.table.clone(),
            reason: e.to_string(),
        };
        let create = self.client.create_table().table_name(&self.table);
        let created = self
            .options
            .apply(create)
            .map_err(shape)?
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&self.key_field)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(shape)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(&self.key_field)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(shape)?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {
                info!(table = %self.table, key = %self.key_field, options = ?self.options, "Table created.");
                Ok(())
            }
            // Another engine created it at the same moment.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.request_error("CreateTable", e)),
        }
    }
}

impl DynamoStore {
    /// The span of one request: a client span naming the table and operation, never the key.
    fn span(&self, operation: &'static str) -> tracing::Span {
        tracing::info_span!(
            "dynamodb",
            otel.kind = "client",
            otel.name = %format!("DynamoDB.{operation}"),
            db.system = "dynamodb",
            db.operation = operation,
            aws.dynamodb.table_names = %self.table,
        )
    }
}

impl Store for DynamoStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(&self.key_field, AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .instrument(self.span("GetItem"))
            .await
            .map_err(|e| self.request_error("GetItem", e))?;
        out.item
            .map(|item| from_item(&item))
            .transpose()
            .map_err(|reason| StoreError::Shape {
                table: self.table.clone(),
                reason: format!("item {}: {reason}", crate::redact::key(key)),
            })
    }

    async fn put(
        &self,
        record: &Record,
        precondition: &Precondition,
    ) -> Result<PutOutcome, StoreError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record)))
            .expression_attribute_names("#k", &self.key_field);
        let request = match precondition {
            Precondition::Absent => request.condition_expression("attribute_not_exists(#k)"),
            Precondition::Unrevised => request
                .condition_expression("attribute_exists(#k) AND attribute_not_exists(#o)")
                .expression_attribute_names("#o", META_ATTRIBUTE),
            Precondition::Revision(n) => request
                .condition_expression("attribute_exists(#k) AND #o.#r = :r")
                .expression_attribute_names("#o", META_ATTRIBUTE)
                .expression_attribute_names("#r", META_REVISION)
                .expression_attribute_values(":r", AttributeValue::N(n.to_string())),
        };
        let started = Instant::now();
        let sent = request.send().instrument(self.span("PutItem")).await;
        self.metrics.writes.observe(started.elapsed().as_secs_f64());
        match sent {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(PutOutcome::Conflict)
            }
            Err(e) => Err(self.request_error("PutItem", e)),
        }
    }

    /// Describes the table: proof that DynamoDB answers and the table exists.
    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.request_error("DescribeTable", e))
    }
}
