//! Where one design writes in one run of the consume benchmark: a fresh moto table behind a
//! counting proxy ([`crate::proxy`]), or a fresh latency-model store behind a counter
//! ([`crate::counting`]). Either way the design's requests are counted outside it, and the
//! table is read back by the benchmark itself for the stale-record audit ([`crate::stale`]).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use ordo::store::dynamo::DynamoStore;
use ordo::store::item::from_item;
use ordo::store::{Precondition, PutOutcome, Record, Store, StoreError};

use crate::counting::{CountingStore, Counts};
use crate::model::ModelStore;
use crate::proxy::DynamoProxy;

/// The key field of every benchmark table.
const KEY_FIELD: &str = "PatientId";

/// One design's table for one run.
pub enum Target {
    /// A moto table, reached through a counting proxy.
    Moto(MotoTable),
    /// A latency model of DynamoDB in this process.
    Model(CountingStore<ModelStore>),
}

/// A moto table and the proxy in front of it.
pub struct MotoTable {
    /// The table's name.
    name: String,
    /// A client straight to moto: for creating and reading back the table, uncounted.
    direct: Client,
    /// Counts the design's requests.
    proxy: DynamoProxy,
    /// The table as a store, through the proxy.
    store: DynamoStore,
}

/// A [`Target`]'s store, as a design in this process writes to it.
#[derive(Clone)]
pub enum TargetStore {
    /// Through the counting proxy to moto.
    Dynamo(DynamoStore),
    /// The model, counted.
    Model(CountingStore<ModelStore>),
}

impl Store for TargetStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        match self {
            Self::Dynamo(s) => s.get(key).await,
            Self::Model(s) => s.get(key).await,
        }
    }

    async fn put(
        &self,
        record: &Record,
        precondition: &Precondition,
    ) -> Result<PutOutcome, StoreError> {
        match self {
            Self::Dynamo(s) => s.put(record, precondition).await,
            Self::Model(s) => s.put(record, precondition).await,
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        match self {
            Self::Dynamo(s) => s.check().await,
            Self::Model(s) => s.check().await,
        }
    }
}

impl Target {
    /// A new moto table `name` (key `PatientId`), created before the design starts, behind a
    /// proxy of its own to the endpoint `aws` names.
    pub async fn moto(aws: &aws_config::SdkConfig, name: &str) -> anyhow::Result<Self> {
        let endpoint = aws
            .endpoint_url()
            .context("no DynamoDB endpoint to proxy: set AWS_ENDPOINT_URL")?;
        let direct = Client::new(aws);
        DynamoStore::new(direct.clone(), name, KEY_FIELD)
            .ensure_table()
            .await
            .with_context(|| format!("create table {name}"))?;
        let proxy = DynamoProxy::start(endpoint).await?;
        let proxied = aws_sdk_dynamodb::config::Builder::from(aws)
            .endpoint_url(proxy.url())
            .build();
        let store = DynamoStore::new(Client::from_conf(proxied), name, KEY_FIELD);
        Ok(Self::Moto(MotoTable {
            name: name.to_string(),
            direct,
            proxy,
            store,
        }))
    }

    /// A new model store answering every request after `latency`.
    pub fn model(latency: Duration) -> Self {
        Self::Model(CountingStore::new(ModelStore::new(latency)))
    }

    /// The store a design in this process writes to.
    pub fn store(&self) -> TargetStore {
        match self {
            Self::Moto(t) => TargetStore::Dynamo(t.store.clone()),
            Self::Model(s) => TargetStore::Model(s.clone()),
        }
    }

    /// The design's requests so far.
    pub fn counts(&self) -> Counts {
        match self {
            Self::Moto(t) => t.proxy.counts(),
            Self::Model(s) => s.counts(),
        }
    }

    /// (endpoint URL, table) for a design in another process; `None` on the model, which
    /// only this process can reach.
    pub fn endpoint(&self) -> Option<(&str, &str)> {
        match self {
            Self::Moto(t) => Some((t.proxy.url(), &t.name)),
            Self::Model(_) => None,
        }
    }

    /// Every record in the table, by key, read by the benchmark (a consistent scan of moto,
    /// uncounted; the model's map).
    pub async fn records(&self) -> anyhow::Result<HashMap<String, Record>> {
        let table = match self {
            Self::Moto(t) => t,
            Self::Model(s) => return Ok(s.inner().records()),
        };
        let mut records = HashMap::new();
        let mut from: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = table
                .direct
                .scan()
                .table_name(&table.name)
                .consistent_read(true)
                .set_exclusive_start_key(from.take())
                .send()
                .await
                .with_context(|| format!("scan {}", table.name))?;
            for item in page.items() {
                let record = from_item(item)
                    .map_err(|e| anyhow::anyhow!("an item of {}: {e}", table.name))?;
                let key = record
                    .get(KEY_FIELD)
                    .and_then(|k| k.as_str())
                    .with_context(|| format!("an item of {} without {KEY_FIELD}", table.name))?
                    .to_string();
                records.insert(key, record);
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => from = Some(next),
                _ => return Ok(records),
            }
        }
    }

    /// Deletes a moto table once it has been read (moto keeps every table in memory, and
    /// the local stack is shared); nothing to do for the model.
    pub async fn remove(self) -> anyhow::Result<()> {
        if let Self::Moto(t) = self {
            t.direct
                .delete_table()
                .table_name(&t.name)
                .send()
                .await
                .with_context(|| format!("delete table {}", t.name))?;
        }
        Ok(())
    }
}
