use solstice::prelude::*;

// Serialize only: it cannot be decoded from an edge (nor read from a file).
#[derive(Clone, Debug, Serialize)]
pub struct Order {
    pub user: String,
    pub amount: f64,
}

// A source whose items are not `Deserialize` is reported on the source and on the stage that
// takes its records.
#[solstice::pipeline]
pub mod shop {
    use super::*;

    #[source]
    pub fn orders(cfg: &SourceConfig) -> Result<FileSource<Order>> {
        FileSource::from_config(cfg)
    }

    #[map]
    pub fn amount(o: Order) -> f64 {
        o.amount
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<f64>> {
        FileSink::from_config(cfg)
    }

    dag! { orders -> amount -> out }
}

// The README's entry point: resolves even when the pipeline has errors.
fn main() -> solstice::Result<()> {
    shop::main()
}
