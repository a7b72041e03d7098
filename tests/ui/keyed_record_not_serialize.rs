use solstice::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Order {
    pub user: String,
    pub amount: f64,
}

// Neither Serialize nor Deserialize: it cannot travel from a key_by to its stateful stage.
#[derive(Clone, Debug)]
pub struct Priced {
    pub user: String,
    pub cents: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Total {
    pub cents: u64,
}

// The records a key_by sends to its stateful stage are encoded like any other: a value type
// without `Serialize` and `Deserialize` is reported on the key_by and on the stateful stage.
#[solstice::pipeline]
pub mod shop {
    use super::*;

    #[source]
    pub fn orders(cfg: &SourceConfig) -> Result<FileSource<Order>> {
        FileSource::from_config(cfg)
    }

    #[key_by]
    pub fn by_user(o: Order) -> (String, Priced) {
        let cents = (o.amount * 100.0) as u64;
        (o.user.clone(), Priced { user: o.user, cents })
    }

    #[stateful]
    pub fn totals(acc: &mut Total, p: Priced) -> Option<Total> {
        acc.cents += p.cents;
        None
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
