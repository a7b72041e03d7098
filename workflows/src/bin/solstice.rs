//! The launcher: `solstice list`, `solstice run --workflow NAME --config FILE`.

fn main() -> solstice::Result<()> {
    solstice::cli::launcher(&workflows::registry())
}
