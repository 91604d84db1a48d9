//! The weighted choice between a route's backends: weights in hundredths, picked by a roll.

use std::fmt;
use std::sync::Arc;

use crate::error::Invalid;
use crate::raw::Scalar;

/// Weights are kept in hundredths: `99.5` is 9950.
pub const WEIGHT_SCALE: u64 = 100;
/// The largest weight accepted (in hundredths); larger values are certainly mistakes.
pub const MAX_WEIGHT: u64 = 1_000_000 * WEIGHT_SCALE;
pub(crate) const MAX_WEIGHT_TEXT: &str = "1000000";

/// A relative weight with two decimals of precision (`90`, `9`, `99.5`, `0.5`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(u64);

/// One backend of a route: which upstream, and its share.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    /// The backend's name: the name of its upstream. Appears in metrics and the weights file.
    pub name: Arc<str>,
    /// Index of the upstream in [`crate::Config::upstreams`].
    pub upstream: usize,
    /// The weight currently in force.
    pub weight: Weight,
}

/// A route's backends with precomputed cumulative weights, so a pick is a short scan.
/// The default, with no backends, is the split of a route that answers itself (`respond`);
/// nothing picks from it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    backends: Vec<Backend>,
    /// `cumulative[i]` = sum of weights of backends `0..=i`.
    cumulative: Vec<u64>,
}

impl Weight {
    /// A weight of `hundredths / 100`.
    pub const fn from_hundredths(hundredths: u64) -> Self {
        Self(hundredths)
    }

    /// The weight in hundredths.
    pub const fn hundredths(self) -> u64 {
        self.0
    }

    /// The weight as a number (`99.5`).
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / WEIGHT_SCALE as f64
    }

    /// Whether the weight is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Reads a weight as written in a file: a non-negative number with at most two decimals.
    pub fn parse(value: &Scalar) -> Result<Self, Invalid> {
        let text = value.to_string();
        let hundredths = match value {
            Scalar::Int(i) if *i < 0 => return Err(Invalid::WeightNegative(text)),
            Scalar::Int(i) => i.saturating_mul(WEIGHT_SCALE.into()),
            Scalar::Float(x) if x.is_nan() || x.is_infinite() => {
                return Err(Invalid::WeightNotANumber(text))
            }
            Scalar::Float(x) if *x < 0.0 => return Err(Invalid::WeightNegative(text)),
            Scalar::Float(x) => {
                let scaled = x * WEIGHT_SCALE as f64;
                let rounded = scaled.round();
                if (scaled - rounded).abs() > 1e-6 * scaled.max(1.0) {
                    return Err(Invalid::WeightTooPrecise(text));
                }
                if rounded > MAX_WEIGHT as f64 {
                    return Err(Invalid::WeightTooLarge(text));
                }
                rounded as i128
            }
            Scalar::Str(_) | Scalar::Bool(_) => return Err(Invalid::WeightNotANumber(text)),
        };
        match u64::try_from(hundredths) {
            Ok(h) if h <= MAX_WEIGHT => Ok(Self(h)),
            _ => Err(Invalid::WeightTooLarge(text)),
        }
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / WEIGHT_SCALE, self.0 % WEIGHT_SCALE);
        match frac {
            0 => write!(f, "{whole}"),
            f2 if f2 % 10 == 0 => write!(f, "{whole}.{}", f2 / 10),
            f2 => write!(f, "{whole}.{f2:02}"),
        }
    }
}

impl serde::Serialize for Weight {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(WEIGHT_SCALE) {
            serializer.serialize_u64(self.0 / WEIGHT_SCALE)
        } else {
            serializer.serialize_f64(self.as_f64())
        }
    }
}

impl<'de> serde::Deserialize<'de> for Weight {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Scalar::deserialize(deserializer)?;
        Self::parse(&value).map_err(serde::de::Error::custom)
    }
}

impl Split {
    /// A split over `backends`; refuses one whose weights are all zero.
    pub fn new(backends: Vec<Backend>) -> Result<Self, Invalid> {
        let mut cumulative = Vec::with_capacity(backends.len());
        let mut total = 0u64;
        for backend in &backends {
            total = total.saturating_add(backend.weight.hundredths());
            cumulative.push(total);
        }
        if total == 0 {
            return Err(Invalid::AllWeightsZero);
        }
        Ok(Self {
            backends,
            cumulative,
        })
    }

    /// The backends, in file order.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The sum of all weights (hundredths); rolls are drawn from `0..total()`.
    #[inline]
    pub fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The backend for `roll` (taken modulo [`Split::total`]): backends own consecutive ranges
    /// of rolls in file order, so with 90/10 rolls `0..9000` pick the first, `9000..10000` the
    /// second. Because later backends own the top of the range, raising the weight of the last
    /// backend only moves rolls towards it: sticky keys never flip back while a canary grows.
    #[inline]
    pub fn pick(&self, roll: u64) -> usize {
        let total = self.total();
        let roll = if roll < total {
            roll
        } else {
            roll % total.max(1)
        };
        self.cumulative.partition_point(|&c| c <= roll)
    }

