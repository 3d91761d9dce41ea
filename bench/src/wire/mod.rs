//! The DynamoDB-wire latency model: the same model as [`crate::model`] (every request answers
//! after a fixed latency, any number at once, with conditional writes), but spoken over
//! DynamoDB's own HTTP protocol by the `model_dynamo` program, so that separate processes (the
//! real `ordo` binary, several engines, a Python peer using boto3) share one table.
//!
//! It serves exactly what the engine's store calls (start-up's DescribeTable, CreateTable,
//! DescribeTimeToLive and UpdateTimeToLive; GetItem and the conditional PutItem) and what a
//! boto3 peer's `put_item`, `get_item` and `scan` need; anything else is refused by name. It
//! counts requests by operation and by client, and remembers when each write landed, in
//! Unix-epoch nanoseconds, so a bench reads write counts and visibility from outside the
//! engine without polling the table.
//!
//! In data-path order: [`condition`] (condition expressions), [`tables`] (the operations),
//! [`server`] (HTTP, latency, counts), [`child`] (the model as a bench starts and reads it).

pub mod child;
pub mod condition;
pub mod server;
pub mod tables;
