//! Launch, call, supervise and stop Tether plugins (being written).
