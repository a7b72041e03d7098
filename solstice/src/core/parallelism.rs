//! Parallelism of a stage: fixed, or elastic within bounds.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// How many subtasks a stage runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallelism {
    /// Exactly this many subtasks (`4` in the attribute or YAML).
    Fixed(usize),
    /// Between `min` and `max` subtasks (`(2, 10)` in the attribute, `[2, 10]` in YAML).
    ///
    /// Until elastic scaling exists, an elastic stage runs at `min`; `--explain` says so.
    Elastic {
        /// Lower bound, and the starting subtask count.
        min: usize,
        /// Upper bound.
        max: usize,
    },
}

impl Parallelism {
    /// The number of subtasks the stage starts with.
    pub fn initial(self) -> usize {
        match self {
            Parallelism::Fixed(n) => n,
            Parallelism::Elastic { min, .. } => min,
        }
    }

    /// Checks bounds: at least one subtask, `min <= max`, at most `max_key_groups` for keyed stages.
    pub fn validate(self) -> Result<(), String> {
        match self {
            Parallelism::Fixed(0) => Err("parallelism must be at least 1".into()),
            Parallelism::Elastic { min, max } if min == 0 || min > max => Err(format!(
                "elastic parallelism ({min}, {max}) needs 1 <= min <= max"
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Parallelism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Parallelism::Fixed(n) => write!(f, "{n}"),
            Parallelism::Elastic { min, max } => write!(f, "({min}, {max})"),
        }
    }
}

impl Serialize for Parallelism {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Parallelism::Fixed(n) => serializer.serialize_u64(n as u64),
            Parallelism::Elastic { min, max } => [min, max].serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Parallelism {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Parallelism;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a subtask count like 4, or elastic bounds like [2, 10]")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Parallelism, E> {
                let p = Parallelism::Fixed(v as usize);
                p.validate().map_err(E::custom)?;
                Ok(p)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Parallelism, E> {
                if v < 1 {
                    return Err(E::custom("parallelism must be at least 1"));
                }
                self.visit_u64(v as u64)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parallelism, A::Error> {
                let min: usize = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let max: usize = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<usize>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                let p = Parallelism::Elastic { min, max };
                p.validate().map_err(de::Error::custom)?;
                Ok(p)
            }
        }
        deserializer.deserialize_any(V)
    }
}
