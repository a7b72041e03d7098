//! Orders in, per-user running totals out: one output record per valid input order, carrying the
//! user's total amount and order count so far.

use solstice::prelude::*;

/// An order as read from JSON lines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Order id.
    pub id: u64,
    /// The ordering user (any case; normalized to lowercase).
    pub user: String,
    /// Order amount; orders with a non-positive amount are dropped.
    pub amount: f64,
}

/// A user's running total.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Total {
    /// The user.
    pub user: String,
    /// Sum of the user's order amounts so far.
    pub sum: f64,
    /// Number of the user's orders so far.
    pub orders: u64,
}

#[solstice::pipeline]
pub mod simple_etl {
    use super::*;

    /// Orders from the files named by `sources.orders`.
    #[source]
    pub fn orders(cfg: &SourceConfig) -> Result<FileSource<Order>> {
        FileSource::from_config(cfg)
    }

    /// Lowercases the user name.
    #[map]
    pub fn normalize(o: Order) -> Order {
        Order {
            user: o.user.to_lowercase(),
            ..o
        }
    }

    /// Keeps orders with a positive amount.
    #[filter]
    pub fn positive(o: &Order) -> bool {
        o.amount > 0.0
    }

    /// Partitions orders by user.
    #[key_by]
    pub fn by_user(o: &Order) -> String {
        o.user.clone()
    }

    /// Adds the order to the user's running total and emits the new total.
    #[stateful(parallelism = (2, 10))]
    pub fn totals(acc: &mut Total, o: Order) -> Option<Total> {
        if acc.user.is_empty() {
            acc.user = o.user;
        }
        acc.sum += o.amount;
        acc.orders += 1;
        Some(acc.clone())
    }

    /// Writes totals to the files named by `sinks.out`.
    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Total>> {
        FileSink::from_config(cfg)
    }

    dag! { orders -> normalize -> positive -> by_user -> totals -> out }
}

pub use simple_etl::*;
