//! gRPC status codes: their names (the `grpc_status` label values the proxy records) and the
//! set that counts as an error in a canary's analysis.

use std::fmt;

use serde::Serialize;

/// The 17 status codes of the gRPC protocol, by number (`doc/statuscodes.md` of grpc/grpc).
pub const GRPC_CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The codes that count as errors unless a rollout names others: the ones that say the
/// server failed, not the caller (Linkerd's and gRPC's own "server error" classes).
pub const DEFAULT_GRPC_ERROR_CODES: [GrpcCode; 6] = [
    GrpcCode(2),  // UNKNOWN
    GrpcCode(4),  // DEADLINE_EXCEEDED
    GrpcCode(12), // UNIMPLEMENTED
    GrpcCode(13), // INTERNAL
    GrpcCode(14), // UNAVAILABLE
    GrpcCode(15), // DATA_LOSS
];

/// One gRPC status code, `0..=16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrpcCode(u8);

impl GrpcCode {
    /// `UNKNOWN`: what a response without a readable `grpc-status` counts as (gRPC clients
    /// report such a call as failed).
    pub const UNKNOWN: Self = Self(2);
    /// `OK`.
    pub const OK: Self = Self(0);
    /// `CANCELLED`: what a stream the client abandoned counts as.
    pub const CANCELLED: Self = Self(1);
    /// `UNAVAILABLE`: what a stream the upstream broke off counts as.
    pub const UNAVAILABLE: Self = Self(14);

    /// The code with this number; numbers above 16 are `UNKNOWN`, as gRPC clients treat them.
    pub fn from_number(number: u32) -> Self {
        if number < GRPC_CODE_NAMES.len() as u32 {
            Self(number as u8)
        } else {
            Self::UNKNOWN
        }
    }

    /// The code of a `grpc-status` header or trailer value (`"14"`); a value that is not a
    /// number is `UNKNOWN`.
    pub fn from_header(value: &[u8]) -> Self {
        match std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.trim().parse().ok())
        {
            Some(number) => Self::from_number(number),
            None => Self::UNKNOWN,
        }
    }

    /// The code named `name` (`UNAVAILABLE`, case-insensitive) or numbered so (`14`).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim();
        if let Ok(number) = name.parse::<u32>() {
            return (number < GRPC_CODE_NAMES.len() as u32).then_some(Self(number as u8));
        }
        GRPC_CODE_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| Self(i as u8))
    }

    /// The code's number.
    pub fn number(self) -> u8 {
        self.0
    }

    /// The code's name, e.g. `UNAVAILABLE`: the `grpc_status` label value.
    pub fn name(self) -> &'static str {
        GRPC_CODE_NAMES[usize::from(self.0)]
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for GrpcCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for (number, name) in GRPC_CODE_NAMES.iter().enumerate() {
            let code = GrpcCode::parse(name).expect("known name");
            assert_eq!(usize::from(code.number()), number);
            assert_eq!(GrpcCode::parse(&number.to_string()), Some(code));
            assert_eq!(code.name(), *name);
        }
        assert_eq!(GrpcCode::parse("unavailable"), Some(GrpcCode(14)));
        assert_eq!(GrpcCode::parse("17"), None);
        assert_eq!(GrpcCode::parse("NOPE"), None);
    }

    #[test]
    fn unreadable_statuses_are_unknown() {
        assert_eq!(GrpcCode::from_header(b"14"), GrpcCode(14));
        assert_eq!(GrpcCode::from_header(b"99"), GrpcCode::UNKNOWN);
        assert_eq!(GrpcCode::from_header(b"x"), GrpcCode::UNKNOWN);
        assert_eq!(GrpcCode::from_header(b""), GrpcCode::UNKNOWN);
    }
}
