//! The `#[tether::interface]` attribute macro (being written).
