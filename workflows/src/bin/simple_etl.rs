//! The `simple_etl` workflow: `simple_etl --config configs/simple_etl.yaml`.

fn main() -> solstice::Result<()> {
    workflows::simple_etl::main()
}
