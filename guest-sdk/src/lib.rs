//! The Rust SDK for writing stanzahook filters (SPEC §7).
//!
//! Not usable yet: the filter interface in `wit/` and the host's filter runtime arrive together,
//! and this crate will then wrap them (a trait with pass-through defaults and one export macro).
//! It is part of the workspace now so that the layout does not change when they land.
#![deny(missing_docs)]
