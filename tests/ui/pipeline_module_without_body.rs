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

// #[pipeline] needs the module's items inline.
#[solstice::pipeline]
pub mod shop;

fn main() {}
