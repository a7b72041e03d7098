//! The generated state struct round-trips through the checkpoint codec.

use solstice::prelude::*;
use solstice_tests::{config, temp_dir};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub count: u64,
    pub max: u64,
}

#[solstice::pipeline]
pub mod stats {
    use super::*;

    #[source]
    pub fn numbers(_cfg: &SourceConfig) -> Result<RangeSource> {
        Ok(RangeSource::new(0..10_000))
    }

    #[key_by]
    pub fn by_mod(x: &u64) -> u64 {
        x % 37
    }

    #[stateful(3)]
    pub fn track(acc: &mut Stats, x: u64) -> Option<u64> {
        acc.count += 1;
        acc.max = acc.max.max(x);
        None
    }

    #[key_by]
    pub fn by_parity(x: &u64) -> bool {
        x.is_multiple_of(2)
    }

    #[stateful]
    pub fn parity(acc: &mut Vec<u64>, x: u64) -> Vec<u64> {
        acc.push(x);
        Vec::new()
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<PrintSink<u64>> {
        PrintSink::from_config(cfg)
    }

    dag! { numbers -> by_mod -> track -> out; numbers -> by_parity -> parity -> out }
}

#[test]
fn state_struct_round_trips_through_the_codec() {
    let _dir = temp_dir();
    let (_, state) = stats::run(config("runtime: { threads: 2 }", &[])).unwrap();
    assert_eq!(state.track.len(), 37);
    assert_eq!(
        state.track.get(&36),
        Some(&Stats {
            count: 270,
            max: 9989
        })
    );
    assert_eq!(state.parity.get(&true).map(Vec::len), Some(5_000));

    let bytes = state.encode().unwrap();
    assert_eq!(&bytes[..4], b"SOLS");
    let back = stats::State::decode(&bytes).unwrap();
    assert_eq!(back.track.to_sorted(), state.track.to_sorted());
    let mut a = back.parity.get(&false).unwrap().clone();
    let mut b = state.parity.get(&false).unwrap().clone();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    assert_eq!(
        back.track.key_groups().collect::<Vec<_>>(),
        (0..128).collect::<Vec<_>>()
    );

    // Corrupt or truncated bytes are an error, not a panic.
    assert!(stats::State::decode(&bytes[..bytes.len() / 2]).is_err());
    let mut flipped = bytes.clone();
    flipped[0] ^= 0xff;
    assert!(stats::State::decode(&flipped)
        .unwrap_err()
        .to_string()
        .contains("magic"));
}
