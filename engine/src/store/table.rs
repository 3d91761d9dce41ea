//! How Ordo creates a pipeline's table (`[pipelines.<name>.table_options]`): billing mode,
//! point-in-time recovery, encryption with a customer-managed KMS key, deletion protection
//! and tags. Only a table Ordo creates gets them: an existing table is never changed.

use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    BillingMode, PointInTimeRecoverySpecification, ProvisionedThroughput, SseSpecification,
    SseType, Tag,
};
use aws_sdk_dynamodb::Client;

/// How a table is paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Billing {
    /// On demand (`PAY_PER_REQUEST`): no capacity to plan; the default.
    #[default]
    OnDemand,
    /// Provisioned read and write capacity units.
    Provisioned {
        /// Read capacity units.
        read: i64,
        /// Write capacity units.
        write: i64,
    },
}

/// The options of a table Ordo creates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableOptions {
    /// Billing mode.
    pub billing: Billing,
    /// Continuous backups with point-in-time recovery (35 days).
    pub point_in_time_recovery: bool,
    /// Encryption at rest with this KMS key (id, ARN or alias); `None`: an AWS-owned key.
    pub kms_key_id: Option<String>,
    /// DeleteTable refused until turned off.
    pub deletion_protection: bool,
    /// Tags, in order.
    pub tags: Vec<(String, String)>,
}

impl TableOptions {
    /// `create` with these options.
    pub(super) fn apply(
        &self,
        create: CreateTableFluentBuilder,
    ) -> Result<CreateTableFluentBuilder, aws_sdk_dynamodb::error::BuildError> {
        let mut create = match self.billing {
            Billing::OnDemand => create.billing_mode(BillingMode::PayPerRequest),
            Billing::Provisioned { read, write } => create
                .billing_mode(BillingMode::Provisioned)
                .provisioned_throughput(
                    ProvisionedThroughput::builder()
                        .read_capacity_units(read)
                        .write_capacity_units(write)
                        .build()?,
                ),
        };
        if let Some(key) = &self.kms_key_id {
            create = create.sse_specification(
                SseSpecification::builder()
                    .enabled(true)
                    .sse_type(SseType::Kms)
                    .kms_master_key_id(key)
                    .build(),
            );
        }
        if self.deletion_protection {
            create = create.deletion_protection_enabled(true);
        }
        for (key, value) in &self.tags {
            create = create.tags(Tag::builder().key(key).value(value).build()?);
        }
        Ok(create)
    }

    /// What must follow creation once the table is active: point-in-time recovery, which
    /// CreateTable cannot set. The error names the request and why it failed.
    pub(super) async fn after_creation(&self, client: &Client, table: &str) -> Result<(), String> {
        if !self.point_in_time_recovery {
            return Ok(());
        }
        let enabled = PointInTimeRecoverySpecification::builder()
            .point_in_time_recovery_enabled(true)
            .build()
            .map_err(|e| e.to_string())?;
        client
            .update_continuous_backups()
            .table_name(table)
            .point_in_time_recovery_specification(enabled)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("UpdateContinuousBackups: {}", crate::error_chain(&e)))
    }
}
