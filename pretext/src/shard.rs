//! `--shard i/n`: record `k` of the corpus belongs to shard `k mod n`, so the
//! `n` shards cover every record exactly once, whatever the files hold.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// One of `count` disjoint shards; `index < count` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// The whole corpus: shard 0 of 1.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// This shard's index.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many shards there are.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether the record with this corpus-wide ordinal is in the shard.
    pub fn contains(self, ordinal: u64) -> bool {
        ordinal % u64::from(self.count) == u64::from(self.index)
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard::ALL
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Shard, Error> {
        let bad = || {
            Error::Config(format!(
                "shard `{s}`: expected i/n with 0 <= i < n, e.g. 0/4"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n).ok_or_else(bad)
    }
}

impl TryFrom<String> for Shard {
    type Error = String;
    fn try_from(s: String) -> Result<Shard, String> {
        s.parse().map_err(|e| match e {
            Error::Config(m) => m,
            e => e.to_string(),
        })
    }
}

impl From<Shard> for String {
    fn from(s: Shard) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard::new(1, 4).unwrap());
        for bad in ["4/4", "1", "a/2", "1/0", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn shards_partition_ordinals() {
        for n in 1..6 {
            for k in 0..100u64 {
                let owners = (0..n)
                    .filter(|&i| Shard::new(i, n).unwrap().contains(k))
                    .count();
                assert_eq!(owners, 1);
            }
        }
    }
}
