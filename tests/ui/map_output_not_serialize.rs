use solstice::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Order {
    pub user: String,
    pub amount: f64,
}

// Deserialize only: it cannot be encoded onto an edge.
#[derive(Clone, Debug, Deserialize)]
pub struct Enriched {
    pub order: Order,
    pub vip: bool,
}

// A record type that is not `Serialize` is reported on each stage whose signature has it: the
// map that emits it and the stages that take it.
#[solstice::pipeline]
pub mod shop {
    use super::*;

    #[source]
    pub fn orders(cfg: &SourceConfig) -> Result<FileSource<Order>> {
        FileSource::from_config(cfg)
    }

    #[map]
    pub fn enrich(o: Order) -> Enriched {
        let vip = o.amount > 100.0;
        Enriched { order: o, vip }
    }

    #[filter]
    pub fn vip(e: &Enriched) -> bool {
        e.vip
    }

    #[map]
    pub fn unwrap(e: Enriched) -> Order {
        e.order
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Order>> {
        FileSink::from_config(cfg)
    }

    dag! { orders -> enrich -> vip -> unwrap -> out }
}

// The README's entry point: resolves even when the pipeline has errors.
fn main() -> solstice::Result<()> {
    shop::main()
}
