//! The Tether connection and Rust plugin SDK (being written).
