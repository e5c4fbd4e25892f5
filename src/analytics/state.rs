//! The statistics as bytes, to keep across restarts and leader changes: gzipped JSON of every
//! accumulator (the settings are given again on restore). Bounded by the settings' caps (pools,
//! (type, zone) keys, tracked instances, series buckets); [`MAX_STATE_BYTES`] is refused
//! beyond, so a state always fits one ConfigMap (1 MiB).

use std::io::Read;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use super::{Analytics, Config};

/// The most bytes a saved state may take (a ConfigMap holds 1 MiB in all).
pub const MAX_STATE_BYTES: usize = 900 * 1024;
/// The format's version, first in the state.
const VERSION: u32 = 1;
/// The most bytes a state may inflate to when read: far above what the caps allow, far below
/// what would hurt.
const MAX_INFLATED: u64 = 64 * 1024 * 1024;

/// Why a state cannot be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Larger than [`MAX_STATE_BYTES`] once compressed.
    #[error("the statistics take {size} bytes compressed, more than {MAX_STATE_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not gzip, or cut short.
    #[error("the saved statistics are not readable gzip: {0}")]
    Gzip(#[source] std::io::Error),
    /// Not the JSON of a state of this version.
    #[error("the saved statistics are not a state this version reads: {0}")]
    Format(#[source] serde_json::Error),
    /// Written by another version of the format.
    #[error("the saved statistics are of format version {0}, this version reads {VERSION}")]
    Version(u32),
}

impl StateError {
    /// A bounded name, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StateError::TooLarge { .. } => "too_large",
            StateError::Gzip(_) => "gzip",
            StateError::Format(_) => "format",
            StateError::Version(_) => "version",
        }
    }
}

#[derive(Serialize)]
struct Out<'a> {
    version: u32,
    stats: &'a Analytics,
}

#[derive(Deserialize)]
struct In {
    version: u32,
    stats: serde_json::Value,
}

impl Analytics {
    /// The statistics as bytes for [`Analytics::restore`].
    pub fn save(&self) -> Result<Vec<u8>, StateError> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        let out = Out {
            version: VERSION,
            stats: self,
        };
        serde_json::to_writer(&mut gz, &out).map_err(StateError::Format)?;
        let bytes = gz.finish().map_err(StateError::Gzip)?;
        if bytes.len() > MAX_STATE_BYTES {
            return Err(StateError::TooLarge { size: bytes.len() });
        }
        Ok(bytes)
    }

    /// The statistics [`Analytics::save`] wrote, continued with `config`.
    pub fn restore(config: Config, bytes: &[u8]) -> Result<Analytics, StateError> {
        let mut json = Vec::new();
        GzDecoder::new(bytes)
            .take(MAX_INFLATED)
            .read_to_end(&mut json)
            .map_err(StateError::Gzip)?;
        let state: In = serde_json::from_slice(&json).map_err(StateError::Format)?;
        if state.version != VERSION {
            return Err(StateError::Version(state.version));
        }
        let mut stats: Analytics =
            serde_json::from_value(state.stats).map_err(StateError::Format)?;
        stats.pools.max = config.max_pools;
        stats.capacity.max = config.max_capacity_pools;
        for groups in [&mut stats.pools, &mut stats.capacity] {
            groups.index = groups
                .names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u32))
                .collect();
        }
        if stats.cap_meta.len() != stats.capacity.groups.len()
            || stats.pools.names.len() != stats.pools.groups.len()
            || stats.capacity.names.len() != stats.capacity.groups.len()
        {
            return Err(StateError::Format(serde::de::Error::custom(
                "the groups and their names differ in number",
            )));
        }
        stats.config = config;
        Ok(stats)
    }
}

/// Keeps a map keyed by id pairs as a list (JSON keys are strings).
pub(super) mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::super::{CensusState, FxMap};

    pub fn serialize<S: Serializer>(
        map: &FxMap<(u32, u32), CensusState>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut list: Vec<_> = map.iter().map(|(&(p, c), v)| (p, c, *v)).collect();
        list.sort_by_key(|&(p, c, _)| (p, c));
        list.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<FxMap<(u32, u32), CensusState>, D::Error> {
        let list = Vec::<(u32, u32, CensusState)>::deserialize(d)?;
        Ok(list.into_iter().map(|(p, c, v)| ((p, c), v)).collect())
    }
}