    /// Maps a uniformly distributed 64-bit value (a random number or a sticky key's hash)
    /// onto `0..total()` without modulo bias.
    #[inline]
    pub fn roll_from(&self, random: u64) -> u64 {
        ((u128::from(random) * u128::from(self.total())) >> 64) as u64
    }

    /// Like [`Split::pick`], but among the backends for which `usable` holds, in proportion to
    /// their weights. `None` when no usable backend has a positive weight. Used when a backend
    /// has no healthy endpoint and its share must go to the others.
    pub fn pick_among(&self, random: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let total: u64 = (0..self.backends.len())
            .filter(|&i| usable(i))
            .map(|i| self.backends[i].weight.hundredths())
            .sum();
        if total == 0 {
            return None;
        }
        let mut roll = ((u128::from(random) * u128::from(total)) >> 64) as u64;
        for (i, backend) in self.backends.iter().enumerate() {
            if !usable(i) {
                continue;
            }
            let weight = backend.weight.hundredths();
            if roll < weight {
                return Some(i);
            }
            roll -= weight;
        }
        None
    }

    /// Index of the backend named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| &*b.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[u64]) -> Split {
        let backends = weights
            .iter()
            .enumerate()
            .map(|(i, w)| Backend {
                name: format!("b{i}").into(),
                upstream: i,
                weight: Weight::from_hundredths(*w),
            })
            .collect();
        Split::new(backends).expect("positive")
    }

    #[test]
    fn rolls_map_to_consecutive_ranges() {
        let s = split(&[9000, 1000]);
        assert!((0..9000).all(|r| s.pick(r) == 0));
        assert!((9000..10000).all(|r| s.pick(r) == 1));
        assert_eq!(s.pick(10000), 0, "rolls wrap");
    }

    #[test]
    fn zero_weights_are_never_picked() {
        let s = split(&[10000, 0]);
        assert!((0..10000).all(|r| s.pick(r) == 0));
        let s = split(&[0, 10000]);
        assert!((0..10000).all(|r| s.pick(r) == 1));
        assert_eq!(s.pick_among(u64::MAX, |i| i == 0), None);
    }

    #[test]
    fn rising_canary_keeps_sticky_keys() {
        let before = split(&[9500, 500]);
        let after = split(&[7500, 2500]);
        for hash in (0..1000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) {
            if before.pick(before.roll_from(hash)) == 1 {
                assert_eq!(after.pick(after.roll_from(hash)), 1);
            }
        }
    }

    #[test]
    fn pick_among_follows_remaining_weights() {
        let s = split(&[5000, 3000, 2000]);
        let mut counts = [0u32; 3];
        for i in 0..1000u64 {
            let r = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            if let Some(b) = s.pick_among(r, |b| b != 0) {
                counts[b] += 1;
            }
        }
        assert_eq!(counts[0], 0);
        assert!((550..=650).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn weights_parse_with_two_decimals() {
        let ok = [
            (Scalar::Int(90), 9000),
            (Scalar::Float(99.5), 9950),
            (Scalar::Float(0.01), 1),
            (Scalar::Float(0.29), 29),
            (Scalar::Int(0), 0),
        ];
        for (value, want) in ok {
            assert_eq!(
                Weight::parse(&value),
                Ok(Weight::from_hundredths(want)),
                "{value}"
            );
        }
        assert_eq!(
            Weight::parse(&Scalar::Int(-1)),
            Err(Invalid::WeightNegative("-1".into()))
        );
        assert_eq!(
            Weight::parse(&Scalar::Float(0.005)),
            Err(Invalid::WeightTooPrecise("0.005".into()))
        );
        assert_eq!(
            Weight::parse(&Scalar::Str("ten".into())),
            Err(Invalid::WeightNotANumber("\"ten\"".into()))
        );
        assert_eq!(
            Weight::parse(&Scalar::Int(2_000_000)),
            Err(Invalid::WeightTooLarge("2000000".into()))
        );
        assert_eq!(Weight::from_hundredths(9950).to_string(), "99.5");
        assert_eq!(Weight::from_hundredths(1).to_string(), "0.01");
    }

    #[test]
    fn all_zero_is_refused() {
        let backends = vec![Backend {
            name: "a".into(),
            upstream: 0,
            weight: Weight::default(),
        }];
        assert_eq!(Split::new(backends), Err(Invalid::AllWeightsZero));
    }
}
