//! The DynamoDB store against the local DynamoDB API: conditional writes and table checks.

mod common;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, KeySchemaElement, KeyType, ScalarAttributeType,
};
use common::Names;
use ordo::store::dynamo::DynamoStore;
use ordo::store::{Precondition, PutOutcome, Record, Store, StoreError};
use serde_json::json;

fn record(value: serde_json::Value) -> Record {
    value.as_object().expect("object").clone()
}

#[tokio::test]
async fn writes_are_conditional_on_the_revision_merged_against() {
    let names = Names::unique("store");
    let store = DynamoStore::new(common::dynamodb().await, &names.table, "PatientId");
    store.ensure_table().await.expect("table created");
    store.ensure_table().await.expect("second call finds it");

    let v1 = record(
        json!({"PatientId": "1", "IsPregnant": "False", "Ordo": {"plugin": "p", "revision": 1}}),
    );
    let v2 = record(
        json!({"PatientId": "1", "IsPregnant": "True", "Ordo": {"plugin": "p", "revision": 2}}),
    );
    assert_eq!(
        store.put(&v1, &Precondition::Absent).await.expect("put"),
        PutOutcome::Written
    );
    assert_eq!(
        store.put(&v2, &Precondition::Absent).await.expect("put"),
        PutOutcome::Conflict,
        "the key exists"
    );
    for stale in [Precondition::Revision(0), Precondition::Unrevised] {
        assert_eq!(
            store.put(&v2, &stale).await.expect("put"),
            PutOutcome::Conflict,
            "merged against {stale:?}"
        );
    }
    let stale = Precondition::Revision(2);
    assert_eq!(
        store.put(&v2, &stale).await.expect("put"),
        PutOutcome::Conflict,
        "merged against an old version"
    );
    assert_eq!(
        store.get("1").await.expect("get"),
        Some(v1.clone()),
        "a lost race changes nothing"
    );

    assert_eq!(
        store
            .put(&v2, &Precondition::Revision(1))
            .await
            .expect("put"),
        PutOutcome::Written
    );
    assert_eq!(store.get("1").await.expect("get"), Some(v2));
    assert_eq!(store.get("absent").await.expect("get"), None);

    // A record written before revisions (no `Ordo`) is replaced only by a writer that saw it so.
    let legacy = record(json!({"PatientId": "2", "UpdatedAt": "t1"}));
    store
        .put(&legacy, &Precondition::Absent)
        .await
        .expect("put");
    let next = record(json!({"PatientId": "2", "Ordo": {"plugin": "p", "revision": 1}}));
    assert_eq!(
        store
            .put(&next, &Precondition::Revision(0))
            .await
            .expect("put"),
        PutOutcome::Conflict
    );
    assert_eq!(
        store
            .put(&next, &Precondition::Unrevised)
            .await
            .expect("put"),
        PutOutcome::Written
    );
    assert_eq!(
        store
            .put(&next, &Precondition::Unrevised)
            .await
            .expect("put"),
        PutOutcome::Conflict,
        "revised now"
    );
}

#[tokio::test]
async fn a_table_with_another_key_schema_is_refused() {
    let names = Names::unique("schema");
    let client = common::dynamodb().await;
    client
        .create_table()
        .table_name(&names.table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("Id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("Id")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("create a table keyed by Id");
    let store = DynamoStore::new(client, &names.table, "PatientId");
    let err = store.ensure_table().await.expect_err("wrong key schema");
    assert!(matches!(err, StoreError::KeySchema { .. }), "{err}");
    assert!(
        err.to_string().contains("PatientId") && err.to_string().contains("Id (HASH)"),
        "{err}"
    );
}

/// Creates `table` (on demand) with `key` as its string partition key, as infrastructure code
/// would.
async fn create_table(dynamo: &aws_sdk_dynamodb::Client, table: &str, key: &str) {
    use aws_sdk_dynamodb::types::BillingMode;
    dynamo
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .send()
        .await
        .expect("table created");
}

#[tokio::test]
async fn with_create_tables_off_a_missing_table_stops_the_start_and_an_existing_one_serves() {
    let names = common::Names::unique("no-create");
    // Missing: the engine says so and which key it would need.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::pipelines_file_of(
        dir.path(),
        &names.topic,
        &names.table,
        &common::lww_plugin(),
        "create_tables = false",
    );
    let out = common::ordo_command()
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("KAFKA_BROKERS", common::brokers())
        .output()
        .expect("run ordo");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("table `{}` does not exist", names.table))
            && err.contains("create_tables = false")
            && err.contains("partition key `PatientId`"),
        "{err}"
    );
    let dynamo = common::dynamodb().await;
    assert!(
        dynamo
            .describe_table()
            .table_name(&names.table)
            .send()
            .await
            .is_err(),
        "nothing was created"
    );

    // Made by someone else, with the Idempotency-Key table: the engine uses them.
    create_table(&dynamo, &names.table, "PatientId").await;
    create_table(&dynamo, &format!("{}-idempotency", names.table), "id").await;
    let engine = common::Engine::builder(names)
        .extra("create_tables = false")
        .start();
    let written = engine
        .post_accepted(r#"{"PatientId":"nc1","FirstName":"John"}"#)
        .await;
    engine.wait_all_committed(&[written]).await;
    let (status, record) = engine.get_json("/patientprofile/nc1").await;
    assert_eq!(status, 200, "{record}");
}

