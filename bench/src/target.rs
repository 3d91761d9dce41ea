//! Where one design writes in one run of the consume benchmark: a fresh table on moto behind
//! a counting proxy ([`crate::proxy`]), or a fresh latency model of DynamoDB (`model_dynamo`,
//! [`crate::wire`]) in a process of its own. Either way every design reaches its store over
//! DynamoDB's API (the Python peer included), its requests are counted outside it, and the
//! table is read back by the benchmark itself for the stale-record audit ([`crate::stale`]).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use ordo::store::dynamo::DynamoStore;
use ordo::store::item::from_item;
use ordo::store::Record;

use crate::counting::Counts;
use crate::proxy::DynamoProxy;
use crate::wire::child::ModelProcess;

/// The key field of every benchmark table.
const KEY_FIELD: &str = "PatientId";

/// One design's table for one run.
pub struct Target {
    /// The table's name.
    name: String,
    /// A client straight to the store: for creating and reading back the table, uncounted
    /// (the model counts a scan as neither a read nor a write).
    direct: Client,
    /// The table as a design writes to it.
    store: DynamoStore,
    /// Who counts the design's requests.
    counted_by: CountedBy,
}

/// Who counts a [`Target`]'s requests.
enum CountedBy {
    /// A counting proxy in front of moto, which the design reaches through it.
    Proxy(DynamoProxy),
    /// The model process itself, which serves this target alone.
    Model(ModelProcess),
}

impl Target {
    /// A new moto table `name` (key `PatientId`), created before the design starts, behind a
    /// proxy of its own to the endpoint `aws` names.
    pub async fn moto(aws: &aws_config::SdkConfig, name: &str) -> anyhow::Result<Self> {
        let endpoint = aws
            .endpoint_url()
            .context("no DynamoDB endpoint to proxy: set AWS_ENDPOINT_URL")?;
        let direct = Client::new(aws);
        create(&direct, name).await?;
        let proxy = DynamoProxy::start(endpoint).await?;
        let store = DynamoStore::new(client(aws, proxy.url()), name, KEY_FIELD);
        Ok(Self {
            name: name.to_string(),
            direct,
            store,
            counted_by: CountedBy::Proxy(proxy),
        })
    }

    /// A new model process answering every request after `latency`, with table `name`
    /// created on it; `aws` gives the credentials and region its clients sign with.
    pub async fn model(
        aws: &aws_config::SdkConfig,
        latency: Duration,
        name: &str,
    ) -> anyhow::Result<Self> {
        let model = ModelProcess::start(latency)?;
        let direct = client(aws, &model.url);
        create(&direct, name).await?;
        Ok(Self {
            name: name.to_string(),
            store: DynamoStore::new(direct.clone(), name, KEY_FIELD),
            direct,
            counted_by: CountedBy::Model(model),
        })
    }

    /// The store a design in this process writes to.
    pub fn store(&self) -> DynamoStore {
        self.store.clone()
    }

    /// The design's requests so far, as its counter saw them.
    pub async fn counts(&self) -> anyhow::Result<Counts> {
        match &self.counted_by {
            CountedBy::Proxy(proxy) => Ok(proxy.counts()),
            CountedBy::Model(model) => {
                let counted = model.counts().await?;
                let op = |name: &str| counted.requests.get(name).copied().unwrap_or(0);
                Ok(Counts {
                    gets: op("GetItem"),
                    puts: op("PutItem"),
                    written: counted.writes(),
                    puts_span: counted
                        .puts_between_us
                        .map(|[first, last]| Duration::from_micros(last.saturating_sub(first))),
                })
            }
        }
    }

    /// (endpoint URL, table) for a design in another process.
    pub fn endpoint(&self) -> (&str, &str) {
        let url = match &self.counted_by {
            CountedBy::Proxy(proxy) => proxy.url(),
            CountedBy::Model(model) => &model.url,
        };
        (url, &self.name)
    }

    /// Every record in the table, by key: a consistent scan, read by the benchmark.
    pub async fn records(&self) -> anyhow::Result<HashMap<String, Record>> {
        let mut records = HashMap::new();
        let mut from: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .direct
                .scan()
                .table_name(&self.name)
                .consistent_read(true)
                .set_exclusive_start_key(from.take())
                .send()
                .await
                .with_context(|| format!("scan {}", self.name))?;
            for item in page.items() {
                let record = from_item(item)
                    .map_err(|e| anyhow::anyhow!("an item of {}: {e}", self.name))?;
                let key = record
                    .get(KEY_FIELD)
                    .and_then(|k| k.as_str())
                    .with_context(|| format!("an item of {} without {KEY_FIELD}", self.name))?
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
    /// the local stack is shared); a model process just stops.
    pub async fn remove(self) -> anyhow::Result<()> {
        if let CountedBy::Proxy(_) = self.counted_by {
            self.direct
                .delete_table()
                .table_name(&self.name)
                .send()
                .await
                .with_context(|| format!("delete table {}", self.name))?;
        }
        Ok(())
    }
}

/// A client with `aws`'s credentials and region, reaching `endpoint`.
fn client(aws: &aws_config::SdkConfig, endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::config::Builder::from(aws)
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

/// Creates table `name` (key `PatientId`) and waits until it is active.
async fn create(client: &Client, name: &str) -> anyhow::Result<()> {
    DynamoStore::new(client.clone(), name, KEY_FIELD)
        .ensure_table()
        .await
        .with_context(|| format!("create table {name}"))
}
