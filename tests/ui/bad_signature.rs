use solstice::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Order {
    pub user: String,
    pub amount: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enriched {
    pub order: Order,
    pub vip: bool,
}

#[solstice::pipeline]
pub mod shop {
    use super::*;

    #[source]
    pub fn orders(cfg: &SourceConfig) -> Result<FileSource<Order>> {
        FileSource::from_config(cfg)
    }

    // A filter takes `&Order` and returns `bool`.
    #[filter]
    pub fn big(o: Order) -> bool {
        o.amount > 100.0
    }

    // A map takes one record.
    #[map]
    pub fn merge(a: Order, b: Order) -> Order {
        Order { amount: a.amount + b.amount, ..b }
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Order>> {
        FileSink::from_config(cfg)
    }

    dag! { orders -> big -> merge -> out }
}

fn main() {}
