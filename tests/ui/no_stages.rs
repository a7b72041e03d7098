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

// A pipeline has stages.
#[solstice::pipeline]
pub mod shop {
    use super::*;

    pub fn helper(_: Order) {}

    dag! { a -> b }
}

// The README's entry point: resolves even when the pipeline has errors.
fn main() -> solstice::Result<()> {
    shop::main()
}
