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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Total {
    pub sum: f64,
}

// A stage does not feed itself.
#[solstice::pipeline]
pub mod shop {
    use super::*;

    #[source]
    pub fn orders(cfg: &SourceConfig) -> Result<FileSource<Order>> {
        FileSource::from_config(cfg)
    }

    #[map]
    pub fn normalize(o: Order) -> Order {
        o
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Order>> {
        FileSink::from_config(cfg)
    }

    dag! { orders -> normalize -> out; normalize -> normalize }
}

// The README's entry point: resolves even when the pipeline has errors.
fn main() -> solstice::Result<()> {
    shop::main()
}
