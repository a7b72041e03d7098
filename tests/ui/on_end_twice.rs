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

// One end-of-input hook per stage.
#[solstice::pipeline]
pub mod shop {
    use super::*;

    #[source]
    pub fn orders(cfg: &SourceConfig) -> Result<FileSource<Order>> {
        FileSource::from_config(cfg)
    }

    #[key_by]
    pub fn by_user(o: &Order) -> String {
        o.user.clone()
    }

    #[stateful(on_end = emit, on_end = emit)]
    pub fn totals(acc: &mut Total, o: Order) -> Option<Total> {
        acc.sum += o.amount;
        None
    }

    pub fn emit(_user: &str, total: &Total) -> Option<Total> {
        Some(total.clone())
    }
    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Total>> {
        FileSink::from_config(cfg)
    }

    dag! { orders -> by_user -> totals -> out }
}

// The README's entry point: resolves even when the pipeline has errors.
fn main() -> solstice::Result<()> {
    shop::main()
}