#[tokio::test]
async fn table_options_shape_a_table_ordo_creates() {
    use ordo::store::{Billing, TableOptions};
    let names = Names::unique("table-options");
    let dynamo = common::dynamodb().await;
    // A key of the local KMS (moto's), as a customer-managed key would be.
    let kms = aws_sdk_kms_free_key(&names.table).await;
    let options = TableOptions {
        billing: Billing::Provisioned { read: 5, write: 7 },
        point_in_time_recovery: true,
        kms_key_id: Some(kms.clone()),
        deletion_protection: true,
        tags: vec![
            ("owner".into(), "consultation".into()),
            ("data".into(), "phi".into()),
        ],
    };
    let store =
        DynamoStore::new(dynamo.clone(), &names.table, "PatientId").with_table_options(options);
    store.ensure_table().await.expect("table created");

    let table = dynamo
        .describe_table()
        .table_name(&names.table)
        .send()
        .await
        .expect("DescribeTable")
        .table
        .expect("table");
    let throughput = table
        .provisioned_throughput
        .expect("provisioned throughput");
    assert_eq!(throughput.read_capacity_units, Some(5));
    assert_eq!(throughput.write_capacity_units, Some(7));
    assert_eq!(table.deletion_protection_enabled, Some(true));
    let sse = table.sse_description.expect("encryption described");
    assert_eq!(sse.sse_type.as_ref().map(|t| t.as_str()), Some("KMS"));
    assert!(
        sse.kms_master_key_arn
            .as_deref()
            .is_some_and(|arn| arn.contains(&kms)),
        "{sse:?} names the key {kms}"
    );
    let arn = table.table_arn.expect("arn");
    let tags = dynamo
        .list_tags_of_resource()
        .resource_arn(&arn)
        .send()
        .await
        .expect("ListTagsOfResource")
        .tags
        .unwrap_or_default();
    let tags: Vec<(String, String)> = tags.into_iter().map(|t| (t.key, t.value)).collect();
    assert!(tags.contains(&("data".into(), "phi".into())), "{tags:?}");
    assert!(
        tags.contains(&("owner".into(), "consultation".into())),
        "{tags:?}"
    );
    let backups = dynamo
        .describe_continuous_backups()
        .table_name(&names.table)
        .send()
        .await
        .expect("DescribeContinuousBackups")
        .continuous_backups_description
        .expect("backups");
    let pitr = backups
        .point_in_time_recovery_description
        .and_then(|d| d.point_in_time_recovery_status);
    assert_eq!(pitr.as_ref().map(|s| s.as_str()), Some("ENABLED"));

    // Deletion protection holds: the table cannot be deleted until it is turned off.
    assert!(dynamo
        .delete_table()
        .table_name(&names.table)
        .send()
        .await
        .is_err());
}

/// A KMS key id on the local stack's KMS API (moto serves it on the same endpoint).
async fn aws_sdk_kms_free_key(label: &str) -> String {
    let out = std::process::Command::new(common::cache_dir().join("venv/bin/aws"))
        .args([
            "kms",
            "create-key",
            "--description",
            label,
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ])
        .envs(common::stack::aws_env())
        .env(
            "AWS_DEFAULT_REGION",
            std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        )
        .output()
        .expect("aws kms create-key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
