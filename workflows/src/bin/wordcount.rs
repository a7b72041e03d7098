//! The `wordcount` workflow: `wordcount --config configs/wordcount.yaml`.

fn main() -> solstice::Result<()> {
    workflows::wordcount::main()
}
